"""The ``fkd`` command line, through click's CliRunner and as an installed script."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from fkd import __version__
from fkd.cli.main import cli


def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"fkd, version {__version__}"


def test_help_explains_the_tool() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    assert "Offline knowledge distillation" in result.output
    assert "label store" in result.output


def test_unknown_command_is_a_clear_error() -> None:
    result = CliRunner().invoke(cli, ["generat"])
    assert result.exit_code == 2
    assert "No such command 'generat'" in result.output


def test_python_dash_m_fkd_runs_the_same_cli() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fkd", "--version"], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == f"fkd, version {__version__}"

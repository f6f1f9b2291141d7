"""The user docs, run: the quickstart prints what it says, the file-list example scans."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from generate_helpers import fkd, succeeded
from PIL import Image

from fkd.images import scan_source

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
MAKEFILE = Path(__file__).resolve().parents[1] / "Makefile"


def section(markdown: str, heading: str) -> str:
    """The text under ``heading`` (a whole heading line) up to the next heading of its level."""
    level = heading.split()[0]
    start = markdown.index(f"\n{heading}\n") + len(heading) + 2
    end = markdown.find(f"\n{level} ", start)
    return markdown[start : None if end < 0 else end]


def fenced(text: str, language: str) -> list[str]:
    """The bodies of the ```language blocks of ``text``, in order."""
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def test_quickstart_install_runs_the_install_target() -> None:
    install = fenced(section((DOCS / "quickstart.md").read_text(), "## Install"), "bash")[0]
    targets = re.findall(r"^([a-z][\w-]*):", MAKEFILE.read_text(), flags=re.M)
    commands = [line.split("#")[0].split() for line in install.splitlines()]
    makes = [words[1] for words in commands if words[:1] == ["make"]]
    assert makes == ["install"] and "install" in targets, install


@pytest.mark.slow
def test_quickstart_prints_what_the_doc_shows(tmp_path, monkeypatch) -> None:
    """Run the quickstart's "Label real photos" commands as written (the default options)
    and compare the first crop's top-3 labels with the line the doc shows."""
    doc = section(
        (DOCS / "quickstart.md").read_text(), "## Label real photos with a real ImageNet teacher"
    )
    shell = fenced(doc, "bash")[0]
    script = shell.split("<<'PY'\n", 1)[1].split("\nPY\n", 1)[0]
    generate = next(line for line in shell.splitlines() if line.startswith("fkd generate"))
    reader = fenced(doc, "python")[0]
    shown = re.search(r"Its first crop printed, on this machine:\n`(box .*?), \.\.\.\]`", doc)
    assert shown, "the quickstart shows its first crop's line"
    monkeypatch.chdir(tmp_path)
    subprocess.run([sys.executable, "-c", script], check=True, env={**os.environ})
    succeeded(fkd(*shlex.split(generate)[1:], "--workers", "0"))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(reader, "quickstart.md", "exec"), {})
    first_box = next(line for line in printed.getvalue().splitlines() if line.startswith("box"))
    assert first_box.startswith(shown.group(1)), (first_box, shown.group(1))


def test_the_file_list_example_of_the_cli_doc_scans_as_documented(tmp_path) -> None:
    doc = section((DOCS / "cli.md").read_text(), "## DATA: an image folder or a file list")
    example = fenced(doc, "text")[0]
    listed = [
        line.split(",")[0]
        for line in example.splitlines()
        if line.strip() and not line.startswith("#") and line != "path,label"
    ]
    for path in listed:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / path)
    (tmp_path / "photos.csv").write_text(example)
    source = scan_source(tmp_path / "photos.csv")
    assert source.root == tmp_path and sorted(source.manifest.paths) == sorted(listed)
    assert source.class_names == ("cat", "coffee", "people")
    assert source.manifest.targets.tolist() == [0, 1, 2]


def test_every_file_the_architecture_doc_names_exists() -> None:
    """docs/architecture.md answers "where is ..." by file name: those files must exist."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    named = set(re.findall(r"`(fkd/[\w/]+\.py)`", text))
    assert len(named) >= 20
    missing = sorted(path for path in named if not (ROOT / path).is_file())
    assert not missing, missing
    # Bare file names in a row are siblings of the row's first path.
    for row in re.findall(r"^\| .*$", text, flags=re.M):
        paths = re.findall(r"`(fkd/[\w/]*?\w)/(?:\w+\.py)?`", row)
        for name in re.findall(r"`(\w+\.py)`", row):
            assert any((ROOT / folder / name).is_file() for folder in paths), (name, row)

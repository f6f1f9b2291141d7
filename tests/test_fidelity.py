"""``fkd generate --check-fidelity``: the fast crop path and the stored labels, measured."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner
from PIL import Image
from skimage import data as skdata

from fkd.cli.main import cli

LINE = re.compile(
    r"fidelity on (?P<images>\d+) images \((?P<crops>\d+) crops\): "
    r"KL\(reference path \|\| fast path\) (?P<paths>[\d.]+) nats; "
    r"KL\(teacher \|\| stored label\) (?P<stored>[\d.]+) nats; "
    r"top-1 agreement (?P<agree>[\d.]+)%"
)


@pytest.mark.parametrize("label_type,topk", [("marginal_smoothing", "5"), ("hard", "1")])
def test_check_fidelity_reports_both_kls_and_top1_agreement(tmp_path, label_type, topk) -> None:
    (tmp_path / "photos" / "cat").mkdir(parents=True)
    Image.fromarray(skdata.chelsea()).save(tmp_path / "photos" / "cat" / "chelsea.jpg")
    result = CliRunner().invoke(
        cli,
        [
            "generate",
            str(tmp_path / "photos"),
            "--out",
            str(tmp_path / "s.zarr"),
            "-m",
            "6",
            "--workers",
            "0",
            "--label-type",
            label_type,
            "--topk",
            topk,
            "--check-fidelity",
            "1",
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    found = LINE.search(result.output)
    assert found, result.output
    assert (found["images"], found["crops"]) == ("1", "6")
    # The CPU path (uint8 resize per crop) and the exact float path give nearly the same
    # teacher.
    assert float(found["paths"]) < 0.01
    # Encoding keeps the teacher's top-1 on every crop; hard labels lose far more mass.
    assert float(found["agree"]) == 100.0
    stored = float(found["stored"])
    assert (0 < stored < 0.5) if label_type == "marginal_smoothing" else stored > 0.5

"""``make demo`` in miniature: demo/run.py --preset quick end to end through the CLI."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "demo"))

from report import HEADLINE  # noqa: E402

pytestmark = pytest.mark.skipif(
    not Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").exists(),
    reason="Debian's dataset-fashion-mnist is not installed (make test installs it)",
)


@pytest.mark.slow
def test_quick_demo_writes_every_artefact_from_its_own_run(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "demo" / "run.py"), "--preset", "quick",
         "--work", str(tmp_path / "work"), "--report-dir", str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    report = json.loads((tmp_path / "report.json").read_text())
    for key in HEADLINE:
        assert isinstance(report[key], float) and math.isfinite(report[key]), key
    for key in ("teacher_acc", "fkd_acc", "hard_acc", "online_kd_acc"):
        assert 0.0 <= report[key] <= 100.0
    assert report["store_bytes"] > 0 and report["bytes_per_crop"] > 0
    assert min(report[f"{m}_crops_per_s"] for m in ("fkd", "hard", "online_kd")) > 0
    assert 0.0 <= report["fidelity_top1_agreement"] <= 100.0 and report["fidelity_kl"] >= 0.0
    # The figures are the run's: the store and the students' metrics are on disk.
    work = tmp_path / "work" / "seed0"
    assert (work / "labels.zarr" / "zarr.json").is_file()
    for method in ("fkd", "hard", "online_kd"):
        records = (work / method / "metrics.jsonl").read_text().splitlines()
        assert json.loads(records[-1])["top1"] == report["curves"]["0"][method][-1]["top1"]
    assert report["fkd_acc"] == report["curves"]["0"]["fkd"][-1]["top1"]

    # Every step was an ordinary fkd command, in the demo's order.
    steps = [command[1] for command in report["commands"]]
    assert steps == ["datasets", "train", "teacher-eval", "generate", "train", "train", "train"]
    assert all(command[0] == "fkd" for command in report["commands"])
    markdown = (tmp_path / "report.md").read_text()
    assert "| FKD (stored labels) |" in markdown and "| online KD |" in markdown
    assert "fkd generate " in markdown
    # The report says each student's crop path: one sampler, one schedule, one resampling.
    paths = report["crop_paths"]
    assert paths["fkd"].startswith("store ") and "resampled uint8-bilinear" in paths["fkd"]
    for method in ("hard", "online_kd"):
        assert paths[method].startswith("sampled M=2 seed=0 fkd-rrc-v1"), paths[method]
        assert paths[method].endswith("resampled uint8-bilinear")
    assert f"- hard labels: {paths['hard']}" in markdown
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_reuse_measurement_writes_both_tables_and_resumes(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, str(ROOT / "demo" / "reuse.py"), "--preset", "quick",
        "--store-sizes", "1,2", "--students", "1,2", "--seeds", "0", "--crops-per-visit", "1",
        "--work", str(tmp_path / "work" / "reuse"), "--report-dir", str(tmp_path),
    ]  # fmt: skip
    first = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    report = json.loads((tmp_path / "reuse.json").read_text())
    methods = [row["method"] for row in report["reuse"]]
    assert methods == ["FKD, M = 1", "FKD, M = 2", "hard labels", "online KD"]
    assert [row["reuse"] for row in report["reuse"][:2]] == [2.0, 1.0]  # 2 crop-epochs / M
    assert [row["students"] for row in report["students"]] == [1, 2]
    for row in report["students"]:
        assert row["fkd_seconds"] > 0 and row["online_kd_seconds"] > 0
        assert 0 <= row["fkd_top1"]["mean"] <= 100
    assert "| FKD, M = 1 | 2× |" in (tmp_path / "reuse.md").read_text()
    # A second run reuses every finished store and student: no fkd command runs again.
    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "$ fkd generate" not in again.stdout and "$ fkd train" not in again.stdout

"""``benchmarks/scale_bench.py`` at tiny sizes: every operation measured, every figure finite."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "scale_bench.py"
TINY = ["--sizes", "300,600", "--block-size", "64", "--crops", "2", "--scan-files", "500"]
TINY += ["--repeats", "1"]
IN_PROCESS_OPS = {
    "manifest build",
    "create",
    "write block, first tenth (mean)",
    "write block, last tenth (mean)",
    "write all blocks (sum)",
    "resume scan",
    "open",
    "manifest read",
    "open + manifest",
    "read 1 image, first on a handle",
    "read 1 image, later (median)",
    "scan image folder",
    "dask task prologue, new worker",
    "dask task prologue, later task",
}
SUBPROCESS_OPS = {
    "fkd --version",
    "fkd inspect",
    "fkd verify",
    "fkd generate --plan",
    "student dataset (make_loader)",
    "student dataset, folder scanned before",
    "first batch, 2 workers",
}


@pytest.fixture(scope="module")
def scale_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("scale_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["scale_bench"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def run(scale_bench: ModuleType, tmp_path: Path, *extra: str) -> dict[str, Any]:
    out = tmp_path / "scale.json"
    scale_bench.main([*TINY, "--workdir", str(tmp_path), "--out", str(out), *extra])
    report = json.loads(out.read_text())
    assert list(tmp_path.iterdir()) == [out], "the stores and folders are removed"
    return report


def check(report: dict[str, Any], operations: set[str]) -> None:
    rows = report["measurements"]
    per_size = {n: {r["operation"] for r in rows if r["images"] == n} for n in (300, 600)}
    assert per_size[300] == per_size[600] == operations
    [scan] = [r for r in rows if r["operation"] == "scan folder (fixed size)"]
    assert scan["images"] == 500
    for row in rows:
        assert isinstance(row["runs"], int) and row["runs"] >= 1, row
        assert math.isfinite(row["seconds"]) and row["seconds"] > 0, row
        assert math.isfinite(row["peak_rss_mb"]) and row["peak_rss_mb"] > 0, row
    assert set(report["exponents"]) == operations
    assert all(math.isfinite(e) for steps in report["exponents"].values() for e in steps.values())
    in_store = [r for r in rows if r["images"] in (300, 600) and r["operation"] != "manifest build"]
    assert all(r["store_files"] > 0 for r in in_store)
    notes = {(r["operation"], r["images"]): r["note"] for r in rows}
    assert "last/first" in notes[("write block, last tenth (mean)", 600)]
    assert report["machine"]["zarr"] and report["command"].startswith("python benchmarks/")


def test_in_process_operations(scale_bench: ModuleType, tmp_path: Path) -> None:
    check(run(scale_bench, tmp_path, "--skip-slow-ops"), IN_PROCESS_OPS)


@pytest.mark.slow
def test_every_operation(scale_bench: ModuleType, tmp_path: Path) -> None:
    report = run(scale_bench, tmp_path)
    check(report, IN_PROCESS_OPS | SUBPROCESS_OPS)
    notes = {(r["operation"], r["images"]): r["note"] for r in report["measurements"]}
    assert notes[("first batch, 2 workers", 600)] == "0 manifest reads in the workers"

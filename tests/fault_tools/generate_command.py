"""The ``fkd generate`` command of the fault runs, and the environment it runs in."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

from fault_tools.fashion_mnist import fashion_mnist_folder
from fault_tools.tiny_teacher import TEACHER_SPEC, write_teacher


def fkd_env(teacher_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of an ``fkd`` subprocess: one thread, the teacher on the path."""
    path = [str(teacher_dir), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(path),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        **extra,
    }


@dataclasses.dataclass(frozen=True)
class Setup:
    """A generate command: data folder, teacher folder and the options that shape the store."""

    data: Path
    teacher_dir: Path
    crops: int = 8
    block_size: int = 4
    batch_size: int = 32
    workers: int = 0

    def command(self, out: Path, *extra: str) -> list[str]:
        return [
            sys.executable, "-m", "fkd", "generate", str(self.data), "--out", str(out),
            "--teacher", TEACHER_SPEC, "-m", str(self.crops),
            "--block-size", str(self.block_size), "--batch-size", str(self.batch_size),
            "--workers", str(self.workers), "--device", "cpu", "-q", *extra,
        ]  # fmt: skip

    def run(self, out: Path, *extra: str, delay: float = 0.0) -> subprocess.CompletedProcess[str]:
        """The generate command to its end (raises with its stderr if it fails)."""
        env = fkd_env(self.teacher_dir, FAULT_TEACHER_DELAY=str(delay))
        done = subprocess.run(
            self.command(out, *extra), env=env, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise AssertionError(f"fkd generate failed ({done.returncode}): {done.stderr}")
        return done


def make_setup(root: Path, images: int = 96, **options: int) -> Setup:
    """Fashion-MNIST PNGs and the tiny teacher under ``root``."""
    data = fashion_mnist_folder(root / "data", images)
    return Setup(data, write_teacher(root / "teachers"), **options)

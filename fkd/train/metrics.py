"""``metrics.jsonl``: one JSON line per epoch (visit) of a run, written by rank 0.

Each line is flushed and fsynced as the epoch ends; a resumed run first drops the lines
after the epoch it resumes from (a kill may have left some), so the file always
describes one uninterrupted run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fkd.evaluation import EvalResult

METRICS_FILE = "metrics.jsonl"


@dataclass
class EpochStats:
    """What one epoch (visit) of training did, summed over ranks."""

    loss: float
    lr: float
    images: int
    crops: int
    seconds: float
    soft_steps: int
    hard_steps: int

    @property
    def crops_per_second(self) -> float:
        return self.crops / max(self.seconds, 1e-9)

    @property
    def images_per_second(self) -> float:
        return self.images / max(self.seconds, 1e-9)


def epoch_record(
    visit: int,
    crop_epoch: float,
    step: int,
    stats: EpochStats,
    evaluation: EvalResult | None,
    eval_seconds: float,
    world_size: int,
    crop_path: Mapping[str, Any],
) -> dict[str, Any]:
    """The metrics line of epoch ``visit + 1``."""
    return {
        "epoch": visit + 1,
        "crop_epoch": crop_epoch,
        "step": step,
        "loss": stats.loss,
        "lr": stats.lr,
        "top1": None if evaluation is None else evaluation.top1,
        "top5": None if evaluation is None else evaluation.top5,
        "val_loss": None if evaluation is None else evaluation.loss,
        "images": stats.images,
        "crops": stats.crops,
        "images_per_s": stats.images_per_second,
        "crops_per_s": stats.crops_per_second,
        "seconds": stats.seconds,
        "eval_seconds": eval_seconds,
        "soft_steps": stats.soft_steps,
        "hard_steps": stats.hard_steps,
        "world_size": world_size,
        **crop_path,
    }


def append_metrics(path: Path, record: Mapping[str, Any]) -> None:
    with open(path, "a") as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def trim_metrics(path: Path, epoch: int) -> list[dict[str, Any]]:
    """Keep the metrics lines up to ``epoch`` (a kill may have left later ones)."""
    if not path.exists():
        return []
    kept = []
    for line in path.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            if int(record.get("epoch", 0)) <= epoch:
                kept.append(record)
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text("".join(json.dumps(r) + "\n" for r in kept))
    os.replace(staging, path)
    return kept


def iter_metrics(path: str | Path) -> Iterator[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file."""
    for line in Path(path).read_text().splitlines():
        if line.strip():
            yield json.loads(line)


def epoch_line(record: Mapping[str, Any], visits: int, epochs: int) -> str:
    """The line ``fkd train`` prints for an epoch's record."""
    evaluation = (
        ""
        if record.get("top1") is None
        else f"  top-1 {record['top1']:.2f}%  top-5 {record['top5']:.2f}%"
    )
    return (
        f"epoch {record['epoch']}/{visits} (crop-epoch {record['crop_epoch']:g}/{epochs})  "
        f"loss {record['loss']:.4f}  lr {record['lr']:.4g}{evaluation}  "
        f"{record['crops_per_s']:.0f} crops/s  {record['seconds']:.1f}s"
    )

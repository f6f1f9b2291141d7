"""A run's folder, its checkpoint after every epoch, and resuming from it.

``--out`` holds ``checkpoint.pt`` and ``metrics.jsonl``; a folder that already holds a
checkpoint is refused unless ``--resume`` (continue it) or ``--overwrite``.  Resuming
restores model, optimiser, scheduler, AMP scaler and RNG states and continues at the
next visit; the options that decide the crop schedule must be the original ones.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fkd.checkpoints import (
    CHECKPOINT_FILE,
    check_arch,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
)
from fkd.train.config import TrainConfig, TrainError
from fkd.train.ddp import Distributed
from fkd.train.metrics import METRICS_FILE
from fkd.train.step import StepContext

# The options a resumed run must share with the original: they decide the crop schedule.
SCHEDULE_KEYS = ("crops_per_visit", "batch_size", "seed", "labels")


def prepare_out(config: TrainConfig, dist_info: Distributed) -> tuple[Path | None, Path | None]:
    """(out dir, checkpoint to resume from) after checking they make sense."""
    out = Path(config.out) if config.out is not None else None
    if out is not None and out.exists() and not out.is_dir():
        raise TrainError(
            f"--out {out} is a file, not a folder; give a folder for checkpoint.pt and "
            f"{METRICS_FILE} (it is created if missing)"
        )
    resume: Path | None = None
    if config.resume is not None:
        resume = Path(config.resume)
        if resume.is_dir():
            resume = resume / CHECKPOINT_FILE
        if out is None:
            out = resume.parent  # keep checkpointing where the run was
    elif out is not None and (out / CHECKPOINT_FILE).exists() and not config.overwrite:
        raise TrainError(
            f"{out} already holds a checkpoint; pass --resume {out} to continue that run, "
            "or --overwrite to start again"
        )
    if out is not None and dist_info.is_main:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TrainError(
                f"--out {out}: cannot create the folder ({exc.strerror}); choose another --out"
            ) from exc
        if resume is None and (out / METRICS_FILE).exists():
            (out / METRICS_FILE).unlink()
    return out, resume


def load_resume(path: Path | None, config: TrainConfig) -> dict[str, Any] | None:
    """The checkpoint to resume from (None: a fresh run), checked against ``config``."""
    if path is None:
        return None
    checkpoint = load_checkpoint(path)
    check_arch(checkpoint, config.model)
    saved = checkpoint.get("args") or {}
    for key in SCHEDULE_KEYS:
        if key in saved and saved[key] != getattr(config, key):
            raise TrainError(
                f"checkpoint {checkpoint.get('path')!r} was trained with {key}={saved[key]!r}, "
                f"not {getattr(config, key)!r}; resuming with another {key} would change the "
                "crop schedule: pass the original value"
            )
    return checkpoint


def restore(ctx: StepContext, checkpoint: Mapping[str, Any]) -> tuple[int, float | None]:
    """Optimiser, scheduler, scaler, RNG and step of ``checkpoint``; (visits done, best top-1)."""
    ctx.optimizer.load_state_dict(checkpoint["optimizer"])
    ctx.scheduler.load_state_dict(checkpoint["scheduler"])
    if ctx.scaler is not None and "scaler" in checkpoint:
        ctx.scaler.load_state_dict(checkpoint["scaler"])
    if "rng" in checkpoint:
        set_rng_state(checkpoint["rng"])
    ctx.global_step = int(checkpoint["global_step"])
    return int(checkpoint["epoch"]), checkpoint.get("best_top1")


def save(
    out: Path,
    ctx: StepContext,
    record: Mapping[str, Any],
    best_top1: float | None,
    input_size: int,
    interpolation: str,
    class_names: tuple[str, ...] | None,
) -> str:
    """Write ``out/checkpoint.pt`` after the epoch of ``record``; its path.

    The checkpoint records the preprocessing (``input_size``, the model's mean/std and
    ``interpolation``) so ``fkd eval`` and ``fkd teacher-eval`` read the student alone.
    """
    config = ctx.config
    path = save_checkpoint(
        out / CHECKPOINT_FILE,
        model=ctx.model,
        arch=config.model,
        num_classes=ctx.num_classes,
        input_size=input_size,
        mean=ctx.mean,
        std=ctx.std,
        interpolation=interpolation,
        class_names=class_names,
        optimizer=ctx.optimizer,
        scheduler=ctx.scheduler,
        scaler=ctx.scaler,
        epoch=record["epoch"],
        crop_epoch=record["crop_epoch"],
        global_step=ctx.global_step,
        args=config.to_dict(),
        best_top1=best_top1,
        metrics=record,
    )
    return os.fspath(path)

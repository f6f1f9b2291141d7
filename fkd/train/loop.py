"""The training run: ``train`` (the ``fkd train`` entry), ``train_one_epoch``, and the loop.

Torchvision's classification reference in shape: build the data (``load_data``), the
model and optimiser (``build_step_context``), then per visit ``train_one_epoch``,
``validate``, a metrics line and a checkpoint.  A resumed run restores its states and
continues at the next visit (``fkd.train.checkpointing``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fkd.crop_budget import uses_per_crop, visits_for
from fkd.evaluation import EvalResult
from fkd.models import ModelDefaults
from fkd.models.registry import model_defaults
from fkd.progress import Progress
from fkd.train.build import build_step_context, load_run_data, seed_everything
from fkd.train.checkpointing import load_resume, prepare_out, restore, save
from fkd.train.config import TrainConfig
from fkd.train.ddp import (
    Distributed,
    all_reduce_sum,
    barrier,
    init_distributed,
    shutdown,
    sync_buffers,
)
from fkd.train.loading import TrainData
from fkd.train.metrics import (
    METRICS_FILE,
    EpochStats,
    append_metrics,
    epoch_line,
    epoch_record,
    trim_metrics,
)
from fkd.train.schedule import mix_generator
from fkd.train.step import StepContext, train_step
from fkd.train.targets import load_online_teacher
from fkd.train.validation import validate

Say = Callable[[str], None]


@dataclass
class TrainResult:
    """What a run did: per-epoch metrics and the summary."""

    metrics: list[dict[str, Any]]
    best_top1: float | None
    final_top1: float | None
    final_top5: float | None
    epochs: int
    crop_epochs: float
    crops_per_second: float
    seconds: float
    checkpoint: str | None
    resumed_from: int = 0
    rank: int = 0

    def lines(self) -> list[str]:
        best = "n/a (no validation folder)" if self.best_top1 is None else f"{self.best_top1:.2f}%"
        final = (
            ""
            if self.final_top1 is None
            else f"final top-1 {self.final_top1:.2f}% top-5 {self.final_top5:.2f}%, "
        )
        lines = [
            f"done: {self.epochs} epochs ({self.crop_epochs:g} crop-epochs), {final}"
            f"best top-1 {best}, {self.crops_per_second:.0f} crops/s, {self.seconds:.1f}s"
        ]
        if self.checkpoint:
            lines.append(f"checkpoint: {self.checkpoint}")
        return lines


def train(
    config: TrainConfig,
    log: Callable[[str], None] | None = None,
    progress: bool | None = None,
) -> TrainResult:
    """Run ``fkd train``; ``log`` receives one line per epoch (rank 0 only)."""
    started = time.perf_counter()
    defaults = model_defaults(config.model)  # an unknown model fails here, before any work
    dist_info = init_distributed(config.device)
    try:
        return main(config, defaults, dist_info, log, progress, started)
    finally:
        shutdown(dist_info)


def main(
    config: TrainConfig,
    defaults: ModelDefaults,
    dist_info: Distributed,
    log: Say | None,
    progress: bool | None,
    started: float,
) -> TrainResult:
    """One run on this process: set up, resume or seed, then train every visit."""
    say: Say = log if (log is not None and dist_info.is_main) else (lambda _line: None)
    out, resume_path = prepare_out(config, dist_info)
    checkpoint = load_resume(resume_path, config)
    teacher = load_online_teacher(config, dist_info.device)
    data, val_loader = load_run_data(config, defaults, teacher, dist_info, checkpoint)
    ctx = build_step_context(config, defaults, data, teacher, dist_info, checkpoint)
    start_visit, best_top1, metrics = resume_or_seed(ctx, checkpoint, out, say)
    for line in run_lines(config, data, ctx, teacher is not None):
        say(line)
    if start_visit >= ctx.schedule.visits:
        say(
            f"{checkpoint and checkpoint['path']} already finished all {ctx.schedule.visits} epochs"
        )
    bar = (
        Progress(data.num_images * (ctx.schedule.visits - start_visit), "train: ", enabled=progress)
        if dist_info.is_main
        else None
    )
    evaluation: EvalResult | None = None
    checkpoint_path: str | None = None
    total_crops, total_seconds = 0, 0.0
    for visit in range(start_visit, ctx.schedule.visits):
        stats = train_one_epoch(ctx, data, visit, bar)
        total_crops += stats.crops
        total_seconds += stats.seconds
        sync_buffers(ctx.model, dist_info)
        eval_start = time.perf_counter()
        if val_loader is not None:
            evaluation = validate(
                ctx.model, val_loader, ctx.mean, ctx.std, config, ctx.amp_dtype, dist_info
            )
            best_top1 = evaluation.top1 if best_top1 is None else max(best_top1, evaluation.top1)
        record = epoch_record(
            visit,
            ctx.schedule.crop_epoch_after_visit(visit),
            ctx.global_step,
            stats,
            evaluation,
            time.perf_counter() - eval_start,
            dist_info.world_size,
            data.crop_path,
        )
        metrics.append(record)
        if bar is not None and bar.enabled:
            bar.close()  # end the progress line; the next epoch starts a new one
        say(epoch_line(record, ctx.schedule.visits, config.epochs))
        if out is not None and dist_info.is_main:
            append_metrics(out / METRICS_FILE, record)
            checkpoint_path = save(
                out,
                ctx,
                record,
                best_top1,
                config.input_size or defaults.input_size,
                defaults.interpolation,
                data.output_names,
            )
        barrier(dist_info)
    last = metrics[-1] if metrics else {}
    return TrainResult(
        metrics=metrics,
        best_top1=best_top1,
        final_top1=last.get("top1") if evaluation is None else evaluation.top1,
        final_top5=last.get("top5") if evaluation is None else evaluation.top5,
        epochs=ctx.schedule.visits,
        crop_epochs=float(config.epochs),
        crops_per_second=total_crops / max(total_seconds, 1e-9),
        seconds=time.perf_counter() - started,
        checkpoint=checkpoint_path,
        resumed_from=start_visit,
        rank=dist_info.rank,
    )


def resume_or_seed(
    ctx: StepContext, checkpoint: dict[str, Any] | None, out: Path | None, say: Say
) -> tuple[int, float | None, list[dict[str, Any]]]:
    """(visits done, best top-1, metrics so far): a checkpoint's states restored, or, for
    a fresh run, the RNGs seeded for this rank."""
    if checkpoint is None:
        seed_everything(ctx.config.seed, ctx.dist.rank)
        return 0, None, []
    start_visit, best_top1 = restore(ctx, checkpoint)
    metrics: list[dict[str, Any]] = []
    if out is not None and ctx.dist.is_main:
        metrics = trim_metrics(out / METRICS_FILE, start_visit)
    say(f"resuming {checkpoint['path']} at epoch {start_visit + 1}/{ctx.schedule.visits}")
    return start_visit, best_top1, metrics


def run_lines(config: TrainConfig, data: TrainData, ctx: StepContext, online: bool) -> list[str]:
    """What the run is about to do, as ``fkd train`` prints it first."""
    crops_from = f" on the crops of {config.labels}" if config.labels else ""
    what = (
        "online teacher " + "+".join(config.online_teacher) + crops_from
        if online
        else f"labels {config.labels}"
        if config.labels
        else "hard labels"
    )
    dist_info, schedule = ctx.dist, ctx.schedule
    return [
        f"training {config.model} on {data.num_images} images x {config.crops_per_visit} "
        f"crops/visit ({what}), {schedule.visits} epochs = {config.epochs} crop-epochs, "
        f"{schedule.steps_per_visit} steps/epoch, {dist_info.world_size} process(es), "
        f"{dist_info.device}",
        f"crops: {data.crop_path['crops_from']}, resampled {data.crop_path['resampling']}; "
        + reuse_line(config.epochs, config.crops_per_visit, data.crops_per_image),
    ]


def reuse_line(epochs: int, crops_per_visit: int, crops_per_image: int) -> str:
    """How many times the run uses each of the M stored (or sampled) crops."""
    uses = uses_per_crop(epochs, crops_per_visit, crops_per_image)
    if uses <= 1:
        used = visits_for(epochs, crops_per_visit) * crops_per_visit
        return f"every crop fresh ({used} of the M={crops_per_image} crops used, once each)"
    return (
        f"each of the M={crops_per_image} crops used {uses:.3g}x on average (Beyer et al. "
        f"2022: reuse can hurt; fkd generate --for-epochs {epochs} stores fresh ones)"
    )


def train_one_epoch(
    ctx: StepContext, data: TrainData, visit: int, progress: Progress | None = None
) -> EpochStats:
    """One visit of every image (``crops_in_visit`` crops each); stats summed over ranks."""
    ctx.model.train()
    data.set_epoch(visit)
    crops_used = ctx.schedule.crops_in_visit(visit)
    mix_gen = mix_generator(ctx.config.seed, visit, ctx.dist.rank)
    loss_sum = crops = images = soft_steps = hard_steps = 0.0
    start = time.perf_counter()
    for batch in data.loader:
        loss, count, soft = train_step(ctx, batch, crops_used, mix_gen)
        loss_sum += loss * count
        crops += count
        images += count / crops_used
        soft_steps += soft
        hard_steps += not soft
        if progress is not None:
            world = ctx.dist.world_size
            progress.update(int(count / crops_used) * world, count * world)
    if ctx.dist.device.type == "cuda":
        torch.cuda.synchronize(ctx.dist.device)
    seconds = time.perf_counter() - start
    loss_sum, crops, images = all_reduce_sum([loss_sum, crops, images], ctx.dist)
    return EpochStats(
        loss=loss_sum / max(crops, 1.0),
        lr=float(ctx.optimizer.param_groups[0]["lr"]),
        images=round(images),
        crops=int(crops),
        seconds=seconds,
        soft_steps=int(soft_steps),
        hard_steps=int(hard_steps),
    )

"""One optimiser step: the visit's crops, their targets, Mixup/CutMix, the loss, the update.

The loss is the soft loss (``fkd.losses``: ``soft_ce``, ``kl`` or ``dist``) on the soft
targets (``fkd.train.targets``), with ``alpha`` of a hard-label term mixed in; after
``kd_stop_epoch`` (Cho & Hariharan 2019) or without a teacher, the hard-label loss
alone.  Mixup/CutMix mix the images and every target alike (``fkd.mixing``), drawn from
the visit's generator (``fkd.train.schedule.mix_generator``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fkd.devices import autocast
from fkd.evaluation import model_input
from fkd.mixing import MixConfig, apply_mix, mix_images, mix_targets, sample_mix
from fkd.train.config import TrainConfig
from fkd.train.ddp import Distributed
from fkd.train.schedule import CropSchedule
from fkd.train.targets import SoftTargets, hard_loss


@dataclass
class StepContext:
    """What every training step needs (built once by ``fkd.train.loop.train``)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: Any
    config: TrainConfig
    schedule: CropSchedule
    dist: Distributed
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int
    soft_targets: SoftTargets
    amp_dtype: torch.dtype | None
    loss_fn: Callable[[Tensor, Tensor, Tensor | None], Tensor] | None = None
    mix_config: MixConfig = field(default_factory=MixConfig)
    global_step: int = 0

    @property
    def uses_soft_labels(self) -> bool:
        """Whether this step learns from a teacher (before ``kd_stop_epoch``)."""
        config = self.config
        crop_epoch = self.schedule.crop_epoch_at(self.global_step)
        return config.soft_labels and (
            config.kd_stop_epoch is None or crop_epoch < config.kd_stop_epoch
        )


def train_step(
    ctx: StepContext,
    batch: Mapping[str, Any],
    crops_used: int,
    mix_gen: torch.Generator,
) -> tuple[float, int, bool]:
    """One optimiser step; returns (loss, crops, whether soft labels were used)."""
    config, device = ctx.config, ctx.dist.device
    images, targets, keep = _visit_crops(batch, crops_used, config.crops_per_visit)
    images = images.to(device, non_blocking=True).float()  # uint8 crops: exact, on the device
    targets = targets.to(device, non_blocking=True)
    use_soft = ctx.uses_soft_labels
    soft = ctx.soft_targets(batch, images, keep) if use_soft else None
    x = model_input(images, ctx.mean, ctx.std, config.channels_last)
    params = sample_mix(ctx.mix_config, x.shape[0], x.shape[-2], x.shape[-1], mix_gen)
    hard: Tensor | None = None
    if not use_soft or config.alpha > 0:
        if params.kind == "none":
            hard = targets
        else:
            hard = mix_targets(F.one_hot(targets, ctx.num_classes).float(), params)
    if soft is not None:
        x, soft = apply_mix(x, soft, params)
    else:
        x = mix_images(x, params)
    with autocast(device, ctx.amp_dtype):
        logits = ctx.model(x)
    if soft is not None:
        assert ctx.loss_fn is not None
        loss = ctx.loss_fn(logits, soft, hard)
    else:
        assert hard is not None
        loss = hard_loss(logits, hard, config.label_smoothing)
    return _update(ctx, loss), len(targets), use_soft


def _visit_crops(
    batch: Mapping[str, Any], crops_used: int, crops_per_visit: int
) -> tuple[Tensor, Tensor, Tensor | None]:
    """The batch's images and targets, only the first ``crops_used`` crops of each image
    at a last, partial visit (``keep`` marks them; None: all)."""
    images, targets = batch["images"], batch["targets"]
    if crops_used >= crops_per_visit:
        return images, targets, None
    keep = torch.arange(len(targets)) % crops_per_visit < crops_used
    return images[keep], targets[keep], keep


def _update(ctx: StepContext, loss: Tensor) -> float:
    """Backward, optimiser and scheduler step (through the AMP scaler when fp16)."""
    ctx.optimizer.zero_grad(set_to_none=True)
    if ctx.scaler is not None:
        ctx.scaler.scale(loss).backward()
        ctx.scaler.step(ctx.optimizer)
        ctx.scaler.update()
    else:
        loss.backward()
        ctx.optimizer.step()
    ctx.scheduler.step()
    ctx.global_step += 1
    value = float(loss.detach())
    if not math.isfinite(value):
        raise FloatingPointError(
            f"the training loss became {value} at step {ctx.global_step}; lower --lr or "
            "check the labels"
        )
    return value

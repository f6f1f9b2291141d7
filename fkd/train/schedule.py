"""The schedule of a run in crop-epochs: visits, crops per visit, the LR factor, the mixing seed.

Each visit of an image cuts ``N = crops_per_visit`` crops from one decode, so one pass
of the loader (a *visit*, logged as an ``epoch``) is worth N passes over crops.
``epochs`` counts crop passes as FKD does: the loader runs ``ceil(epochs / N)`` visits,
and when ``epochs`` is not a multiple of N the last visit keeps only the first
``epochs mod N`` crops of every image, so every run sees exactly ``epochs x images``
crops.  The learning-rate schedule (cosine, step or constant, after a linear warm-up) is
a function of the crop-epoch reached, evaluated every optimiser step.  Crops, their
order, mixing and the LR are pure functions of (seed, visit, rank): a resumed run
follows the schedule of one that never stopped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from fkd.train.config import TrainConfig


@dataclass(frozen=True)
class CropSchedule:
    """How visits, steps and crop-epochs relate for one run."""

    epochs: int
    crops_per_visit: int
    steps_per_visit: int

    @property
    def visits(self) -> int:
        return math.ceil(self.epochs / self.crops_per_visit)

    @property
    def total_steps(self) -> int:
        return self.visits * self.steps_per_visit

    def crops_in_visit(self, visit: int) -> int:
        """Crops per image used at ``visit`` (fewer at a last, partial visit)."""
        return min(self.crops_per_visit, self.epochs - visit * self.crops_per_visit)

    def crop_epoch_at(self, step: float) -> float:
        """Crop-epochs done after ``step`` optimiser steps (fractional steps allowed)."""
        visit = min(int(step // self.steps_per_visit), self.visits - 1)
        within = (step - visit * self.steps_per_visit) / self.steps_per_visit
        return visit * self.crops_per_visit + self.crops_in_visit(visit) * within

    def crop_epoch_after_visit(self, visit: int) -> float:
        return float(min((visit + 1) * self.crops_per_visit, self.epochs))


def lr_factor(config: TrainConfig, crop_epoch: float) -> float:
    """The LR multiplier at ``crop_epoch``: linear warm-up, then the schedule."""
    warmup = config.warmup_epochs
    if warmup > 0 and crop_epoch < warmup:
        return max(crop_epoch / warmup, 1e-3)
    base = config.resolved_lr
    floor = min(config.min_lr / base, 1.0)
    if config.lr_schedule == "constant":
        return 1.0
    if config.lr_schedule == "step":
        return float(config.lr_gamma ** math.floor(crop_epoch / config.lr_step_epochs))
    span = max(config.epochs - warmup, 1e-9)
    progress = min(max((crop_epoch - warmup) / span, 0.0), 1.0)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def mix_generator(seed: int, visit: int, rank: int) -> torch.Generator:
    """The Mixup/CutMix generator of one visit on one rank: seeded from (seed, visit, rank)."""
    state = np.random.SeedSequence([seed, visit, rank]).generate_state(2, dtype=np.uint32)
    generator = torch.Generator()
    generator.manual_seed(int(state[0]) << 32 | int(state[1]))
    return generator

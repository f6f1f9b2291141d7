"""``TrainConfig``: every option of ``fkd train``, validated once on construction.

``TrainError`` is the error of a training setup the user has to fix.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from fkd.crop_budget import crops_for_epochs
from fkd.devices import AMP_MODES
from fkd.exceptions import UserInputError
from fkd.losses import LossConfig
from fkd.mixing import MixConfig
from fkd.storage_formats import CropSpec
from fkd.storage_formats.spec import MAX_CROPS_PER_IMAGE

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "step", "constant")
LOSS_NAMES = ("soft_ce", "kl", "dist")


class TrainError(UserInputError):
    """A training setup the user has to fix; the message says why and how."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise TrainError(message)


@dataclass(frozen=True)
class TrainConfig:
    """Every option of ``fkd train`` (see ``fkd train --help``).

    ``epochs`` and every other ``*_epoch(s)`` count passes over crops (crop-epochs);
    ``batch_size`` counts crops per optimiser step over all processes.
    ``lr``/``weight_decay`` default by optimiser (SGD 0.1 / 1e-4, AdamW 1e-3 / 0.05);
    ``temperature`` defaults to the store's (1 for an online teacher).
    """

    data: str
    model: str
    labels: str | None = None
    val: str | None = None
    out: str | None = None
    resume: str | None = None
    overwrite: bool = False
    epochs: int = 10
    crops_per_visit: int = 4
    crops_per_image: int | None = None
    batch_size: int = 256
    input_size: int | None = None
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)
    flip_prob: float = 0.5
    optimizer: str = "sgd"
    lr: float | None = None
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float | None = None
    lr_schedule: str = "cosine"
    warmup_epochs: float = 0.0
    lr_step_epochs: float = 30.0
    lr_gamma: float = 0.1
    min_lr: float = 0.0
    loss: str = "soft_ce"
    temperature: float | None = None
    alpha: float = 0.0
    label_smoothing: float = 0.0
    dist_beta: float = 1.0
    dist_gamma: float = 1.0
    kd_stop_epoch: float | None = None
    mixup: float = 0.0
    cutmix: float = 0.0
    mix_prob: float = 1.0
    mix_switch_prob: float = 0.5
    online_teacher: tuple[str, ...] = ()
    online_teacher_weights: tuple[str, ...] = ()
    amp: str = "auto"
    channels_last: bool = False
    device: str = "auto"
    workers: int = 2
    seed: int = 0
    eval_batch_size: int = 256
    eval_crop_pct: float = 0.875
    skip_failed: bool = False
    check_sizes: bool = True

    def __post_init__(self) -> None:
        for name in ("scale", "ratio", "online_teacher", "online_teacher_weights"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        _require(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        _require(
            self.crops_per_visit >= 1, f"crops_per_visit must be >= 1, got {self.crops_per_visit}"
        )
        _require(
            self.crops_per_image is None or self.labels is None,
            f"crops_per_image: the store {self.labels} decides M; leave it out with labels",
        )
        _require(
            self.crops_per_image is None or self.crops_per_image >= self.crops_per_visit,
            f"crops_per_image must be >= crops_per_visit={self.crops_per_visit}, "
            f"got {self.crops_per_image}",
        )
        _require(
            self.batch_size >= self.crops_per_visit,
            f"batch_size counts crops and must be >= crops_per_visit={self.crops_per_visit}, "
            f"got {self.batch_size}",
        )
        _require(self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}")
        _require(self.lr_schedule in SCHEDULES, f"lr_schedule must be one of {SCHEDULES}")
        _require(self.amp in AMP_MODES, f"amp must be one of {AMP_MODES}")
        _require(self.loss in LOSS_NAMES, f"loss must be one of {LOSS_NAMES}, got {self.loss!r}")
        _require(self.lr is None or self.lr > 0, f"lr must be > 0, got {self.lr}")
        _require(
            self.warmup_epochs >= 0 and self.lr_step_epochs > 0 and self.min_lr >= 0,
            "warmup_epochs and min_lr must be >= 0 and lr_step_epochs > 0",
        )
        _require(
            self.kd_stop_epoch is None or self.kd_stop_epoch >= 0,
            f"kd_stop_epoch must be >= 0, got {self.kd_stop_epoch}",
        )
        _require(self.seed >= 0, f"seed must be >= 0, got {self.seed}")
        _require(self.workers >= 0, f"workers must be >= 0, got {self.workers}")
        _require(
            not self.online_teacher_weights
            or len(self.online_teacher_weights) == len(self.online_teacher),
            f"{len(self.online_teacher_weights)} online-teacher weights for "
            f"{len(self.online_teacher)} online teachers; give one per teacher",
        )
        try:  # the loss and mixing configs validate their own options
            self.loss_config(1.0)
            self.mix_config()
        except TrainError:
            raise
        except ValueError as exc:
            raise TrainError(str(exc)) from exc

    def sampled_crops(self) -> CropSpec:
        """The crops of a run without a store: M per image (default N x visits, every
        crop fresh), drawn by the store's sampler with ``seed``, so a store generated
        with the same M, scale, ratio, flip probability and seed holds the same boxes."""
        fresh = min(crops_for_epochs(self.epochs, self.crops_per_visit), MAX_CROPS_PER_IMAGE)
        return CropSpec(
            crops_per_image=self.crops_per_image or fresh,
            scale=self.scale,
            ratio=self.ratio,
            flip_prob=self.flip_prob,
            seed=self.seed,
        )

    @property
    def soft_labels(self) -> bool:
        """Whether a teacher (stored or live) provides the targets."""
        return self.labels is not None or bool(self.online_teacher)

    def loss_config(self, temperature: float) -> LossConfig:
        """The soft loss with the student temperature ``temperature`` where it applies."""
        if self.temperature is not None:
            _require(
                self.temperature > 0 and math.isfinite(self.temperature),
                f"temperature must be a positive number, got {self.temperature}",
            )
        return LossConfig(
            name=self.loss,
            temperature=temperature if self.loss in ("kl", "dist") else 1.0,
            beta=self.dist_beta if self.loss == "dist" else 1.0,
            gamma=self.dist_gamma if self.loss == "dist" else 1.0,
            alpha=self.alpha,
            label_smoothing=self.label_smoothing,
        )

    def mix_config(self) -> MixConfig:
        return MixConfig(self.mixup, self.cutmix, self.mix_prob, self.mix_switch_prob)

    @property
    def resolved_lr(self) -> float:
        return self.lr if self.lr is not None else (0.1 if self.optimizer == "sgd" else 1e-3)

    @property
    def resolved_weight_decay(self) -> float:
        if self.weight_decay is not None:
            return self.weight_decay
        return 1e-4 if self.optimizer == "sgd" else 0.05

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (tuples as lists)."""
        return {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in asdict(self).items()
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        _require(not unknown, f"TrainConfig: unknown keys {unknown}; known: {sorted(known)}")
        values: dict[str, Any] = {
            key: tuple(value) if isinstance(value, list) else value for key, value in data.items()
        }
        return cls(**values)

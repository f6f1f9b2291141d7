"""``TrainConfig``: the options of ``fkd train`` (``options.py``), checked once.

``__post_init__`` checks each declared option's range and choices, then what crosses
fields, with the crop sampler's, the loss's and the mixing's own validators; the
methods derive what the run needs (the sampled crops, the loss, the mixing, the LR).
The checks of single flags are torch-free, so the command line refuses a bad flag
before torch loads; only the loss and mixing checks, the last ones, import it.

``TrainError`` is the error of a training setup the user has to fix.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from fkd.crop_budget import crops_for_epochs
from fkd.exceptions import OptionError, UserInputError
from fkd.options import check_options, option_check
from fkd.train.options import AMP_MODES, LOSS_NAMES, OPTIMIZERS, SCHEDULES, TrainOptions, TrainRun

if TYPE_CHECKING:
    from fkd.losses import LossConfig
    from fkd.mixing import MixConfig
    from fkd.storage_formats import CropSpec


class TrainError(UserInputError):
    """A training setup the user has to fix; the message says why and how."""


class TrainOptionError(OptionError, TrainError):
    """A ``TrainConfig`` value refused naming its flag: a usage error on the command line."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise TrainError(message)


@dataclass(frozen=True)
class TrainConfig(TrainOptions):
    """Every option of ``fkd train`` (see ``fkd train --help``), checked on construction.

    The fields, with their flags, defaults, ranges and help, are ``TrainOptions``'s.
    """

    def __post_init__(self) -> None:
        for name in ("scale", "ratio", "online_teacher", "online_teacher_weights"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        try:
            self._check_flags()
        except OptionError as exc:  # still a TrainError for library callers
            raise TrainOptionError(exc.option, str(exc)) from None
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
        try:  # the loss and mixing configs validate their own options (imports torch)
            self.loss_config(1.0)
            self.mix_config()
        except TrainError:
            raise
        except ValueError as exc:
            raise TrainError(str(exc)) from exc

    def _check_flags(self) -> None:
        """Ranges and choices, then what one flag alone decides: torch-free."""
        from fkd.storage_formats import CropSpec

        check_options(self)
        if self.resume == "":  # --resume alone
            if self.out is None:
                raise OptionError("--resume", "--resume without a path needs --out")
            object.__setattr__(self, "resume", self.out)
        if self.online_teacher_weights and len(self.online_teacher_weights) != len(
            self.online_teacher
        ):
            raise OptionError(
                "--online-teacher-weights",
                f"{len(self.online_teacher_weights)} --online-teacher-weights for "
                f"{len(self.online_teacher)} --online-teacher; give one per teacher",
            )
        option_check("--scale", lambda: CropSpec(1, scale=self.scale))
        option_check("--ratio", lambda: CropSpec(1, ratio=self.ratio))

    def sampled_crops(self) -> CropSpec:
        """The crops of a run without a store: M per image (default N x visits, every
        crop fresh), drawn by the store's sampler with ``seed``, so a store generated
        with the same M, scale, ratio, flip probability and seed holds the same boxes."""
        from fkd.storage_formats import CropSpec
        from fkd.storage_formats.spec import MAX_CROPS_PER_IMAGE

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
        from fkd.losses import LossConfig

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
        from fkd.mixing import MixConfig

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


__all__ = [
    "AMP_MODES",
    "LOSS_NAMES",
    "OPTIMIZERS",
    "SCHEDULES",
    "TrainConfig",
    "TrainError",
    "TrainOptionError",
    "TrainRun",
]

"""``TrainConfig``: every option of ``fkd train``, declared once and checked once.

Each field carries its command-line flag, help, range and choices (``fkd.options``);
``fkd train``'s click options are built from them. ``__post_init__`` checks the values,
with the crop sampler's, the loss's and the mixing's own validators. Light to import
(no torch): the command line refuses a bad flag before torch loads; only the loss and
mixing checks, the last ones, import it.

``TrainError`` is the error of a training setup the user has to fix.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from fkd.crop_budget import crops_for_epochs
from fkd.exceptions import OptionError, UserInputError
from fkd.options import argument, check_options, format_pair, option, option_check, parse_pair

if TYPE_CHECKING:
    from fkd.losses import LossConfig
    from fkd.mixing import MixConfig
    from fkd.storage_formats import CropSpec

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "step", "constant")
# The names of the registries in fkd.losses (``loss_names()``) and fkd.devices
# (``AMP_MODES``), which import torch: restated here, so that checking an option does
# not (tests/test_train.py holds them equal).
LOSS_NAMES = ("soft_ce", "kl", "dist")
AMP_MODES = ("auto", "bf16", "fp16", "off")


class TrainError(UserInputError):
    """A training setup the user has to fix; the message says why and how."""


class TrainOptionError(OptionError, TrainError):
    """A ``TrainConfig`` value refused naming its flag: a usage error on the command line."""


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

    data: str = argument("DATA", path=True)
    model: str = option(
        "--model",
        metavar="ARCH",
        help="Student architecture: cnn_4_8_16, cnn_8_16_32, cnn_teacher, "
        "efficientnet_lite0, any torchvision classification model, or timm:<name>.",
    )
    labels: str | None = option(
        "--labels",
        default=None,
        metavar="STORE",
        store=True,
        help="Label store made by fkd generate from DATA: train on its crops and "
        "soft labels. Without it (and without --online-teacher): hard labels.",
    )
    val: str | None = option(
        "--val",
        default=None,
        path=True,
        file_okay=False,
        help="Labelled folder evaluated every epoch [default: DATA/val when it "
        "exists, else no evaluation].",
    )
    out: str | None = option(
        "--out",
        default=None,
        metavar="DIR",
        help="Write DIR/checkpoint.pt and DIR/metrics.jsonl every epoch.",
    )
    resume: str | None = option(  # "" (--resume alone): resume from --out
        "--resume",
        default=None,
        flag_value="",
        metavar="[CKPT]",
        help="Continue a run from CKPT (a checkpoint or a folder holding "
        "checkpoint.pt); alone, from --out.",
    )
    overwrite: bool = option(
        "--overwrite", default=False, help="Start again even though --out holds a checkpoint."
    )
    epochs: int = option(
        "--epochs",
        default=10,
        low=1,
        help="Crop-epochs: passes over crops, counted as FKD does (one visit of "
        "N crops per image is N crop-epochs).",
    )
    crops_per_visit: int = option(
        "--crops-per-visit",
        "-n",
        default=4,
        low=1,
        help="N: crops cut from each decode of an image (at most the store's M).",
    )
    crops_per_image: int | None = option(
        "--crops-per-image",
        "-m",
        default=None,
        low=1,
        help="M without a store: each image's crops are drawn from M boxes of the "
        "store's sampler with --seed, N per visit, each once per M/N visits "
        "[default: N x visits, every crop fresh]. With a store's M, --seed, --scale and "
        "--ratio, hard labels and --online-teacher see exactly the FKD student's crops.",
    )
    batch_size: int = option(
        "--batch-size",
        "-b",
        default=256,
        low=1,
        help="Crops per optimiser step over all processes (images per step: batch-size / N).",
    )
    input_size: int | None = option(
        "--input-size",
        default=None,
        low=8,
        help="Crop size in pixels [default: the model's, e.g. 28 for the small "
        "CNNs, 224 otherwise].",
    )
    scale: tuple[float, float] = option(
        "--scale",
        default=(0.08, 1.0),
        parse=parse_pair,
        format=format_pair,
        help="RandomResizedCrop area range when crops are sampled on the fly (no store).",
    )
    ratio: tuple[float, float] = option(
        "--ratio",
        default=(3.0 / 4.0, 4.0 / 3.0),
        parse=parse_pair,
        format=format_pair,
        help="RandomResizedCrop aspect-ratio range when crops are sampled on the fly.",
    )
    flip_prob: float = 0.5
    optimizer: str = option("--opt", default="sgd", choices=OPTIMIZERS, help="Optimiser.")
    lr: float | None = option(
        "--lr",
        default=None,
        low=0,
        low_open=True,
        help="Peak learning rate [default: 0.1 for SGD, 1e-3 for AdamW].",
    )
    momentum: float = option("--momentum", default=0.9, low=0, high=1, help="SGD momentum.")
    nesterov: bool = option("--nesterov", default=False, help="Nesterov momentum for SGD.")
    weight_decay: float | None = option(
        "--weight-decay",
        "--wd",
        default=None,
        low=0,
        help="Weight decay [default: 1e-4 for SGD, 0.05 for AdamW].",
    )
    lr_schedule: str = option(
        "--lr-schedule",
        default="cosine",
        choices=SCHEDULES,
        help="Learning-rate schedule over crop-epochs, stepped every batch.",
    )
    warmup_epochs: float = option(
        "--warmup-epochs", default=0.0, low=0, help="Linear warm-up, in crop-epochs."
    )
    lr_step_epochs: float = option(
        "--lr-step-epochs",
        default=30.0,
        low=0,
        low_open=True,
        help="Step schedule: multiply the LR by --lr-gamma every this many crop-epochs.",
    )
    lr_gamma: float = option("--lr-gamma", default=0.1, low=0, help="Step schedule decay factor.")
    min_lr: float = option("--min-lr", default=0.0, low=0, help="Cosine schedule floor.")
    loss: str = option(
        "--loss", default="soft_ce", choices=LOSS_NAMES, help="Soft-label loss (see fkd.losses)."
    )
    temperature: float | None = option(
        "--temperature",
        "-t",
        default=None,
        low=0,
        low_open=True,
        help="Targets are softmax(teacher / T) (stored labels re-tempered when T "
        "differs from the store's); kl and dist also divide the student's logits "
        "by T [default: the store's temperature, 1 for an online teacher].",
    )
    alpha: float = option(
        "--alpha",
        default=0.0,
        low=0,
        high=1,
        help="Weight of a hard-label cross-entropy term mixed into the soft loss.",
    )
    label_smoothing: float = option(
        "--label-smoothing",
        default=0.0,
        low=0,
        high=1,
        high_open=True,
        help="Label smoothing of hard labels.",
    )
    dist_beta: float = option(
        "--dist-beta", default=1.0, low=0, help="DIST inter-class weight (--loss dist)."
    )
    dist_gamma: float = option(
        "--dist-gamma", default=1.0, low=0, help="DIST intra-class weight (--loss dist)."
    )
    kd_stop_epoch: float | None = option(
        "--kd-stop-epoch",
        default=None,
        low=0,
        help="Switch to hard labels from this crop-epoch on (early-stopped KD).",
    )
    mixup: float = option(
        "--mixup", default=0.0, low=0, help="Mixup Beta(a, a) concentration (0: off)."
    )
    cutmix: float = option(
        "--cutmix", default=0.0, low=0, help="CutMix Beta(a, a) concentration (0: off)."
    )
    mix_prob: float = option(
        "--mix-prob", default=1.0, low=0, high=1, help="Chance that a batch is mixed."
    )
    mix_switch_prob: float = option(
        "--mix-switch-prob",
        default=0.5,
        low=0,
        high=1,
        help="Chance of CutMix rather than Mixup when both are on.",
    )
    online_teacher: tuple[str, ...] = option(
        "--online-teacher",
        default=(),
        metavar="SPEC",
        help="Classical online KD: this live teacher (any fkd generate --teacher "
        "spec; repeat for an ensemble) labels each batch's crops.",
    )
    online_teacher_weights: tuple[str, ...] = option(
        "--online-teacher-weights",
        default=(),
        metavar="FILE",
        help="Weights for the online teacher at the same position.",
    )
    amp: str = option(
        "--amp",
        default="auto",
        choices=AMP_MODES,
        help="Mixed precision on CUDA (auto: bf16 where supported, else fp16); "
        "CPU runs in float32.",
    )
    channels_last: bool = option(
        "--channels-last", default=False, help="channels_last memory format."
    )
    device: str = option(
        "--device",
        default="auto",
        help="auto (CUDA when present, else CPU), cpu, cuda or cuda:N; under "
        "torchrun each process takes cuda:LOCAL_RANK.",
    )
    workers: int = option(
        "--workers",
        "-j",
        default=2,
        low=0,
        help="Loader processes decoding and cutting crops (0: inline).",
    )
    seed: int = option(
        "--seed",
        default=0,
        low=0,
        help="Seed of the crop schedule, image order, mixing and initialisation.",
    )
    eval_batch_size: int = option(
        "--eval-batch-size", default=256, low=1, help="Images per evaluation forward pass."
    )
    eval_crop_pct: float = option(
        "--eval-crop-pct",
        default=0.875,
        low=0.1,
        high=1.0,
        help="Evaluation: resize the short side to size / crop_pct, centre-crop.",
    )
    skip_failed: bool = option(
        "--skip-failed",
        default=False,
        help="Leave out images the store records as failed to decode.",
    )
    check_sizes: bool = option(
        "--no-check-sizes",
        default=True,
        help="Accept images whose file size changed since the store was made (a resized copy).",
    )

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


@dataclass(frozen=True)
class TrainRun:
    """What ``fkd train`` prints while it runs: the training does not depend on it."""

    quiet: bool = option("--quiet", "-q", default=False, help="No progress line.")


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

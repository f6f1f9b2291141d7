"""``TrainOptions``: every option of ``fkd train``, each declared once as a field.

A field carries its command-line flag, help, range and choices (``fkd.options``);
``fkd train``'s click options are built from them, and ``TrainConfig``
(``config.py``) adds the checks across fields and the values derived from them.
Torch-free and light to import: the command line refuses a bad flag before torch loads.
"""

from __future__ import annotations

from dataclasses import dataclass

from fkd import shared_options as shared
from fkd.options import argument, option, probability

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "step", "constant")
# The names of the registries in fkd.losses (``loss_names()``) and fkd.devices
# (``AMP_MODES``), which import torch: restated here, so that checking an option does
# not (tests/test_options.py holds them equal).
LOSS_NAMES = ("soft_ce", "kl", "dist")
AMP_MODES = ("auto", "bf16", "fp16", "off")


@dataclass(frozen=True)
class TrainOptions:
    """The fields of ``TrainConfig``: what ``fkd train --help`` lists, in its order.

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
    scale: tuple[float, float] = shared.crop_scale(
        "RandomResizedCrop area range when crops are sampled on the fly (no store)."
    )
    ratio: tuple[float, float] = shared.crop_ratio(
        "RandomResizedCrop aspect-ratio range when crops are sampled on the fly."
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
    momentum: float = probability("--momentum", 0.9, "SGD momentum.")
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
    alpha: float = probability(
        "--alpha",
        0.0,
        "Weight of a hard-label cross-entropy term mixed into the soft loss.",
    )
    label_smoothing: float = probability(
        "--label-smoothing",
        0.0,
        "Label smoothing of hard labels.",
        high_open=True,
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
    mix_prob: float = probability("--mix-prob", 1.0, "Chance that a batch is mixed.")
    mix_switch_prob: float = probability(
        "--mix-switch-prob",
        0.5,
        "Chance of CutMix rather than Mixup when both are on.",
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


@dataclass(frozen=True)
class TrainRun:
    """What ``fkd train`` prints while it runs: the training does not depend on it."""

    quiet: bool = option("--quiet", "-q", default=False, help="No progress line.")


__all__ = ["AMP_MODES", "LOSS_NAMES", "OPTIMIZERS", "SCHEDULES", "TrainOptions", "TrainRun"]

"""``fkd train``: train a student on stored crops and soft labels, with no teacher.

The loop follows torchvision's classification reference (small plain functions:
:func:`build_optimizer`, :func:`build_scheduler`, :func:`load_data`,
:func:`train_one_epoch`, :func:`evaluate`, :func:`train`) with FKD's way of counting:

Crop-epochs.  Each visit of an image cuts ``N = crops_per_visit`` crops from one
decode, so one pass of the loader (a *visit*, logged as an ``epoch``) is worth N
passes over crops.  ``epochs`` counts crop passes as FKD does: the loader runs
``ceil(epochs / N)`` visits, and when ``epochs`` is not a multiple of N the last
visit keeps only the first ``epochs mod N`` crops of every image, so every run
sees exactly ``epochs x images`` crops.  The learning-rate schedule (cosine, step
or constant, after a linear warm-up) is a function of the crop-epoch reached,
evaluated every optimiser step.

Label sources, per step:

- ``labels`` (a store): the stored soft labels of the scheduled crops
  (``fkd.data.make_loader``), decoded on the device;
- ``online_teacher``: a live teacher labels the very crops the student sees
  (normalised with the teacher's mean/std, resized to its input size) each step:
  classical online KD with the same crop budget and schedule. With a store the
  crops are the store's; without, they come from ``fkd.crops.datasets.SampledCropDataset``;
- neither: hard labels (cross-entropy with ``label_smoothing``) on the same kind
  of random-resized crops, N per visit, so budgets compare.

One crop path: without a store, boxes are drawn by the store's sampler for M =
``crops_per_image`` crops per image (default N x visits, every crop fresh) with
``seed``, and each visit takes the crops of the same ``crop_schedule`` the FKD loader
uses; all three students cut through ``fkd.crops.cut`` with the CPU worker's
resampling.  So a hard-label or online-KD run with the M, scale, ratio, flip
probability and seed of a store sees exactly the FKD student's crops.  The metrics
record the crop path (``crops_from``, ``resampling``).

``kd_stop_epoch`` switches to hard labels once that crop-epoch is reached
(Cho & Hariharan 2019); ``alpha`` mixes a hard-label term into the soft loss.

Targets are ``softmax(teacher / T)``: store labels are re-tempered from the store's
temperature when ``temperature`` differs from it; ``kl`` and ``dist`` also divide
the student's logits by T (see ``fkd.losses``).

Distributed: under ``torchrun`` (``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` set) every
process trains on a disjoint ``1/world`` of the images (``CropScheduleSampler``);
``batch_size`` is the global number of crops per step, split over ranks. Rank 0
alone writes metrics and checkpoints; evaluation counts are all-reduced.

Resuming restores model, optimiser, scheduler, AMP scaler and RNG states and
continues at the next visit: crops, their order, mixing and the LR schedule are
pure functions of (seed, visit, rank), so a killed run resumed follows the same
schedule as one that never stopped.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset

from fkd import crops as crop_ops
from fkd.checkpoints import (
    CHECKPOINT_FILE,
    check_arch,
    load_checkpoint,
    load_model_state,
    save_checkpoint,
    set_rng_state,
    unwrap_model,
)
from fkd.crops.datasets import SampledCropDataset
from fkd.devices import AMP_MODES, autocast, resolve_device
from fkd.devices import amp_dtype as choose_amp_dtype
from fkd.exceptions import UserInputError
from fkd.images import ImageSource, scan_source
from fkd.losses import LossConfig, retemper, with_hard_labels
from fkd.mixing import MixConfig, MixParams, apply_mix, mix_images, mix_targets, sample_mix
from fkd.models.registry import build_model, model_defaults
from fkd.progress import Progress
from fkd.storage_formats import CodecSpec, CropSpec
from fkd.worker_lifetime import DataLoaderWorkerLifetime

__all__ = [
    "METRICS_FILE",
    "EvalResult",
    "TrainConfig",
    "TrainData",
    "TrainError",
    "TrainResult",
    "build_optimizer",
    "build_scheduler",
    "evaluate",
    "evaluate_checkpoint",
    "load_data",
    "train",
    "train_one_epoch",
]

METRICS_FILE = "metrics.jsonl"
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "step", "constant")
LOSS_NAMES = ("soft_ce", "kl", "dist")


class TrainError(UserInputError):
    """A training setup the user has to fix; the message says why and how."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise TrainError(message)


# --------------------------------------------------------------------------- configuration


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
        visits = math.ceil(self.epochs / self.crops_per_visit)
        return CropSpec(
            crops_per_image=self.crops_per_image or visits * self.crops_per_visit,
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


# --------------------------------------------------------------------------- distributed


@dataclass(frozen=True)
class Distributed:
    """This process's place in a (possibly one-process) run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_name: str) -> Distributed:
    """Join the ``torchrun`` process group when ``WORLD_SIZE`` > 1 (gloo on CPU, nccl on GPU)."""

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed(device=resolve_device(device_name))
    import torch.distributed as dist

    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, init_method="env://")
    return Distributed(rank, world_size, local_rank, device)


def _all_reduce_sum(values: Sequence[float], dist_info: Distributed) -> list[float]:
    """Sum ``values`` over all ranks (float64)."""
    if not dist_info.enabled:
        return list(values)
    import torch.distributed as dist

    backend_device = dist_info.device if dist_info.device.type == "cuda" else torch.device("cpu")
    tensor = torch.tensor(list(values), dtype=torch.float64, device=backend_device)
    dist.all_reduce(tensor)
    return [float(v) for v in tensor.cpu().tolist()]


def _sync_buffers(model: nn.Module, dist_info: Distributed) -> None:
    """Give every rank rank 0's buffers (BatchNorm statistics) before evaluating or saving."""
    if not dist_info.enabled:
        return
    import torch.distributed as dist

    for buffer in unwrap_model(model).buffers():
        dist.broadcast(buffer.data, src=0)


def _barrier(dist_info: Distributed) -> None:
    if dist_info.enabled:
        import torch.distributed as dist

        dist.barrier()


# --------------------------------------------------------------------------- crop schedule


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


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD (momentum, optional Nesterov) or AdamW over all parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    lr, decay = config.resolved_lr, config.resolved_weight_decay
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=lr, momentum=config.momentum, nesterov=config.nesterov, weight_decay=decay
        )
    return torch.optim.AdamW(params, lr=lr, weight_decay=decay)


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, schedule: CropSchedule
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step LambdaLR: step s runs at ``lr x lr_factor(crop-epoch at the middle of s)``."""

    def factor(step: int) -> float:
        return lr_factor(config, schedule.crop_epoch_at(step + 0.5))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# --------------------------------------------------------------------------- data


@dataclass
class TrainData:
    """The training loader and what the loop needs to know about it."""

    loader: DataLoader[Any]
    dataset: Any
    sampler: Any
    num_images: int
    num_classes: int
    class_names: tuple[str, ...] | None
    codec: CodecSpec | None
    store_temperature: float

    def set_epoch(self, epoch: int) -> None:
        for part in (self.dataset, self.sampler):
            part.set_epoch(epoch)

    @property
    def crop_path(self) -> dict[str, Any]:
        """Where the crops' boxes come from and how they are resampled (for the metrics)."""
        dataset = self.dataset
        if isinstance(dataset, SampledCropDataset):
            spec = dataset.crops
            crops_from = f"sampled M={spec.crops_per_image} seed={spec.seed} {spec.sampler}"
        else:
            crops_from = f"store {dataset.location} M={dataset.crops_per_image}"
        return {"crops_from": crops_from, "resampling": dataset.resampling.name}

    @property
    def targets(self) -> np.ndarray:
        """The class of every training image (-1: none)."""
        return np.asarray(self.dataset.targets)

    @property
    def output_names(self) -> tuple[str, ...] | None:
        """The name of every output class (for the checkpoint), when all are known."""
        names = self.class_names
        return tuple(names) if names is not None and len(names) == self.num_classes else None


def _class_info(config: TrainConfig) -> tuple[ImageSource, tuple[str, ...] | None]:
    source = scan_source(config.data)
    return source, source.class_names


def load_data(
    config: TrainConfig,
    input_size: int,
    dist_info: Distributed,
    teacher_classes: int | None,
    teacher_names: Sequence[str] | None = None,
    targets_used: bool = True,
) -> TrainData:
    """The training loader: the store's crops and labels, or on-the-fly crops of the folder.

    With a teacher (the store's, or ``teacher_classes`` / ``teacher_names`` of an online
    one) the student's outputs are the teacher's classes: when ``targets_used`` (hard
    labels or evaluation), each class folder is matched to one of them by name or
    ImageNet wnid, and a folder that names none of them is refused before training.
    """
    from fkd.data import CropScheduleSampler, collate_crops, make_loader

    world = dist_info.world_size
    batch_images = config.batch_size // config.crops_per_visit // world
    _require(
        batch_images >= 1,
        f"batch_size {config.batch_size} crops is too small for {config.crops_per_visit} crops "
        f"per visit on {world} process(es); use at least {config.crops_per_visit * world}",
    )
    source, class_names = _class_info(config)
    if config.labels is not None:
        loader, dataset, sampler = make_loader(
            config.data,
            config.labels,
            batch_images=batch_images,
            crops_per_visit=config.crops_per_visit,
            input_size=input_size,
            seed=config.seed,
            workers=config.workers,
            rank=dist_info.rank,
            world_size=world,
            skip_failed=config.skip_failed,
            check_sizes=config.check_sizes,
            with_labels=not config.online_teacher,
            pin_memory=dist_info.device.type == "cuda",
        )
        codec = dataset.codec
        num_classes = teacher_classes or codec.num_classes
        names = teacher_names if config.online_teacher else dataset.spec.teacher.class_names
        where = f"the store's teacher {dataset.spec.teacher.spec!r}"
        if config.online_teacher:
            where = f"the online teacher {'+'.join(config.online_teacher)!r}"
        output_names = _match_teacher_classes(
            dataset, config, class_names, names, where, targets_used
        )
        return TrainData(
            loader,
            dataset,
            sampler,
            len(dataset),
            num_classes,
            output_names,
            codec,
            codec.temperature,
        )
    crops = config.sampled_crops()
    folder = SampledCropDataset(source, crops, config.crops_per_visit, input_size, config.seed)
    targets = folder.targets
    if teacher_classes is None:
        _require(
            len(targets) > 0 and bool((targets >= 0).all()),
            f"{config.data}: training with hard labels needs a class for every image "
            "(an ImageFolder tree or a labelled file list)",
        )
    num_classes = teacher_classes or int(targets.max()) + 1
    if class_names is not None and teacher_classes is None:
        num_classes = max(num_classes, len(class_names))
    if teacher_classes is not None:
        where = f"the online teacher {'+'.join(config.online_teacher)!r}"
        class_names = _match_teacher_classes(
            folder, config, class_names, teacher_names, where, targets_used
        )
    sampler = CropScheduleSampler(folder, num_replicas=world, rank=dist_info.rank, seed=config.seed)
    extra: dict[str, Any] = {"persistent_workers": True} if config.workers > 0 else {}
    plain_loader: DataLoader[Any] = DataLoader(
        folder,
        batch_size=batch_images,
        sampler=sampler,
        num_workers=config.workers,
        collate_fn=collate_crops,
        pin_memory=dist_info.device.type == "cuda",
        worker_init_fn=DataLoaderWorkerLifetime(),
        **extra,
    )
    return TrainData(
        plain_loader, folder, sampler, len(folder), num_classes, class_names, None, 1.0
    )


def _match_teacher_classes(
    dataset: Any,
    config: TrainConfig,
    folder_names: Sequence[str] | None,
    teacher_names: Sequence[str] | None,
    teacher_what: str,
    targets_used: bool,
) -> tuple[str, ...] | None:
    """Map ``dataset.targets`` onto the teacher's classes; the names of the student's outputs.

    Unchanged when either side is unnamed or the folder's classes are the teacher's first
    ones; otherwise (and only when targets are used) matched by name or wnid.
    """
    from fkd.classes import is_positional, match_classes, remap_targets
    from fkd.models.imagenet_classes import imagenet_wnids_for

    if teacher_names is None:
        return None if folder_names is None else tuple(folder_names)
    if folder_names is not None and targets_used and not is_positional(folder_names, teacher_names):
        mapping = match_classes(
            folder_names,
            teacher_names,
            imagenet_wnids_for(teacher_names),
            folder_what=f"{config.data}: its classes",
            model_what=teacher_what,
        )
        dataset.targets = remap_targets(dataset.targets, mapping)
    return tuple(teacher_names)


def default_val_folder(config: TrainConfig) -> Path | None:
    """``--val``, else ``DATA/val`` when it exists, else none (no evaluation)."""
    if config.val is not None:
        return Path(config.val)
    candidate = Path(config.data) / "val"
    return candidate if candidate.is_dir() else None


def load_eval_data(
    folder: str | Path,
    input_size: int,
    crop_pct: float,
    interpolation: str,
    batch_size: int,
    workers: int,
    num_classes: int,
    class_names: Sequence[str] | None = None,
    dist_info: Distributed | None = None,
) -> DataLoader[Any]:
    """Resized, centre-cropped images of a labelled folder; this rank's share under DDP."""
    from fkd.evaluate import EvalDataset, model_targets

    source = scan_source(folder)
    _require(
        bool((source.manifest.targets >= 0).all()),
        f"{folder}: some images have no class; evaluation needs an ImageFolder tree or a "
        "labelled file list",
    )
    # Each class folder is matched to the model's classes (by name or wnid) when known.
    targets = model_targets(source, class_names, num_classes, f"{folder}", "the model")
    dataset: Dataset[Any] = EvalDataset(source, input_size, crop_pct, interpolation, targets)
    if dist_info is not None and dist_info.enabled:
        dataset = Subset(dataset, range(dist_info.rank, len(source), dist_info.world_size))
    # Persistent workers: evaluated every epoch, so they are started once.
    extra: dict[str, Any] = {"persistent_workers": True} if workers > 0 else {}
    return DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=workers,
        worker_init_fn=DataLoaderWorkerLifetime(),
        **extra,
    )


# --------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class EvalResult:
    top1: float
    top5: float
    loss: float
    images: int
    failed: int

    def line(self) -> str:
        failed = f" ({self.failed} failed to decode)" if self.failed else ""
        return (
            f"top-1 {self.top1:.2f}%  top-5 {self.top5:.2f}%  loss {self.loss:.4f}  "
            f"on {self.images} images{failed}"
        )


def _normalise(
    images: Tensor, mean: Sequence[float], std: Sequence[float], channels_last: bool
) -> Tensor:
    x = crop_ops.normalise(images, mean, std)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def evaluate(
    model: nn.Module,
    loader: DataLoader[Any],
    device: torch.device,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    channels_last: bool = False,
    amp_dtype: torch.dtype | None = None,
    dist_info: Distributed | None = None,
) -> EvalResult:
    """Top-1/top-5 (%) and cross-entropy of ``model`` over ``loader``, summed over ranks."""
    module = unwrap_model(model)
    was_training = module.training
    module.eval()
    totals = [0.0, 0.0, 0.0, 0.0, 0.0]  # correct1, correct5, loss sum, seen, failed
    with torch.inference_mode():
        for images, targets, ok in loader:
            valid = ok.bool()
            totals[4] += float((~valid).sum())
            if not bool(valid.any()):
                continue
            x = _normalise(images[valid].to(device), mean, std, channels_last)
            y = targets[valid].to(device)
            with autocast(device, amp_dtype):
                logits = module(x)
            logits = logits.float()
            top = logits.topk(min(5, logits.shape[-1]), dim=-1).indices
            hit = top == y[:, None]
            totals[0] += float(hit[:, 0].sum())
            totals[1] += float(hit.any(-1).sum())
            totals[2] += float(F.cross_entropy(logits, y, reduction="sum"))
            totals[3] += float(len(y))
    module.train(was_training)
    correct1, correct5, loss_sum, seen, failed = _all_reduce_sum(totals, dist_info or Distributed())
    seen_n = max(seen, 1.0)
    return EvalResult(
        100.0 * correct1 / seen_n,
        100.0 * correct5 / seen_n,
        loss_sum / seen_n,
        int(seen),
        int(failed),
    )


# --------------------------------------------------------------------------- one epoch


def mix_generator(seed: int, visit: int, rank: int) -> torch.Generator:
    """The Mixup/CutMix generator of one visit on one rank: seeded from (seed, visit, rank)."""
    state = np.random.SeedSequence([seed, visit, rank]).generate_state(2, dtype=np.uint32)
    generator = torch.Generator()
    generator.manual_seed(int(state[0]) << 32 | int(state[1]))
    return generator


@dataclass
class StepContext:
    """What every training step needs (built once by :func:`train`)."""

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
    codec: CodecSpec | None
    store_temperature: float
    target_temperature: float
    amp_dtype: torch.dtype | None
    teacher: Any = None
    loss_fn: Callable[[Tensor, Tensor, Tensor | None], Tensor] | None = None
    mix_config: MixConfig = field(default_factory=MixConfig)
    global_step: int = 0


@dataclass
class EpochStats:
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


def _teacher_targets(ctx: StepContext, images: Tensor) -> Tensor:
    """The live teacher's ``softmax(z / T)`` for the crops (0..255 pixels)."""
    info = ctx.teacher.info
    x = images
    if x.shape[-1] != info.input_size:
        x = F.interpolate(
            x,
            size=(info.input_size, info.input_size),
            mode="bilinear",
            antialias=True,
            align_corners=False,
        )
    x = crop_ops.normalise(x, info.mean, info.std)
    with torch.inference_mode(), autocast(ctx.dist.device, ctx.amp_dtype):
        probs = ctx.teacher.probabilities(x, ctx.target_temperature)
    return probs.float().clone()


def _soft_targets(
    ctx: StepContext, batch: Mapping[str, Any], images: Tensor, keep: Tensor | None
) -> Tensor:
    if ctx.teacher is not None:
        return _teacher_targets(ctx, images)
    from fkd.labels import decode_torch

    assert ctx.codec is not None
    labels = batch["labels"]
    if keep is not None:
        labels = {name: value[keep] for name, value in labels.items()}
    soft = decode_torch(labels, ctx.codec, ctx.dist.device)
    if ctx.target_temperature != ctx.store_temperature:
        soft = retemper(soft, ctx.store_temperature, ctx.target_temperature).float()
    return soft


def _hard_loss(logits: Tensor, hard: Tensor, label_smoothing: float) -> Tensor:
    return with_hard_labels(logits.new_zeros(()).float(), logits, hard, 1.0, label_smoothing)


def train_step(
    ctx: StepContext,
    batch: Mapping[str, Any],
    crops_used: int,
    mix_gen: torch.Generator,
) -> tuple[float, int, bool]:
    """One optimiser step; returns (loss, crops, whether soft labels were used)."""
    config, device = ctx.config, ctx.dist.device
    images = batch["images"]
    targets = batch["targets"]
    keep: Tensor | None = None
    if crops_used < config.crops_per_visit:
        keep = torch.arange(len(targets)) % config.crops_per_visit < crops_used
        images, targets = images[keep], targets[keep]
    images = images.to(device, non_blocking=True)
    targets = targets.to(device, non_blocking=True)
    crop_epoch = ctx.schedule.crop_epoch_at(ctx.global_step)
    use_soft = config.soft_labels and (
        config.kd_stop_epoch is None or crop_epoch < config.kd_stop_epoch
    )
    soft = _soft_targets(ctx, batch, images, keep) if use_soft else None
    x = _normalise(images, ctx.mean, ctx.std, config.channels_last)
    params: MixParams = sample_mix(ctx.mix_config, x.shape[0], x.shape[-2], x.shape[-1], mix_gen)
    needs_hard = not use_soft or config.alpha > 0
    hard: Tensor | None = None
    if needs_hard:
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
        loss = _hard_loss(logits, hard, config.label_smoothing)
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
    return value, len(targets), use_soft


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
    loss_sum, crops, images = _all_reduce_sum([loss_sum, crops, images], ctx.dist)
    return EpochStats(
        loss=loss_sum / max(crops, 1.0),
        lr=float(ctx.optimizer.param_groups[0]["lr"]),
        images=round(images),
        crops=int(crops),
        seconds=seconds,
        soft_steps=int(soft_steps),
        hard_steps=int(hard_steps),
    )


# --------------------------------------------------------------------------- the run


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


def _seed_everything(seed: int, rank: int) -> None:
    import random

    random.seed(seed + rank)
    np.random.seed((seed + rank) % 2**32)
    torch.manual_seed(seed + rank)


def _prepare_out(config: TrainConfig, dist_info: Distributed) -> tuple[Path | None, Path | None]:
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


_SCHEDULE_KEYS = ("crops_per_visit", "batch_size", "seed", "labels")


def _check_resume_args(checkpoint: Mapping[str, Any], config: TrainConfig) -> None:
    saved = checkpoint.get("args") or {}
    for key in _SCHEDULE_KEYS:
        if key in saved and saved[key] != getattr(config, key):
            raise TrainError(
                f"checkpoint {checkpoint.get('path')!r} was trained with {key}={saved[key]!r}, "
                f"not {getattr(config, key)!r}; resuming with another {key} would change the "
                "crop schedule: pass the original value"
            )


def _trim_metrics(path: Path, epoch: int) -> list[dict[str, Any]]:
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


def _append_metrics(path: Path, record: Mapping[str, Any]) -> None:
    with open(path, "a") as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _load_online_teacher(config: TrainConfig, device: torch.device) -> Any:
    if not config.online_teacher:
        return None
    from fkd.teachers import load_teachers

    weights: list[str | None] = list(config.online_teacher_weights) or [None] * len(
        config.online_teacher
    )
    return load_teachers(config.online_teacher, weights, device)


def _epoch_line(record: Mapping[str, Any], visits: int, epochs: int) -> str:
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
        return _train(config, defaults, dist_info, log, progress, started)
    finally:
        if dist_info.enabled:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def _train(
    config: TrainConfig,
    defaults: Any,
    dist_info: Distributed,
    log: Callable[[str], None] | None,
    progress: bool | None,
    started: float,
) -> TrainResult:
    device = dist_info.device
    say = log if (log is not None and dist_info.is_main) else (lambda _line: None)
    out, resume_path = _prepare_out(config, dist_info)
    checkpoint = load_checkpoint(resume_path) if resume_path is not None else None
    if checkpoint is not None:
        check_arch(checkpoint, config.model)
        _check_resume_args(checkpoint, config)
    input_size = config.input_size or defaults.input_size
    mean, std = tuple(defaults.mean), tuple(defaults.std)
    teacher = _load_online_teacher(config, device)
    needs_hard = not config.soft_labels or config.alpha > 0 or config.kd_stop_epoch is not None
    val_folder = default_val_folder(config)
    data = load_data(
        config,
        input_size,
        dist_info,
        teacher.num_classes if teacher else None,
        teacher.info.class_names if teacher else None,
        targets_used=needs_hard or val_folder is not None,
    )
    if checkpoint is not None:
        check_arch(checkpoint, config.model, data.num_classes)
    if needs_hard:
        _require(
            bool((data.targets >= 0).all()) and int(data.targets.max()) < data.num_classes,
            f"{config.data}: hard labels (no teacher, --alpha or --kd-stop-epoch) need a class "
            f"in [0, {data.num_classes}) for every image (an ImageFolder tree or a labelled list)",
        )
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    val_loader = (
        load_eval_data(
            val_folder,
            input_size,
            config.eval_crop_pct,
            defaults.interpolation,
            config.eval_batch_size,
            config.workers,
            data.num_classes,
            data.class_names,
            dist_info,
        )
        if val_folder is not None
        else None
    )

    _seed_everything(config.seed, 0)
    model = build_model(config.model, data.num_classes).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if checkpoint is not None:
        load_model_state(model, checkpoint)
    train_model: nn.Module = model
    if dist_info.enabled:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    schedule = CropSchedule(config.epochs, config.crops_per_visit, len(data.loader))
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config, schedule)
    amp_dtype = choose_amp_dtype(config.amp, device)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    target_temperature = config.temperature or (data.store_temperature if teacher is None else 1.0)
    ctx = StepContext(
        model=train_model,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        config=config,
        schedule=schedule,
        dist=dist_info,
        mean=mean,
        std=std,
        num_classes=data.num_classes,
        codec=data.codec,
        store_temperature=data.store_temperature,
        target_temperature=target_temperature,
        amp_dtype=amp_dtype,
        teacher=teacher,
        loss_fn=config.loss_config(target_temperature).build(),
        mix_config=config.mix_config(),
    )

    start_visit, best_top1 = 0, None
    metrics: list[dict[str, Any]] = []
    if checkpoint is not None:
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        if scaler is not None and "scaler" in checkpoint:
            scaler.load_state_dict(checkpoint["scaler"])
        if "rng" in checkpoint:
            set_rng_state(checkpoint["rng"])
        start_visit = int(checkpoint["epoch"])
        ctx.global_step = int(checkpoint["global_step"])
        best_top1 = checkpoint.get("best_top1")
        if out is not None and dist_info.is_main:
            metrics = _trim_metrics(out / METRICS_FILE, start_visit)
        say(f"resuming {checkpoint['path']} at epoch {start_visit + 1}/{schedule.visits}")
    else:
        _seed_everything(config.seed, dist_info.rank)

    crops_from = f" on the crops of {config.labels}" if config.labels else ""
    what = (
        "online teacher " + "+".join(config.online_teacher) + crops_from
        if teacher is not None
        else f"labels {config.labels}"
        if config.labels
        else "hard labels"
    )
    say(
        f"training {config.model} on {data.num_images} images x {config.crops_per_visit} "
        f"crops/visit ({what}), {schedule.visits} epochs = {config.epochs} crop-epochs, "
        f"{schedule.steps_per_visit} steps/epoch, {dist_info.world_size} process(es), {device}"
    )
    say(f"crops: {data.crop_path['crops_from']}, resampled {data.crop_path['resampling']}")
    bar = (
        Progress(data.num_images * (schedule.visits - start_visit), "train: ", enabled=progress)
        if dist_info.is_main
        else None
    )
    total_crops, total_seconds = 0, 0.0
    evaluation: EvalResult | None = None
    checkpoint_path: str | None = None
    if start_visit >= schedule.visits:
        say(f"{checkpoint and checkpoint['path']} already finished all {schedule.visits} epochs")
    for visit in range(start_visit, schedule.visits):
        stats = train_one_epoch(ctx, data, visit, bar)
        total_crops += stats.crops
        total_seconds += stats.seconds
        _sync_buffers(model, dist_info)
        eval_start = time.perf_counter()
        if val_loader is not None:
            evaluation = evaluate(
                model,
                val_loader,
                device,
                mean,
                std,
                channels_last=config.channels_last,
                amp_dtype=amp_dtype,
                dist_info=dist_info,
            )
            best_top1 = evaluation.top1 if best_top1 is None else max(best_top1, evaluation.top1)
        record: dict[str, Any] = {
            "epoch": visit + 1,
            "crop_epoch": schedule.crop_epoch_after_visit(visit),
            "step": ctx.global_step,
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
            "eval_seconds": time.perf_counter() - eval_start,
            "soft_steps": stats.soft_steps,
            "hard_steps": stats.hard_steps,
            "world_size": dist_info.world_size,
            **data.crop_path,
        }
        metrics.append(record)
        if bar is not None and bar.enabled:
            bar.close()  # end the progress line; the next epoch starts a new one
        say(_epoch_line(record, schedule.visits, config.epochs))
        if out is not None and dist_info.is_main:
            _append_metrics(out / METRICS_FILE, record)
            checkpoint_path = os.fspath(
                save_checkpoint(
                    out / CHECKPOINT_FILE,
                    model=model,
                    arch=config.model,
                    num_classes=data.num_classes,
                    input_size=input_size,
                    mean=mean,
                    std=std,
                    interpolation=defaults.interpolation,
                    class_names=data.output_names,
                    optimizer=optimizer,
                    scheduler=scheduler,
                    scaler=scaler,
                    epoch=visit + 1,
                    crop_epoch=record["crop_epoch"],
                    global_step=ctx.global_step,
                    args=config.to_dict(),
                    best_top1=best_top1,
                    metrics=record,
                )
            )
        _barrier(dist_info)
    last = metrics[-1] if metrics else {}
    return TrainResult(
        metrics=metrics,
        best_top1=best_top1,
        final_top1=last.get("top1") if evaluation is None else evaluation.top1,
        final_top5=last.get("top5") if evaluation is None else evaluation.top5,
        epochs=schedule.visits,
        crop_epochs=float(config.epochs),
        crops_per_second=total_crops / max(total_seconds, 1e-9),
        seconds=time.perf_counter() - started,
        checkpoint=checkpoint_path,
        resumed_from=start_visit,
        rank=dist_info.rank,
    )


# --------------------------------------------------------------------------- fkd eval


def evaluate_checkpoint(
    data: str | Path,
    checkpoint_path: str | Path,
    model_name: str | None = None,
    device_name: str = "auto",
    batch_size: int = 256,
    workers: int = 2,
    crop_pct: float = 0.875,
) -> EvalResult:
    """Top-1/top-5 of a ``fkd train`` checkpoint on ``DATA/val`` (or DATA itself)."""

    checkpoint = load_checkpoint(checkpoint_path)
    arch = model_name or checkpoint["arch"]
    check_arch(checkpoint, arch)
    defaults = model_defaults(arch)
    device = resolve_device(device_name)
    num_classes = int(checkpoint["num_classes"])
    model = build_model(arch, num_classes)
    load_model_state(model, checkpoint)
    model.to(device)
    folder = Path(data)
    if (folder / "val").is_dir():
        folder = folder / "val"
    input_size = int(checkpoint.get("input_size", defaults.input_size))
    mean = tuple(checkpoint.get("mean", defaults.mean))
    std = tuple(checkpoint.get("std", defaults.std))
    interpolation = str(checkpoint.get("interpolation", defaults.interpolation))
    loader = load_eval_data(
        folder,
        input_size,
        crop_pct,
        interpolation,
        batch_size,
        workers,
        num_classes,
        checkpoint.get("class_names"),
    )
    return evaluate(model, loader, device, mean, std)


def iter_metrics(path: str | Path) -> Iterator[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file."""
    for line in Path(path).read_text().splitlines():
        if line.strip():
            yield json.loads(line)

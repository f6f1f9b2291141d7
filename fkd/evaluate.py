"""Top-1/top-5 accuracy of a teacher on a labelled image folder (``fkd teacher-eval``).

Evaluation preprocessing is the usual one: resize the short side to
``input_size / crop_pct``, centre-crop ``input_size``, normalise with the
teacher's mean and std.  When the teacher names its classes, each class folder
is matched to one of them by name or ImageNet wnid (``fkd.classes``), so a
subset of its classes can be evaluated; otherwise the sorted class folders are
its class indices 0, 1, ...
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms.v2 import functional as F

from fkd import crops as crop_ops
from fkd.classes import is_positional, match_classes, remap_targets
from fkd.exceptions import UserInputError
from fkd.images import DEFAULT_MAX_PIXELS, ImageSource, decode_or_reason, scan_source
from fkd.teachers import LoadedTeacher, load_teachers
from fkd.worker_lifetime import DataLoaderWorkerLifetime


class EvaluationError(UserInputError):
    """The folder cannot be evaluated (no labels, classes out of the teacher's range...)."""


@dataclass(frozen=True)
class Accuracy:
    top1: float
    top5: float
    images: int
    failed: int

    def line(self) -> str:
        return f"top-1 {self.top1:.2f}%  top-5 {self.top5:.2f}%  on {self.images} image(s)" + (
            f" ({self.failed} failed to decode, skipped)" if self.failed else ""
        )


class EvalDataset(Dataset[tuple[torch.Tensor, int, bool]]):
    """Decoded, resized and centre-cropped images with their targets.

    ``targets`` (one per image) replaces the source's, e.g. folder classes mapped to a
    model's by :func:`model_targets`.
    """

    def __init__(
        self,
        source: ImageSource,
        size: int,
        crop_pct: float,
        interpolation: str,
        targets: NDArray[np.int64] | None = None,
    ) -> None:
        self.source = source
        self.targets = source.manifest.targets if targets is None else targets
        self.size = size
        self.resize = math.floor(size / crop_pct)
        self.mode = crop_ops.interpolation_mode(interpolation)

    def __len__(self) -> int:
        return len(self.source.manifest)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, bool]:
        image, _ = decode_or_reason(self.source.path_of(index), DEFAULT_MAX_PIXELS)
        target = int(self.targets[index])
        if image is None:
            return torch.zeros(3, self.size, self.size), target, False
        tensor = torch.from_numpy(image).permute(2, 0, 1)
        tensor = F.resize(tensor, [self.resize], interpolation=self.mode, antialias=True)
        tensor = F.center_crop(tensor, [self.size, self.size])
        return tensor.float(), target, True


def evaluate_teacher(
    teacher: LoadedTeacher,
    data: Path,
    batch_size: int = 128,
    workers: int = 2,
    crop_pct: float = 0.875,
) -> Accuracy:
    source = scan_source(data)
    if (source.manifest.targets < 0).any():
        raise EvaluationError(
            f"{data}: some images have no class label; teacher-eval needs "
            "an ImageFolder tree or a file list with labels"
        )
    info = teacher.info
    targets = model_targets(
        source,
        info.class_names,
        teacher.num_classes,
        f"{data}",
        f"teacher {info.spec!r}",
        "teacher",
    )
    dataset = EvalDataset(source, info.input_size, crop_pct, info.interpolation, targets)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=workers,
        worker_init_fn=DataLoaderWorkerLifetime(),
    )
    return _accuracy(teacher, loader, len(dataset))


def model_targets(
    source: ImageSource,
    model_names: Sequence[str] | None,
    num_classes: int,
    where: str,
    model_what: str,
    kind: str = "model",
) -> NDArray[np.int64]:
    """The images' targets as the model's class indices.

    ``model_names`` names the model's outputs 0, 1, ... (all, or the first ones).
    With names on both sides that differ, each class of ``source`` is matched to a
    model class by name or ImageNet wnid (refused when one is not found); else the
    source's class indices are the model's. Indices beyond ``num_classes`` are refused.
    """
    from fkd.models.imagenet_classes import imagenet_wnids_for

    targets = np.asarray(source.manifest.targets, dtype=np.int64)
    folder_names = source.class_names
    if folder_names is not None and model_names and not is_positional(folder_names, model_names):
        mapping = match_classes(
            folder_names,
            model_names,
            imagenet_wnids_for(model_names),
            folder_what=f"{where}: its classes",
            model_what=model_what,
        )
        targets = remap_targets(targets, mapping)
    if targets.size and int(targets.max()) >= num_classes:
        raise EvaluationError(
            f"{where}: class index {int(targets.max())} but the {kind} has {num_classes} classes"
        )
    return targets


def _accuracy(teacher: LoadedTeacher, loader: Any, total: int) -> Accuracy:
    device = next(iter(teacher.module.parameters())).device
    correct1 = correct5 = seen = failed = 0
    info = teacher.info
    for images, targets, ok in loader:
        batch = crop_ops.normalise(images.to(device), info.mean, info.std)
        with torch.inference_mode():
            probs = teacher.probabilities(batch.contiguous(memory_format=torch.channels_last), 1.0)
        top = probs.topk(min(5, probs.shape[-1]), dim=-1).indices.cpu()
        hit = top == targets[:, None]
        valid = ok.numpy().astype(bool)
        correct1 += int(hit[:, 0].numpy()[valid].sum())
        correct5 += int(hit.any(-1).numpy()[valid].sum())
        seen += int(valid.sum())
        failed += int((~valid).sum())
    seen = max(seen, 1)
    return Accuracy(100.0 * correct1 / seen, 100.0 * correct5 / seen, seen, failed)


def load_and_evaluate(
    data: Path,
    specs: tuple[str, ...],
    weights: tuple[str, ...],
    device: str,
    batch_size: int,
    workers: int,
    crop_pct: float,
) -> Accuracy:
    from fkd.devices import resolve_device

    teacher = load_teachers(specs, weights, resolve_device(device))
    return evaluate_teacher(teacher, data, batch_size, workers, crop_pct)


__all__ = ["Accuracy", "EvaluationError", "evaluate_teacher", "load_and_evaluate", "model_targets"]

"""Top-1/top-5 accuracy of a teacher on a labelled image folder (``fkd teacher-eval``).

Evaluation preprocessing is the usual one: resize the short side to
``input_size / crop_pct``, centre-crop ``input_size``, normalise with the
teacher's mean and std.  Targets are the indices of the class folders in
sorted order, which must be the teacher's class order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms.v2 import functional as F

from fkd import crops as crop_ops
from fkd.images import DEFAULT_MAX_PIXELS, ImageSource, decode_or_reason, scan_source
from fkd.teachers import LoadedTeacher, load_teachers
from fkd.worker_lifetime import DataLoaderWorkerLifetime


class EvaluationError(ValueError):
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
    """Decoded, resized and centre-cropped images with their targets."""

    def __init__(self, source: ImageSource, size: int, crop_pct: float, interpolation: str) -> None:
        self.source = source
        self.size = size
        self.resize = math.floor(size / crop_pct)
        self.mode = crop_ops.interpolation_mode(interpolation)

    def __len__(self) -> int:
        return len(self.source.manifest)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, bool]:
        image, _ = decode_or_reason(self.source.path_of(index), DEFAULT_MAX_PIXELS)
        target = int(self.source.manifest.targets[index])
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
    targets = source.manifest.targets
    if (targets < 0).any():
        raise EvaluationError(
            f"{data}: some images have no class label; teacher-eval needs "
            "an ImageFolder tree or a file list with labels"
        )
    if int(targets.max()) >= teacher.num_classes:
        raise EvaluationError(
            f"{data}: class index {int(targets.max())} but the teacher has "
            f"{teacher.num_classes} classes"
        )
    info = teacher.info
    dataset = EvalDataset(source, info.input_size, crop_pct, info.interpolation)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=workers,
        worker_init_fn=DataLoaderWorkerLifetime(),
    )
    return _accuracy(teacher, loader, len(dataset))


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
    from fkd.generate import resolve_device

    teacher = load_teachers(specs, weights, resolve_device(device))
    return evaluate_teacher(teacher, data, batch_size, workers, crop_pct)


__all__ = ["Accuracy", "EvaluationError", "evaluate_teacher", "load_and_evaluate"]

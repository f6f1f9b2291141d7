"""The evaluation images: a labelled folder, resized and centre-cropped, its classes the model's.

Preprocessing is the usual one: resize the short side to ``input_size / crop_pct``,
centre-crop ``input_size`` (normalising is the evaluation loop's job, on the device).
When the model names its classes, each class folder is matched to one of them by name
or ImageNet wnid (``fkd.classes``), so a subset of its classes can be evaluated;
otherwise the sorted class folders are its class indices 0, 1, ...
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision.transforms.v2 import functional as F

from fkd import crops as crop_ops
from fkd.classes import is_positional, match_classes, remap_targets
from fkd.exceptions import UserInputError
from fkd.images import DEFAULT_MAX_PIXELS, ImageSource, decode_or_reason, scan_source
from fkd.worker_lifetime import DataLoaderWorkerLifetime


class EvaluationError(UserInputError):
    """The folder cannot be evaluated (no labels, classes out of the model's range...)."""


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


def as_model_classes(
    targets: NDArray[np.integer],
    folder_names: Sequence[str] | None,
    model_names: Sequence[str] | None,
    where: str,
    model_what: str,
) -> NDArray[np.int64]:
    """Folder class indices as the model's class indices.

    ``model_names`` names the model's outputs 0, 1, ... (all, or the first ones).
    Unchanged when either side is unnamed or the folder's classes are the model's
    first ones; otherwise each folder class is matched to a model class by name or
    ImageNet wnid, and one found nowhere is refused.
    """
    from fkd.models.imagenet_classes import imagenet_wnids_for

    as_int64: NDArray[np.int64] = np.asarray(targets, dtype=np.int64)
    if folder_names is None or not model_names or is_positional(folder_names, model_names):
        return as_int64
    mapping = match_classes(
        folder_names,
        model_names,
        imagenet_wnids_for(model_names),
        folder_what=f"{where}: its classes",
        model_what=model_what,
    )
    return remap_targets(as_int64, mapping)


def model_targets(
    source: ImageSource,
    model_names: Sequence[str] | None,
    num_classes: int,
    where: str,
    model_what: str,
    kind: str = "model",
) -> NDArray[np.int64]:
    """The images' targets as the model's class indices (see :func:`as_model_classes`).

    Indices beyond ``num_classes`` are refused.
    """
    targets = as_model_classes(
        source.manifest.targets, source.class_names, model_names, where, model_what
    )
    if targets.size and int(targets.max()) >= num_classes:
        raise EvaluationError(
            f"{where}: class index {int(targets.max())} but the {kind} has {num_classes} classes"
        )
    return targets


def load_eval_data(
    folder: str | Path,
    input_size: int,
    crop_pct: float,
    interpolation: str,
    batch_size: int,
    workers: int,
    num_classes: int,
    class_names: Sequence[str] | None = None,
    *,
    model_what: str = "the model",
    kind: str = "model",
    rank: int = 0,
    world_size: int = 1,
    persistent_workers: bool = False,
) -> DataLoader[Any]:
    """Resized, centre-cropped images of a labelled folder, with the model's class indices.

    Under DDP (``world_size`` > 1) rank ``rank`` gets every ``world_size``-th image.
    ``persistent_workers``: the decode workers stay up between passes (an evaluation
    every epoch starts them once).
    """
    source = scan_source(folder)
    if (source.manifest.targets < 0).any():
        raise EvaluationError(
            f"{folder}: some images have no class label; evaluation needs an ImageFolder tree "
            "or a file list with labels"
        )
    targets = model_targets(source, class_names, num_classes, f"{folder}", model_what, kind)
    dataset: Dataset[Any] = EvalDataset(source, input_size, crop_pct, interpolation, targets)
    if world_size > 1:
        dataset = Subset(dataset, range(rank, len(source), world_size))
    extra: dict[str, Any] = {"persistent_workers": True} if persistent_workers and workers else {}
    return DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=workers,
        worker_init_fn=DataLoaderWorkerLifetime(),
        **extra,
    )

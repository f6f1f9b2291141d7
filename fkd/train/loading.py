"""``load_data``: the training loader of a run, and the class of every training image.

Three students, one crop path:

- with a store (``labels``), the FKD loader ``fkd.data.make_loader``: the store's crops
  and their stored labels (left out with an online teacher, which labels the crops);
- without, ``fkd.crops.datasets.SampledCropDataset``: crops drawn by the store's sampler
  (``TrainConfig.sampled_crops``) through the same ``crop_schedule``, for hard labels
  or an online teacher.

On an accelerator, crops travel as uint8 (``uint8_crops``: the same whole grey levels,
a quarter of the bytes through shared memory, pinning and the copy to the device) and
``fkd.train.step`` turns them into float32 on the device, exactly; on a CPU device the
workers make the float32 (the conversion would only move into the training process:
``docs/benchmarks.md``, "Student loader").

With a teacher, the student's outputs are the teacher's classes: each class folder is
matched to one of them by name or ImageNet wnid when the targets are used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch.utils.data import DataLoader

from fkd.crops.datasets import SampledCropDataset
from fkd.data import CropScheduleSampler, crop_loader, make_loader
from fkd.evaluation import as_model_classes
from fkd.images import ImageSource, scan_source
from fkd.storage_formats import CodecSpec
from fkd.train.config import TrainConfig, TrainError
from fkd.train.ddp import Distributed


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
    def crops_per_image(self) -> int:
        """M: the crops per image the run draws its visits from (stored, or sampled)."""
        dataset = self.dataset
        if isinstance(dataset, SampledCropDataset):
            return dataset.crops.crops_per_image
        return int(dataset.crops_per_image)

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
    world = dist_info.world_size
    batch_images = config.batch_size // config.crops_per_visit // world
    if batch_images < 1:
        raise TrainError(
            f"batch_size {config.batch_size} crops is too small for {config.crops_per_visit} "
            f"crops per visit on {world} process(es); use at least "
            f"{config.crops_per_visit * world}"
        )
    source = scan_source(config.data)
    codec: CodecSpec | None = None
    dataset: Any
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
            uint8_crops=uint8_crops(dist_info),
            source=source,  # the folder scanned once (at 1.28M images a scan is a minute)
        )
        codec = dataset.codec
        num_classes = teacher_classes or codec.num_classes
        model_names = teacher_names if config.online_teacher else dataset.spec.teacher.class_names
        model_what = f"the store's teacher {dataset.spec.teacher.spec!r}"
    else:
        loader, dataset, sampler = _sampled_loader(
            config, source, input_size, dist_info, batch_images
        )
        if teacher_classes is None:
            num_classes = _hard_label_classes(config, dataset.targets, source.class_names)
        else:
            num_classes = teacher_classes
        model_names, model_what = teacher_names, ""
    if config.online_teacher:
        model_what = f"the online teacher {'+'.join(config.online_teacher)!r}"
    output_names = _match_teacher_classes(
        dataset, config, source.class_names, model_names, model_what, targets_used
    )
    temperature = 1.0 if codec is None else codec.temperature
    return TrainData(
        loader, dataset, sampler, len(dataset), num_classes, output_names, codec, temperature
    )


def _sampled_loader(
    config: TrainConfig,
    source: ImageSource,
    input_size: int,
    dist_info: Distributed,
    batch_images: int,
) -> tuple[DataLoader[Any], SampledCropDataset, CropScheduleSampler]:
    """Crops sampled on the fly from the folder, on the FKD loader's crop schedule."""
    folder = SampledCropDataset(
        source,
        config.sampled_crops(),
        config.crops_per_visit,
        input_size,
        config.seed,
        uint8_crops=uint8_crops(dist_info),
    )
    loader, sampler = crop_loader(
        folder,
        batch_images,
        config.workers,
        dist_info.rank,
        dist_info.world_size,
        config.seed,
        pin_memory=dist_info.device.type == "cuda",
    )
    return loader, folder, sampler


def uint8_crops(dist_info: Distributed) -> bool:
    """Whether the loader hands over uint8 crops: off the CPU, where the float conversion
    is the device's (exact either way; training is bit-identical)."""
    return dist_info.device.type != "cpu"


def _hard_label_classes(
    config: TrainConfig, targets: np.ndarray, class_names: Sequence[str] | None
) -> int:
    """The class count of a folder trained on with hard labels (every image needs a class)."""
    if not (len(targets) > 0 and bool((targets >= 0).all())):
        raise TrainError(
            f"{config.data}: training with hard labels needs a class for every image "
            "(an ImageFolder tree or a labelled file list)"
        )
    num_classes = int(targets.max()) + 1
    return num_classes if class_names is None else max(num_classes, len(class_names))


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
    if teacher_names is None:
        return None if folder_names is None else tuple(folder_names)
    if targets_used:
        dataset.targets = as_model_classes(
            dataset.targets, folder_names, teacher_names, config.data, teacher_what
        )
    return tuple(teacher_names)

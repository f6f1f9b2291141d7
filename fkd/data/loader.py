"""The assembly: ``make_loader``, ``crop_loader`` (a DataLoader of any crop dataset), ``set_epoch``.

The loader yields batches of ``batch_images x crops_per_visit`` crops as stored: pixels
in 0..255 (not normalised; float32, or uint8 with ``uint8_crops``) and labels in the
store's compact form.  Dense labels are rebuilt on the training device by
``fkd.label_codecs_torch.decode_torch`` (the training step calls it: ``fkd.train.targets``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from fkd.data.collate import collate_crops
from fkd.data.dataset import CropLabelDataset
from fkd.data.sampler import CropScheduleSampler
from fkd.images import ImageSource
from fkd.storage_formats import LabelStore
from fkd.worker_lifetime import DataLoaderWorkerLifetime

LoaderParts = tuple[DataLoader[Any], CropLabelDataset, CropScheduleSampler]


def make_loader(
    root: str | Path,
    store: str | Path | LabelStore,
    batch_images: int,
    crops_per_visit: int = 4,
    input_size: int = 224,
    seed: int = 0,
    workers: int = 2,
    rank: int = 0,
    world_size: int = 1,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    skip_failed: bool = False,
    *,
    shuffle: bool = True,
    drop_last: bool = False,
    device_decode: bool = False,
    check_sizes: bool = True,
    with_labels: bool = True,
    resampling: str | None = None,
    pin_memory: bool = False,
    prefetch_factor: int | None = None,
    store_cache: str | Path | None = None,
    source: ImageSource | None = None,
    uint8_crops: bool = False,
) -> LoaderParts:
    """A DataLoader of ``batch_images * crops_per_visit`` crops per batch, its dataset and sampler.

    Call ``set_epoch(parts, epoch)`` before each epoch: it sets the sampler's
    order and the dataset's visit.  Workers are persistent (when ``workers > 0``);
    the visit reaches them inside each index (``ScheduledIndex``), so nothing
    has to be shared with them.  ``drop_last`` applies both to the distributed
    split and to the last, incomplete batch.  ``uint8_crops=True`` yields
    ``batch["images"]`` as uint8 (``CropLabelDataset``): a quarter of the bytes
    through shared memory, collate and pinning; ``.to(device).float()`` gives
    exactly the float32 crops.
    """
    dataset = CropLabelDataset(
        root,
        store,
        crops_per_visit=crops_per_visit,
        input_size=input_size,
        seed=seed,
        transform=transform,
        skip_failed=skip_failed,
        device_decode=device_decode,
        check_sizes=check_sizes,
        with_labels=with_labels,
        resampling=resampling,
        store_cache=store_cache,
        source=source,
        uint8_crops=uint8_crops,
    )
    loader, sampler = crop_loader(
        dataset,
        batch_images,
        workers,
        rank,
        world_size,
        seed,
        shuffle=shuffle,
        drop_last=drop_last,
        pin_memory=pin_memory,
        prefetch_factor=prefetch_factor,
    )
    return loader, dataset, sampler


def crop_loader(
    dataset: Dataset[Any],
    batch_images: int,
    workers: int = 2,
    rank: int = 0,
    world_size: int = 1,
    seed: int = 0,
    *,
    shuffle: bool = True,
    drop_last: bool = False,
    pin_memory: bool = False,
    prefetch_factor: int | None = None,
) -> tuple[DataLoader[Any], CropScheduleSampler]:
    """A DataLoader over a crop dataset (``CropLabelDataset``, or ``SampledCropDataset`` for
    the students without a store) on the crop schedule, and its sampler.

    Batches hold ``batch_images`` images' crops, collated flat by ``collate_crops``.
    """
    sampler = CropScheduleSampler(
        dataset,
        num_replicas=world_size,
        rank=rank,
        shuffle=shuffle,
        seed=seed,
        drop_last=drop_last,
    )
    extra: dict[str, Any] = {}
    if workers > 0:
        extra["persistent_workers"] = True
        if prefetch_factor is not None:
            extra["prefetch_factor"] = prefetch_factor
    loader: DataLoader[Any] = DataLoader(
        dataset,
        batch_size=batch_images,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_crops,
        pin_memory=pin_memory,
        drop_last=drop_last,
        worker_init_fn=DataLoaderWorkerLifetime(),
        **extra,
    )
    return loader, sampler


def set_epoch(loader_parts: Iterable[Any], epoch: int) -> None:
    """Set ``epoch`` on every part that has ``set_epoch`` (the dataset and the sampler)."""
    for part in loader_parts:
        if hasattr(part, "set_epoch"):
            part.set_epoch(epoch)

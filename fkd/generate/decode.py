"""Decoding ahead of the teacher: ``DecodeDataset`` decodes the images of the blocks to do,
in order, in DataLoader worker processes (``decoded_images``), and with a CPU crop path
also cuts their M crops there."""

from __future__ import annotations

import time
from collections.abc import Generator, Sequence
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch.utils.data import DataLoader, Dataset

from fkd.crops.datasets import CropDataset
from fkd.generate.cutter import CropCutter
from fkd.images import ImageSource, decode_or_reason
from fkd.worker_lifetime import DataLoaderWorkerLifetime

Decoded = tuple[int, NDArray[np.uint8] | None, str, float, "torch.Tensor | None"]


class DecodeDataset(CropDataset, Dataset[Decoded]):
    """Decodes the images of the blocks to do, in order, in DataLoader workers.

    With a ``cutter`` (a crop path that runs on the CPU) the worker also cuts the
    image's M crops, so the cutting overlaps the teacher instead of running between
    its forward passes.  One of the crop datasets (``fkd.crops.datasets``): the cut is
    ``fkd.crops``' cutter with the store's recorded resampling.
    """

    def __init__(
        self,
        source: ImageSource,
        indices: Sequence[int],
        max_pixels: int,
        cutter: CropCutter | None = None,
    ) -> None:
        super().__init__(cutter.size, cutter.resampling) if cutter else super().__init__(1)
        self.source = source
        self.indices = list(indices)
        self.max_pixels = max_pixels
        self.cutter = cutter

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> Decoded:
        index = self.indices[position]
        start = time.perf_counter()
        image, reason = decode_or_reason(self.source.path_of(index), self.max_pixels)
        crops = None
        if image is not None and self.cutter is not None:
            crops = self.cutter.cut(index, image)
        return index, image, reason, time.perf_counter() - start, crops


def decoded_images(
    source: ImageSource,
    indices: Sequence[int],
    workers: int,
    max_pixels: int,
    cutter: CropCutter | None = None,
) -> Generator[Decoded, None, None]:
    dataset = DecodeDataset(source, indices, max_pixels, cutter if workers > 0 else None)
    if workers == 0:
        yield from (dataset[i] for i in range(len(dataset)))
        return
    loader = DataLoader(
        dataset,
        batch_size=None,
        shuffle=False,
        num_workers=workers,
        prefetch_factor=2 if cutter is not None else 4,
        collate_fn=_identity,
        worker_init_fn=DataLoaderWorkerLifetime(),
    )
    yield from loader


def _identity(item: Any) -> Any:
    return item


__all__ = ["DecodeDataset", "Decoded", "decoded_images"]

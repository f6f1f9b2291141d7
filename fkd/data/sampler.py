"""The sampler: which images each rank visits in an epoch, and in what order.

``CropScheduleSampler`` has ``DistributedSampler`` semantics (disjoint images per rank,
order keyed by ``(seed, epoch)``) and yields ``ScheduledIndex`` values: ints that also
carry the epoch (the visit) to the dataset, so the visit reaches persistent worker
processes with no shared state.  Which crops a visit uses is
``fkd.crops.schedule.crop_schedule``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Sampler

from fkd.crops.schedule import ScheduledIndex


class CropScheduleSampler(Sampler[int]):
    """``DistributedSampler`` over a dataset's images, yielding ``ScheduledIndex`` values.

    Same semantics and, with ``shuffle``, the same order as
    ``torch.utils.data.DistributedSampler``: a ``torch.randperm`` seeded with
    ``seed + epoch``; without ``drop_last`` the list is padded by repeating its
    head so every rank gets ``ceil(n / num_replicas)`` images, with it the tail
    is dropped; rank r takes every ``num_replicas``-th image from r.  Each index
    carries the epoch as its visit.
    """

    def __init__(
        self,
        dataset: Any,
        num_replicas: int | None = None,
        rank: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        if num_replicas is None or rank is None:
            default_replicas, default_rank = _distributed_defaults()
            num_replicas = default_replicas if num_replicas is None else num_replicas
            rank = default_rank if rank is None else rank
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"rank must lie in [0, num_replicas={num_replicas}), got {rank}")
        self.size = len(dataset)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.drop_last = drop_last
        self.epoch = 0
        if drop_last and self.size % self.num_replicas:
            self.num_samples = self.size // self.num_replicas
        else:
            self.num_samples = math.ceil(self.size / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas

    def set_epoch(self, epoch: int) -> None:
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    def order(self) -> list[int]:
        """This rank's dataset indices for the current epoch, as plain ints."""
        if self.shuffle:
            generator = torch.Generator()
            generator.manual_seed(self.seed + self.epoch)
            indices: list[int] = torch.randperm(self.size, generator=generator).tolist()
        else:
            indices = list(range(self.size))
        if not self.drop_last:
            padding = self.total_size - len(indices)
            if padding <= len(indices):
                indices += indices[:padding]
            else:
                indices += (indices * math.ceil(padding / len(indices)))[:padding]
        else:
            indices = indices[: self.total_size]
        return indices[self.rank : self.total_size : self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        """The epoch's indices, made one at a time as the loader asks (not a list of N
        objects at every epoch start: seconds and a gigabyte at ImageNet-21K)."""
        epoch = self.epoch
        return (ScheduledIndex(i, epoch) for i in self.order())

    def __len__(self) -> int:
        return self.num_samples


def _distributed_defaults() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0

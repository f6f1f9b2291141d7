"""Where torchrun is set up: the process group, DDP wrapping, and the collectives training uses.

Under ``torchrun`` (``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` set) every process trains on a
disjoint ``1/world`` of the images (``fkd.data.CropScheduleSampler``); ``batch_size`` is
the global number of crops per step, split over ranks.  Rank 0 alone writes metrics and
checkpoints; epoch statistics and evaluation counts are all-reduced.  Without torchrun
(or with one process) everything here is a no-op on a one-process :class:`Distributed`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from fkd.checkpoints import unwrap_model
from fkd.devices import resolve_device


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


def wrap_model(model: nn.Module, dist_info: Distributed) -> nn.Module:
    """``model`` in ``DistributedDataParallel`` when there are several processes."""
    if not dist_info.enabled:
        return model
    device = dist_info.device
    return nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None
    )


def shutdown(dist_info: Distributed) -> None:
    """Leave the process group (at the end of a run, also after an error)."""
    if dist_info.enabled:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def all_reduce_sum(values: Sequence[float], dist_info: Distributed) -> list[float]:
    """Sum ``values`` over all ranks (float64)."""
    if not dist_info.enabled:
        return list(values)
    import torch.distributed as dist

    backend_device = dist_info.device if dist_info.device.type == "cuda" else torch.device("cpu")
    tensor = torch.tensor(list(values), dtype=torch.float64, device=backend_device)
    dist.all_reduce(tensor)
    return [float(v) for v in tensor.cpu().tolist()]


def sync_buffers(model: nn.Module, dist_info: Distributed) -> None:
    """Give every rank rank 0's buffers (BatchNorm statistics) before evaluating or saving."""
    if not dist_info.enabled:
        return
    import torch.distributed as dist

    for buffer in unwrap_model(model).buffers():
        dist.broadcast(buffer.data, src=0)


def barrier(dist_info: Distributed) -> None:
    if dist_info.enabled:
        import torch.distributed as dist

        dist.barrier()

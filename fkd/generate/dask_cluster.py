"""Where the dask blocks run: an existing scheduler or a local cluster started for the run
(``ClusterOptions``, ``connect``, ``local_cluster``), and what its workers offer (a GPU
each, the device they resolve ``--device`` to)."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from fkd.devices import resolve_device
from fkd.generate.errors import GenerateError

if TYPE_CHECKING:
    from distributed import Client

GPU_RESOURCE = "GPU"


@dataclass(frozen=True)
class ClusterOptions:
    """Where the blocks run: an existing scheduler, or a local cluster started for the run.

    ``decode_workers`` is the number of decode processes inside each dask worker
    (0: decode inline, the worker process being the parallelism).
    """

    scheduler: str | None = None
    local_workers: int | None = None
    decode_workers: int = 0

    def __post_init__(self) -> None:
        if (self.scheduler is None) == (self.local_workers is None):
            raise ValueError("give exactly one of scheduler (an address) or local_workers")
        if self.local_workers is not None and self.local_workers < 1:
            raise ValueError(f"local_workers must be >= 1, got {self.local_workers}")


def parse_cluster(text: str) -> int:
    """``local:K`` -> K; ``local`` -> one worker per CUDA GPU, else one per CPU core."""
    kind, _, count = text.partition(":")
    if kind != "local" or (count and not count.isdigit()) or count == "0":
        raise ValueError(
            f"--cluster {text}: expected local:K (K >= 1 worker processes) or local; "
            "to use a running cluster pass --scheduler ADDRESS instead"
        )
    if count:
        return int(count)
    return torch.cuda.device_count() or os.cpu_count() or 1


@contextlib.contextmanager
def connect(cluster: ClusterOptions) -> Iterator[Client]:
    """A client of the scheduler at ``cluster.scheduler``, or of a local cluster started now."""
    from distributed import Client

    if cluster.scheduler is not None:
        try:
            client = Client(cluster.scheduler)  # waits distributed.comm.timeouts.connect
        except (OSError, TimeoutError) as exc:
            raise GenerateError(
                f"--scheduler {cluster.scheduler}: cannot connect ({type(exc).__name__}: "
                f"{exc}); check the address (e.g. tcp://host:8786) and that the scheduler runs"
            ) from None
        with client:
            yield client
        return
    assert cluster.local_workers is not None
    with local_cluster(cluster.local_workers) as local, Client(local) as client:
        yield client


@contextlib.contextmanager
def local_cluster(workers: int) -> Iterator[Any]:
    """K worker processes on this machine, one thread each.

    With CUDA GPUs present, each worker gets one GPU (``CUDA_VISIBLE_DEVICES``,
    round-robin when K exceeds the GPU count) and a ``GPU=1`` resource, so every
    block task, which asks for ``GPU=1``, runs on a worker holding a GPU.  The
    worker processes die with this process (dask's nanny watches its parent).
    """
    from distributed import LocalCluster, Nanny, Scheduler, SpecCluster

    gpus = torch.cuda.device_count()
    if gpus == 0:
        cluster: Any = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",  # any free port: several runs may share a machine
            silence_logs=logging.ERROR,
        )
    else:
        specs = {
            i: {
                "cls": Nanny,
                "options": {
                    "nthreads": 1,
                    "resources": {GPU_RESOURCE: 1},
                    "env": {"CUDA_VISIBLE_DEVICES": str(i % gpus)},
                },
            }
            for i in range(workers)
        }
        scheduler = {"cls": Scheduler, "options": {"dashboard_address": ":0"}}
        cluster = SpecCluster(workers=specs, scheduler=scheduler, silence_logs=logging.ERROR)
    with cluster:
        yield cluster


def workers_device(client: Client, name: str) -> torch.device:
    """The device the workers resolve ``--device`` to: the CPU unless every one has another."""
    types = set(client.run(_device_type, name).values())
    return torch.device(types.pop() if len(types) == 1 else "cpu")


def _device_type(name: str) -> str:
    return resolve_device(name).type


def cluster_has_gpus(client: Client) -> bool:
    """Whether any worker offers the ``GPU`` resource (then every task asks for one)."""
    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    return any(info.get("resources", {}).get(GPU_RESOURCE) for info in workers)


__all__ = [
    "GPU_RESOURCE",
    "ClusterOptions",
    "cluster_has_gpus",
    "connect",
    "local_cluster",
    "parse_cluster",
    "workers_device",
]

"""``fkd generate`` on a dask.distributed cluster: one task per block, idempotent.

The client scans DATA, creates or resumes the store (``prepare_run``), and submits
one task per uncommitted block of its shard.  A task sends only the run's
``GenerateConfig``, the store spec it expects and the block index; the worker reads
the images from the shared file system itself, labels the block with the same
``label_and_write_blocks`` pipeline as a single-process run, writes it (commit
marker last) and returns a small ``BlockStats``.

Fault tolerance comes from determinism: a block's bytes depend only on the block,
so a block whose worker died is simply run again by dask (up to
``distributed.scheduler.allowed-failures`` times) and writes the same bytes.  A
Python exception in a task (a teacher giving NaN on a "poison" block) is not
retried: the client cancels the other tasks and reports the block.  Blocks that
were committed stay committed, so re-running the same command resumes.

Each worker loads the teacher once and keeps it for the tasks that follow
(``_WORKER_CACHE``, keyed by the teacher specs, their weights files and the device).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from fkd.devices import resolve_device
from fkd.generate import (
    BlockLabeller,
    BlockStats,
    GenerateConfig,
    GenerateError,
    GenerateSummary,
    finish_summary,
    label_and_write_blocks,
    prepare_run,
)
from fkd.images import ImageSource
from fkd.progress import Progress
from fkd.storage_formats import LabelStore, StoreSpec
from fkd.storage_formats.spec import diff_generation
from fkd.teachers import LoadedTeacher, load_teachers

if TYPE_CHECKING:
    from distributed import Client, Future

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


# The task (runs on a worker) -------------------------------------------------------


@dataclass(frozen=True)
class BlockTask:
    """One block to label: everything a worker needs, and nothing large."""

    config: GenerateConfig
    spec: StoreSpec
    image_root: str
    block: int
    decode_workers: int = 0


@dataclass
class _WorkerCache:
    """What a worker keeps between tasks: the loaded teacher and the image list."""

    lock: threading.Lock
    teacher_key: tuple[Any, ...] | None = None
    teacher: LoadedTeacher | None = None
    source_key: tuple[Any, ...] | None = None
    source: ImageSource | None = None


_WORKER_CACHE = _WorkerCache(threading.Lock())


def label_block(task: BlockTask) -> BlockStats:
    """Label one block and write it, commit marker last (the dask task; idempotent)."""
    started = time.perf_counter()
    config = task.config
    store = LabelStore.open(config.out, mode="r+")
    if diff_generation(store.spec, task.spec):
        raise GenerateError(
            f"block {task.block}: {config.out} no longer has the parameters this run was "
            "started with (was it overwritten meanwhile?); re-run the command"
        )
    device = resolve_device(config.device)  # local GPU workers see one GPU each
    _check_decode_workers(task.decode_workers)
    with _WORKER_CACHE.lock:
        teacher = cached_teacher(config, device)
        source = cached_source(store, task.image_root)
    reference = LabelStore.open(config.reference) if config.reference else None
    labeller = BlockLabeller(store.spec, teacher, device, config.batch_size_on(device), reference)
    [stats] = label_and_write_blocks(
        store, source, [task.block], labeller, task.decode_workers, config.max_pixels
    )
    stats.task_seconds = time.perf_counter() - started
    return stats


def cached_teacher(config: GenerateConfig, device: torch.device) -> LoadedTeacher:
    """The worker's teacher for ``config``, loaded on the first task that needs it."""
    key = (config.teachers, tuple(_file_identity(w) for w in config.weights), str(device))
    if _WORKER_CACHE.teacher_key != key or _WORKER_CACHE.teacher is None:
        _WORKER_CACHE.teacher = None  # free the old one before loading the next
        _WORKER_CACHE.teacher = load_teachers(config.teachers, config.weights, device)
        _WORKER_CACHE.teacher_key = key
    return _WORKER_CACHE.teacher


def cached_source(store: LabelStore, image_root: str) -> ImageSource:
    """The images in store order: the store's own manifest under ``image_root``, read once."""
    key = (store.location, store.spec.manifest_digest, image_root)
    if _WORKER_CACHE.source_key != key or _WORKER_CACHE.source is None:
        _WORKER_CACHE.source = ImageSource(Path(image_root), store.manifest, None)
        _WORKER_CACHE.source_key = key
    return _WORKER_CACHE.source


def _file_identity(path: str | None) -> tuple[str, int, int] | None:
    """A weights file as the cache sees it: a file replaced in place is loaded again."""
    if path is None:
        return None
    try:
        stat = os.stat(path)
    except OSError:
        return (os.path.abspath(path), -1, -1)  # load_teachers says what is wrong with it
    return (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)


def _check_decode_workers(workers: int) -> None:
    if workers > 0 and multiprocessing.current_process().daemon:
        raise GenerateError(
            f"--workers {workers} inside a dask worker needs non-daemonic worker processes: "
            "start the workers with DASK_DISTRIBUTED__WORKER__DAEMON=False, or drop --workers "
            "(each dask worker then decodes inline)"
        )


# The client ------------------------------------------------------------------------


def generate_distributed(
    config: GenerateConfig, cluster: ClusterOptions, progress: bool | None = None
) -> GenerateSummary:
    """``fkd generate`` with one dask task per block, on ``cluster``."""
    with connect(cluster) as client:
        return generate_on_client(config, client, cluster.decode_workers, progress)


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


def generate_on_client(
    config: GenerateConfig,
    client: Client,
    decode_workers: int = 0,
    progress: bool | None = None,
) -> GenerateSummary:
    """Create or resume the store, run its uncommitted blocks as dask tasks, report once."""
    started = time.perf_counter()
    # The client loads the teacher on the CPU for the spec only (classes, provenance); a
    # new store records the crop path of the workers' device, which they all cut with.
    run = prepare_run(config, torch.device("cpu"), workers_device(client, config.device))
    store = run.store
    summary = GenerateSummary(blocks_skipped=run.skipped)
    summary.dask_workers = len(client.scheduler_info(n_workers=-1)["workers"])
    futures = submit_blocks(client, config, run.store.spec, run.source, run.todo, decode_workers)
    images = sum(stop - start for start, stop in map(store.block_range, run.todo))
    bar = Progress(images, "generate (dask): ", enabled=progress)
    try:
        collect(client, futures, store, summary, bar)
    finally:
        bar.close()
    finish_summary(summary, store, config, started)
    if config.check_fidelity > 0:
        from fkd.fidelity import check_fidelity

        summary.fidelity = check_fidelity(
            store, run.source, run.teacher, torch.device("cpu"), config.check_fidelity,
            config.batch_size_on(torch.device("cpu")),
        )  # fmt: skip
    return summary


def workers_device(client: Client, name: str) -> torch.device:
    """The device the workers resolve ``--device`` to: the CPU unless every one has another."""
    types = set(client.run(_device_type, name).values())
    return torch.device(types.pop() if len(types) == 1 else "cpu")


def _device_type(name: str) -> str:
    return resolve_device(name).type


def submit_blocks(
    client: Client,
    config: GenerateConfig,
    spec: StoreSpec,
    source: ImageSource,
    blocks: Sequence[int],
    decode_workers: int,
) -> dict[Future, int]:
    """One task per block (no retries on exceptions; dask re-runs a dead worker's task)."""
    resources = {GPU_RESOURCE: 1} if cluster_has_gpus(client) else None
    run_id = uuid.uuid4().hex[:8]
    root = str(source.root.resolve())
    futures = {}
    for block in blocks:
        task = BlockTask(config, spec, root, block, decode_workers)
        future = client.submit(
            label_block,
            task,
            key=f"fkd-block-{block:06d}-{run_id}",
            resources=resources,
            retries=0,
            pure=False,
        )
        futures[future] = block
    return futures


def cluster_has_gpus(client: Client) -> bool:
    """Whether any worker offers the ``GPU`` resource (then every task asks for one)."""
    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    return any(info.get("resources", {}).get(GPU_RESOURCE) for info in workers)


def collect(
    client: Client,
    futures: dict[Future, int],
    store: LabelStore,
    summary: GenerateSummary,
    bar: Progress,
) -> None:
    """Gather each block's stats as it finishes; on the first failure cancel the rest."""
    from distributed import as_completed

    try:
        for future in as_completed(list(futures)):
            try:
                stats: BlockStats = future.result()
            except Exception as exc:
                raise block_failure(futures[future], exc, store) from exc
            summary.add(stats)
            bar.update(stats.images, stats.crops)
    finally:
        client.cancel(list(futures))  # a no-op for the finished ones


def block_failure(block: int, exc: BaseException, store: LabelStore) -> Exception:
    """A one-line ``GenerateError`` naming the failed block, its images and what to do."""
    from distributed import KilledWorker

    start, stop = store.block_range(block)
    paths = store.manifest.paths
    images = f"images {start}..{stop - 1}: {paths[start]} .. {paths[stop - 1]}"
    committed = len(store.committed_blocks())
    after = (
        f"the run stopped and its other blocks were cancelled; the {committed} committed "
        "blocks stay committed: fix the cause and re-run the same command to resume"
    )
    if isinstance(exc, KilledWorker):
        return GenerateError(
            f"block {block} ({images}) was lost with its dask worker more than "
            "distributed.scheduler.allowed-failures times (the worker process died: out of "
            f"memory or a crash in native code, in this block or one beside it); {after}"
        )
    reason = " ".join(str(exc).split()) or type(exc).__name__
    if not isinstance(exc, GenerateError):
        reason = f"{type(exc).__name__}: {reason}"
    elif reason.startswith(f"block {block}:"):
        reason = reason[len(f"block {block}:") :].strip()
    return GenerateError(f"block {block} ({images}) failed on a dask worker: {reason}; {after}")


__all__ = [
    "BlockTask",
    "ClusterOptions",
    "connect",
    "generate_distributed",
    "generate_on_client",
    "label_block",
    "local_cluster",
    "parse_cluster",
]

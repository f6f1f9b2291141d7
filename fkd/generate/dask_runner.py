"""``fkd generate`` on a dask.distributed cluster, the client: one task per block, idempotent.

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

The task itself is ``dask_task.label_block``; the cluster it runs on, ``dask_cluster``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from fkd.generate.config import GenerateConfig
from fkd.generate.dask_cluster import (
    GPU_RESOURCE,
    ClusterOptions,
    cluster_has_gpus,
    connect,
    workers_device,
)
from fkd.generate.dask_task import BlockTask, label_block
from fkd.generate.errors import GenerateError
from fkd.generate.fidelity import check_fidelity
from fkd.generate.pipeline import finish_summary, prepare_run
from fkd.generate.summary import BlockStats, GenerateSummary
from fkd.images import ImageSource
from fkd.progress import Progress
from fkd.storage_formats import LabelStore, StoreSpec

if TYPE_CHECKING:
    from distributed import Client, Future


def generate_distributed(
    config: GenerateConfig, cluster: ClusterOptions, progress: bool | None = None
) -> GenerateSummary:
    """``fkd generate`` with one dask task per block, on ``cluster``."""
    with connect(cluster) as client:
        return generate_on_client(config, client, cluster.decode_workers, progress)


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
        summary.fidelity = check_fidelity(
            store, run.source, run.teacher, torch.device("cpu"), config.check_fidelity,
            config.batch_size_on(torch.device("cpu")),
        )  # fmt: skip
    return summary


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
    "block_failure",
    "collect",
    "generate_distributed",
    "generate_on_client",
    "submit_blocks",
]

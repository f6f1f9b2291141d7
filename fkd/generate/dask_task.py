"""The dask task of ``fkd generate``: ``label_block`` labels one block on a worker and
writes it, commit marker last; idempotent, so dask may simply run it again.

A task (``BlockTask``) carries only the run's ``GenerateConfig``, the store spec it expects
and the block index; the worker reads the images from the shared file system itself and
labels the block with the same ``label_and_write_blocks`` pipeline as a single-process run.

Each worker loads the teacher once and keeps it for the tasks that follow
(``_WORKER_CACHE``, keyed by the teacher specs, their weights files and the device).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fkd.devices import resolve_device
from fkd.generate.config import GenerateConfig
from fkd.generate.errors import GenerateError
from fkd.generate.labeller import BlockLabeller
from fkd.generate.pipeline import label_and_write_blocks
from fkd.generate.summary import BlockStats
from fkd.images import ImageSource
from fkd.storage_formats import LabelStore, StoreSpec
from fkd.storage_formats.spec import diff_generation
from fkd.teachers import LoadedTeacher, load_teachers


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


__all__ = ["BlockTask", "cached_source", "cached_teacher", "label_block"]

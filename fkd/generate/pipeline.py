"""The run of ``fkd generate``: ``generate(config)`` labels every uncommitted block of its
shard and reports.

Per block (the unit of work, resume and sharding):

    decode (worker processes, ahead: decode.py) -> boxes (seeded, per image) -> crops
    (batched, on the device: cutter.py) -> teacher (AMP + channels_last on GPU) ->
    softmax(T) -> encode on the device (labeller.py) -> block buffer -> background
    writer: whole shards, then the block's commit marker (writer.py).

``label_and_write_blocks`` is the one pipeline: the single-process run calls it with all
of its shard's blocks, a dask task (dask_worker.py) with one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray

from fkd.devices import resolve_device
from fkd.generate.config import GenerateConfig
from fkd.generate.decode import Decoded, decoded_images
from fkd.generate.fidelity import check_fidelity
from fkd.generate.labeller import BlockLabeller
from fkd.generate.shards import blocks_for_shard, check_redo_blocks, shard_failures
from fkd.generate.store_setup import build_spec, open_or_create_store, open_reference
from fkd.generate.summary import BlockStats, GenerateSummary, store_bytes
from fkd.generate.writer import BlockWriter
from fkd.images import ImageSource, scan_source
from fkd.progress import Progress
from fkd.storage_formats import STATUS_OK, BlockData, LabelStore
from fkd.teachers import LoadedTeacher, load_teachers


@dataclass(frozen=True)
class PreparedRun:
    """A run's inputs once the store is open: what to label, with what."""

    source: ImageSource
    teacher: LoadedTeacher
    reference: LabelStore | None
    store: LabelStore
    todo: tuple[int, ...]
    skipped: int


def prepare_run(
    config: GenerateConfig, device: torch.device, crop_device: torch.device | None = None
) -> PreparedRun:
    """Scan DATA, load the teacher on ``device``, create or resume the store, list the work.

    A new store records the crop path of ``crop_device`` (default ``device``), the
    device its writers will cut on.
    """
    source = scan_source(config.data, hash_files=config.hash_files)
    teacher = load_teachers(config.teachers, config.weights, device)
    reference = open_reference(config, source)
    crops = reference.spec.crops if reference else None
    spec = build_spec(config, source, teacher, crops, crop_device or device)
    check_redo_blocks(config.redo_blocks, spec.num_blocks, config.shard)  # before any write
    store = open_or_create_store(config.out, spec, source, config.overwrite)
    todo, skipped = blocks_for_shard(store, config.shard, config.redo_blocks)
    return PreparedRun(source, teacher, reference, store, tuple(todo), skipped)


def generate(config: GenerateConfig, progress: bool | None = None) -> GenerateSummary:
    """Run ``fkd generate``: label every uncommitted block of this shard, then report."""
    started = time.perf_counter()
    device = resolve_device(config.device)
    run = prepare_run(config, device)
    summary = GenerateSummary(blocks_skipped=run.skipped)
    batch_size = config.batch_size_on(device)
    labeller = BlockLabeller(run.store.spec, run.teacher, device, batch_size, run.reference)
    images = sum(stop - start for start, stop in map(run.store.block_range, run.todo))
    bar = Progress(images, "generate: ", enabled=progress)
    try:
        for stats in label_and_write_blocks(
            run.store, run.source, run.todo, labeller, config.workers, config.max_pixels,
            on_labelled=lambda stats: bar.update(stats.images, stats.crops),
        ):  # fmt: skip
            summary.add(stats)
    finally:
        bar.close()
    finish_summary(summary, run.store, config, started)
    if config.check_fidelity > 0:
        summary.fidelity = check_fidelity(
            run.store, run.source, run.teacher, device, config.check_fidelity, batch_size
        )
    return summary


def finish_summary(
    summary: GenerateSummary, store: LabelStore, config: GenerateConfig, started: float
) -> None:
    """The shard's failures over all its committed blocks, completeness, bytes and wall time."""
    summary.shard_images, summary.shard_failures = shard_failures(store, config.shard)
    summary.complete = store.is_complete()
    summary.bytes_on_disk = store_bytes(config.out)
    summary.total_crops_in_store = store.spec.num_images * store.spec.crops_per_image
    summary.seconds = time.perf_counter() - started


def label_and_write_blocks(
    store: LabelStore,
    source: ImageSource,
    blocks: Sequence[int],
    labeller: BlockLabeller,
    workers: int,
    max_pixels: int,
    on_labelled: Callable[[BlockStats], None] | None = None,
) -> list[BlockStats]:
    """Label ``blocks`` in order and write each one (commit marker last); one stats per block.

    The one pipeline of ``fkd generate``: the single-process run calls it with all
    of its shard's blocks, a dask task with one.  ``on_labelled`` sees each block's
    stats once it is labelled (its write may still be under way).  ``workers``
    decode processes run ahead of the teacher (0: decode inline).
    """
    indices = [i for b in blocks for i in range(*store.block_range(b))]
    writer = BlockWriter(store)
    # Decode workers also cut the crops when the store's crop path runs on the CPU (not
    # with --reference: its boxes are read).
    cutter = labeller.cutter
    precutting = (labeller.device.type == "cpu" or cutter.on_cpu) and labeller.reference is None
    stream = decoded_images(source, indices, workers, max_pixels, cutter if precutting else None)
    done: list[BlockStats] = []
    try:
        for block in blocks:
            labelled = label_one_block(store, source, block, labeller, stream)
            writer.put(block, labelled.data)
            done.append(labelled.stats)
            if on_labelled is not None:
                on_labelled(labelled.stats)
    finally:
        stream.close()  # stops the decode workers now, not whenever the traceback is freed
        writer.close()
    for stats in done:
        stats.write_seconds = writer.seconds_by_block.get(stats.block, 0.0)
    return done


@dataclass(frozen=True)
class LabelledBlock:
    data: BlockData
    stats: BlockStats


def label_one_block(
    store: LabelStore,
    source: ImageSource,
    block: int,
    labeller: BlockLabeller,
    stream: Iterator[Decoded],
) -> LabelledBlock:
    """The next block's images from the decode ``stream``, labelled, with their stats."""
    start, stop = store.block_range(block)
    stats = BlockStats(block)
    teacher_before = labeller.teacher_seconds
    data = labeller.label(
        block,
        _block_stream(stream, stop - start, source, stats),
        stop - start,
        lambda i: source.manifest.paths[i],
    )
    ok = int((data.status == STATUS_OK).sum())
    stats.images = stop - start
    stats.crops = ok * store.spec.crops_per_image
    stats.teacher_seconds = labeller.teacher_seconds - teacher_before
    return LabelledBlock(data, stats)


def _block_stream(
    stream: Iterator[Decoded], count: int, source: ImageSource, stats: BlockStats
) -> Iterator[tuple[int, NDArray[np.uint8] | None, str, torch.Tensor | None]]:
    """The next ``count`` decoded images, timing the waits and recording failures."""
    for _ in range(count):
        wait = time.perf_counter()
        index, image, reason, _, crops = next(stream)
        stats.decode_wait_seconds += time.perf_counter() - wait
        if image is None:
            stats.failures.append((source.manifest.paths[index], reason))
        yield index, image, reason, crops


__all__ = [
    "LabelledBlock",
    "PreparedRun",
    "finish_summary",
    "generate",
    "label_and_write_blocks",
    "label_one_block",
    "prepare_run",
]

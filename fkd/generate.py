"""``fkd generate``: teacher inference over M random-resized crops per image, into a store.

The pipeline, per block (the unit of work, resume and sharding):

    decode (worker processes, ahead) -> boxes (seeded, per image) -> crops (batched,
    on the device) -> teacher (AMP + channels_last on GPU) -> softmax(T) -> encode
    on the device -> block buffer -> background writer: whole shards, then the
    block's commit marker.

Batches are formed inside a block, so a block's bytes depend only on the
block, the parameters and the hardware: never on sharding, worker count or
resume point.
"""

from __future__ import annotations

import errno
import os
import queue
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch.utils.data import DataLoader, Dataset

import fkd
from fkd import crops as crop_ops
from fkd.crops.datasets import CropDataset
from fkd.devices import device_autocast, resolve_device
from fkd.exceptions import FkdError, OptionError
from fkd.fidelity import FidelityReport, check_fidelity
from fkd.generate_config import GenerateConfig
from fkd.images import ImageSource, decode_or_reason, scan_source
from fkd.labels import encode_torch, to_numpy_fields
from fkd.progress import Progress
from fkd.storage_formats import (
    STATUS_FAILED,
    STATUS_OK,
    BlockData,
    CropSpec,
    ImageBatch,
    LabelStore,
    StoreError,
    StoreSpec,
    get_codec,
    sample_boxes,
)
from fkd.storage_formats.errors import WRITE_ERRNOS
from fkd.storage_formats.label_codecs import codec_class, codec_spec
from fkd.storage_formats.spec import diff_generation
from fkd.storage_formats.zarr_store import is_url
from fkd.teachers import LoadedTeacher, load_teachers
from fkd.worker_lifetime import DataLoaderWorkerLifetime

DEFAULT_CROP_INTERPOLATION = "bilinear"


class GenerateError(FkdError, RuntimeError):
    """A generation run cannot go on; the message says why and what to do."""


@dataclass
class BlockStats:
    """What labelling one block found and cost: small, so it travels back from a dask worker."""

    block: int
    images: int = 0
    crops: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    decode_wait_seconds: float = 0.0
    teacher_seconds: float = 0.0
    write_seconds: float = 0.0
    task_seconds: float = 0.0  # a dask task's whole wall on its worker (0 in one process)


@dataclass
class GenerateSummary:
    """What a run did, for the final report.

    ``images`` and ``failures`` count what this run decoded; ``shard_images`` and
    ``shard_failures`` count every committed block of the shard, including those an
    earlier (interrupted) run wrote, and decide the exit status.
    """

    images: int = 0
    crops: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    shard_images: int = 0
    shard_failures: list[tuple[str, str]] = field(default_factory=list)
    blocks_written: int = 0
    blocks_skipped: int = 0
    bytes_on_disk: int = 0
    total_crops_in_store: int = 0
    seconds: float = 0.0
    decode_wait_seconds: float = 0.0
    teacher_seconds: float = 0.0
    write_seconds: float = 0.0
    complete: bool = False
    fidelity: FidelityReport | None = None
    dask_workers: int = 0  # > 0: the seconds above are summed over this many dask workers
    block_stats: list[BlockStats] = field(default_factory=list)  # this run's, in finish order

    @property
    def bytes_per_crop(self) -> float:
        return self.bytes_on_disk / max(self.total_crops_in_store, 1)

    def add(self, stats: BlockStats) -> None:
        """Count one written block."""
        self.block_stats.append(stats)
        self.images += stats.images
        self.crops += stats.crops
        self.failures.extend(stats.failures)
        self.blocks_written += 1
        self.decode_wait_seconds += stats.decode_wait_seconds
        self.teacher_seconds += stats.teacher_seconds
        self.write_seconds += stats.write_seconds

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON (``fkd generate --json``): the counts, sizes, timings and fidelity."""
        skipped = ("block_stats", "fidelity")  # per-block stats stay out: one per block
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skipped}
        data["fidelity"] = asdict(self.fidelity) if self.fidelity else None
        data["bytes_per_crop"] = self.bytes_per_crop
        return data

    def lines(self) -> list[str]:
        return [
            f"images {self.images}, crops {self.crops}, failures {len(self.failures)}, "
            f"blocks written {self.blocks_written}, skipped (already committed) "
            f"{self.blocks_skipped}",
            f"store {self.bytes_on_disk} bytes on disk, {self.bytes_per_crop:.2f} bytes/crop"
            + ("" if self.complete else " (store not complete yet: other shards pending)"),
            f"wall {self.seconds:.1f}s{self._where()}: waiting for decode "
            f"{self.decode_wait_seconds:.1f}s, teacher {self.teacher_seconds:.1f}s, "
            f"write {self.write_seconds:.1f}s",
        ] + (self.fidelity.lines() if self.fidelity else [])

    def _where(self) -> str:
        if not self.dask_workers:
            return ""
        return f" on {self.dask_workers} dask worker(s), stage times summed over them"


# Building the spec ---------------------------------------------------------


def build_spec(
    config: GenerateConfig,
    source: ImageSource,
    teacher: LoadedTeacher,
    crops: CropSpec | None = None,
    device: torch.device | str = "cpu",
) -> StoreSpec:
    # The crops are resampled bilinearly on the device's fast path unless --interpolation
    # bicubic asks for the exact per-crop path: --check-fidelity measures the difference
    # (on real photos 0.004-0.005 nats for either fast path, much of it the rounding to
    # whole grey levels, against 0.39 nats for top-5 encoding of 1000 classes).  The
    # path ``device`` gets is recorded, and every writer of the store cuts with it.
    interpolation = config.interpolation or DEFAULT_CROP_INTERPOLATION
    info = replace(
        teacher.info,
        input_size=config.input_size or teacher.info.input_size,
        interpolation=interpolation,
        resampling=crop_ops.resampling_for(device, interpolation).name,
    )
    classes = teacher.num_classes
    if codec_class(config.label_type).k_for(config.topk, classes) > classes:
        raise OptionError(
            "--topk",
            f"{config.topk} is more than the {classes} classes of teacher "
            f"{teacher.info.spec!r}; give 1..{classes}",
        )
    codec = codec_spec(
        config.label_type,
        teacher.num_classes,
        config.topk,
        temperature=config.temperature,
        value_dtype=config.value_dtype,
    )
    crops = crops or CropSpec(
        crops_per_image=config.crops_per_image,
        scale=config.scale,
        ratio=config.ratio,
        flip_prob=config.flip_prob,
        seed=config.seed,
    )
    manifest = source.manifest
    return StoreSpec(
        **manifest.spec_fields(),
        codec=codec,
        crops=crops,
        teacher=info,
        block_size=config.block_size,
        software=software_versions(),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def software_versions() -> dict[str, str]:
    import numcodecs
    import torchvision
    import zarr

    return {
        "fkd": fkd.__version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "zarr": zarr.__version__,
        "numcodecs": numcodecs.__version__,
        "numpy": np.__version__,
    }


# Opening the store -----------------------------------------------------------


def open_or_create_store(
    out: str, spec: StoreSpec, source: ImageSource, overwrite: bool
) -> LabelStore:
    """Resume a store made with the same parameters, or create it atomically.

    Creation writes into a temporary sibling directory and renames it into
    place, so concurrent shards never see a half-made store.
    """
    if not is_url(out) and Path(out).exists() and not Path(out).is_dir():
        raise GenerateError(
            f"--out {out} is a file, not a label store (a directory); choose another path"
        )
    if overwrite or not _store_exists(out):
        created = _create_atomically(out, spec, source, overwrite)
        if created is not None:
            return created
    store = LabelStore.open(out, mode="r+")
    if store.spec.format_version < spec.format_version:  # blocks are written alike: resume it
        spec = replace(spec, format_version=store.spec.format_version, path_data_bytes=0)
    # The crop path is the store's, whatever device resumes it (None: chosen per device).
    spec = replace(spec, teacher=replace(spec.teacher, resampling=store.spec.teacher.resampling))
    differing = diff_generation(store.spec, spec)
    if differing:
        old, new = store.spec.generation_dict(), spec.generation_dict()
        name = differing[0]
        raise GenerateError(
            f"{out} was made with different parameters ({name}: {_lookup(old, name)!r} in the "
            f"store, {_lookup(new, name)!r} now; {len(differing)} differ in all); re-run with "
            "the store's parameters to resume, or pass --overwrite to start again"
        )
    return store


def _store_exists(out: str) -> bool:
    if is_url(out):
        return False
    path = Path(out)
    return path.exists() and any(path.iterdir()) if path.is_dir() else path.exists()


def _create_atomically(
    out: str, spec: StoreSpec, source: ImageSource, overwrite: bool
) -> LabelStore | None:
    if is_url(out):
        return LabelStore.create(out, spec, source.manifest, overwrite=overwrite)
    target = Path(out)
    if overwrite and target.exists():
        LabelStore.create(target, spec, source.manifest, overwrite=True)
        return LabelStore.open(target, mode="r+")
    # Unique per call: two runs in one process (threads) must not share a staging folder.
    staging = target.with_name(f".{target.name}.creating-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        LabelStore.create(staging, spec, source.manifest, overwrite=True)
    except BaseException as exc:  # disk full, interrupted: leave nothing half-made behind
        shutil.rmtree(staging, ignore_errors=True)
        refusal = _creation_refused(exc, target)
        if refusal is not None:
            raise refusal from exc
        raise
    try:
        if target.exists():
            target.rmdir()  # an empty directory only; raises if someone filled it meanwhile
        staging.rename(target)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        return None  # another shard created it first: open theirs
    return LabelStore.open(target, mode="r+")


def _creation_refused(exc: BaseException, target: Path) -> GenerateError | None:
    """A one-line error naming ``--out``'s folder when the file system refused to create the
    store there (read-only, no permission, full), rather than the staging folder it never saw."""
    cause = exc if isinstance(exc, OSError) else exc.__cause__
    if not isinstance(cause, OSError):
        return None
    if cause.errno in WRITE_ERRNOS:
        what, fix = WRITE_ERRNOS[cause.errno]
    elif cause.errno in (errno.EACCES, errno.EPERM):
        what, fix = "permission denied", "make {store} writable"
    else:
        return None
    folder = target.parent
    return GenerateError(
        f"--out {target}: cannot create the label store in {folder}: {what}; "
        f"{fix.format(store=folder)}, or choose another --out"
    )


def _lookup(data: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        data = data.get(part, {}) if isinstance(data, dict) else {}
    return data


def shard_blocks(num_blocks: int, shard: tuple[int, int]) -> list[int]:
    """Every block b with b mod n == i, for ``shard`` = (i, n)."""
    index, count = shard
    if not (count >= 1 and 0 <= index < count):
        raise GenerateError(f"--shard {index}/{count}: expected i/n with 0 <= i < n")
    return [b for b in range(num_blocks) if b % count == index]


def blocks_for_shard(
    store: LabelStore, shard: tuple[int, int], redo: Sequence[int] = ()
) -> tuple[list[int], int]:
    """(blocks to label, number of committed ones skipped) of the shard (i, n).

    The blocks to label are the uncommitted blocks b with b mod n == i, or, when
    ``redo`` lists blocks, exactly those (committed or not).
    """
    mine = shard_blocks(store.num_blocks, shard)
    committed = store.committed_mask(refresh=True)
    if redo:
        check_redo_blocks(redo, store.num_blocks, shard)
        again = set(redo)
        return sorted(again), sum(1 for b in mine if committed[b] and b not in again)
    todo = [b for b in mine if not committed[b]]
    return todo, len(mine) - len(todo)


def check_redo_blocks(redo: Sequence[int], num_blocks: int, shard: tuple[int, int]) -> None:
    """Refuse a ``--redo-blocks`` block that does not exist or is not in this shard."""
    index, count = shard
    for block in redo:
        if not 0 <= block < num_blocks:
            raise OptionError(
                "--redo-blocks",
                f"block {block} does not exist: the store has {num_blocks} blocks, "
                f"0..{num_blocks - 1}",
            )
        if block % count != index:
            raise OptionError(
                "--redo-blocks",
                f"block {block} is not in --shard {index}/{count} (its blocks b have "
                f"b mod {count} == {index}); redo it with --shard {block % count}/{count}",
            )


# Decoding ahead of the teacher ------------------------------------------------


@dataclass(frozen=True)
class CropCutter:
    """Samples an image's boxes and cuts its M normalised crops (picklable, for workers)."""

    crops: CropSpec
    size: int
    resampling: str
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def for_store(cls, spec: StoreSpec, device: torch.device | str) -> CropCutter:
        """The store's cutter: its recorded crop path, else (older stores) the device's."""
        info = spec.teacher
        path = crop_ops.teacher_resampling(info.resampling, info.interpolation, device)
        return cls(spec.crops, info.input_size, path.name, info.mean, info.std)

    @property
    def on_cpu(self) -> bool:
        """Whether the cut runs on the CPU whatever the device (decode workers can do it)."""
        return self.resampling == "uint8-bilinear"

    def cut(
        self, index: int, image: NDArray[np.uint8], device: torch.device | str = "cpu"
    ) -> torch.Tensor:
        height, width = image.shape[:2]
        boxes, flips = sample_boxes(
            self.crops, np.array([index]), np.array([height]), np.array([width])
        )
        return self.cut_boxes(image, boxes[0].astype(np.float64), flips[0], device)

    def cut_boxes(
        self,
        image: NDArray[np.uint8],
        boxes: NDArray[np.float64],
        flips: NDArray[np.bool_],
        device: torch.device | str,
    ) -> torch.Tensor:
        resampling = crop_ops.get_resampling(self.resampling)
        crops = crop_ops.cut_pixel_boxes(image, boxes, flips, self.size, resampling, device)
        return crop_ops.normalise(crops, self.mean, self.std)


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


# Labelling one block -------------------------------------------------------------


@dataclass
class BlockLabeller:
    """Turns the decoded images of one block into its ``BlockData``."""

    spec: StoreSpec
    teacher: LoadedTeacher
    device: torch.device
    batch_size: int
    reference: LabelStore | None = None
    teacher_seconds: float = 0.0

    @property
    def cutter(self) -> CropCutter:
        return CropCutter.for_store(self.spec, self.device)

    def label(
        self,
        block: int,
        images: Iterable[tuple[int, NDArray[np.uint8] | None, str, torch.Tensor | None]],
        count: int,
        paths: Callable[[int], str],
    ) -> BlockData:
        """Label a block's ``count`` images as they arrive from the decode stream.

        Each item is (index, pixels or None, failure reason, crops cut by a decode
        worker or None).  The teacher runs as soon as ``batch_size`` crops are pending,
        so decoding the next images overlaps it; batches never cross the block.
        """
        m = self.spec.crops_per_image
        height = np.zeros(count, dtype=np.uint32)
        width = np.zeros(count, dtype=np.uint32)
        status = np.full(count, STATUS_FAILED, dtype=np.uint8)
        errors = [""] * count
        indices = np.zeros(count, dtype=np.int64)
        flips_all = np.zeros((count, m), dtype=bool)
        replayed = self.replayed(block)
        ok_rows: list[int] = []
        pending: list[torch.Tensor] = []
        encoded: list[dict[str, NDArray[Any]]] = []
        for row, (index, image, reason, crops) in enumerate(images):
            indices[row], errors[row] = index, reason
            if image is None:
                continue
            height[row], width[row] = image.shape[:2]
            status[row] = STATUS_OK
            ok_rows.append(row)
            boxes, flips = self.boxes(index, int(height[row]), int(width[row]), row, replayed)
            flips_all[row] = flips
            if crops is None or self.reference is not None:
                crops = self.cutter.cut_boxes(image, boxes, flips, self.device)
            pending.append(crops.to(self.device))
            while sum(len(p) for p in pending) >= self.batch_size:
                batch, pending = _take(pending, self.batch_size)
                encoded.append(self.run_teacher(batch, block, indices[ok_rows], paths))
        if pending:
            batch, _ = _take(pending, sum(len(p) for p in pending))
            encoded.append(self.run_teacher(batch, block, indices[ok_rows], paths))
        labels = self.encode(encoded, ok_rows, count, m)
        stored_boxes = stored_flips = None
        if replayed is not None:
            stored_boxes, stored_flips = replayed.boxes, flips_all
        return BlockData(height, width, status, errors, labels, stored_boxes, stored_flips)

    def replayed(self, block: int) -> ImageBatch | None:
        """The block's stored boxes and flips in ``--reference``, read once (stored sampler)."""
        if self.reference is None or not self.spec.crops.boxes_stored:
            return None
        return self.reference.read_images(np.arange(*self.spec.block_range(block)))

    def boxes(
        self, index: int, height: int, width: int, row: int, replayed: ImageBatch | None
    ) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
        """Pixel boxes ``[M, 4]`` and flips of one image: sampled, or replayed."""
        if replayed is not None:
            scale = np.array([height, width, height, width], dtype=np.float64)
            return replayed.boxes[row] * scale, replayed.flips[row]
        pixels, flips = sample_boxes(
            self.spec.crops, np.array([index]), np.array([height]), np.array([width])
        )
        return pixels[0].astype(np.float64), flips[0]

    def run_teacher(
        self,
        batch: torch.Tensor,
        block: int,
        images: NDArray[np.int64],
        paths: Callable[[int], str],
    ) -> dict[str, NDArray[Any]]:
        """Teacher probabilities of one batch, checked finite, encoded on the device."""
        start = time.perf_counter()
        with torch.inference_mode(), device_autocast(self.device):
            probs = self.teacher.probabilities(
                batch.contiguous(memory_format=torch.channels_last), self.spec.codec.temperature
            ).float()
        if not bool(torch.isfinite(probs).all()):
            names = ", ".join(paths(int(index)) for index in images[-5:])
            raise GenerateError(
                f"block {block}: the teacher returned NaN or infinity (images include {names}); "
                "nothing of this block was committed: check the teacher and its weights"
            )
        encoded = to_numpy_fields(encode_torch(probs, self.spec.codec), self.spec.codec)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.teacher_seconds += time.perf_counter() - start
        return encoded

    def encode(
        self, parts: list[dict[str, NDArray[Any]]], ok_rows: list[int], count: int, m: int
    ) -> dict[str, NDArray[Any]]:
        """Place the ok images' encoded crops into ``[count, M, ...]`` arrays (0 elsewhere)."""
        labels: dict[str, NDArray[Any]] = {}
        for f in get_codec(self.spec.codec).fields():
            full = np.zeros((count, m, *f.shape), dtype=f.dtype)
            if ok_rows:
                stacked = np.concatenate([p[f.name] for p in parts], axis=0)
                full[np.asarray(ok_rows)] = stacked.reshape((len(ok_rows), m, *f.shape))
            labels[f.name] = full
        return labels


def _take(pending: list[torch.Tensor], count: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The first ``count`` crops of ``pending`` as one batch, and what is left."""
    joined = torch.cat(pending) if len(pending) > 1 else pending[0]
    rest = [joined[count:]] if len(joined) > count else []
    return joined[:count], rest


# Writing off the critical path ---------------------------------------------------


class BlockWriter:
    """A background thread writing finished blocks, so the teacher never waits on disk."""

    def __init__(self, store: LabelStore, depth: int = 2) -> None:
        self.store = store
        self.queue: queue.Queue[tuple[int, BlockData] | None] = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.seconds = 0.0
        self.seconds_by_block: dict[int, float] = {}
        self.thread = threading.Thread(target=self._run, name="fkd-block-writer", daemon=True)
        self.thread.start()

    def put(self, block: int, data: BlockData) -> None:
        self._raise_if_failed()
        self.queue.put((block, data))

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()
        self._raise_if_failed()

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            if self.error is not None:
                continue
            start = time.perf_counter()
            try:
                self.store.write_block(*item)
            except BaseException as exc:  # re-raised in the caller's thread
                self.error = exc
            elapsed = time.perf_counter() - start
            self.seconds += elapsed
            self.seconds_by_block[item[0]] = elapsed

    def _raise_if_failed(self) -> None:
        if isinstance(self.error, StoreError):  # already says what to fix and to re-run
            raise GenerateError(str(self.error)) from self.error
        if self.error is not None:
            raise GenerateError(
                f"writing to {self.store.location} failed: {self.error}; the blocks written "
                "so far are committed: fix the cause and re-run the same command to resume"
            ) from self.error


# The run ------------------------------------------------------------------------------


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


def open_reference(config: GenerateConfig, source: ImageSource) -> LabelStore | None:
    if config.reference is None:
        return None
    reference = LabelStore.open(config.reference)
    if reference.manifest.without_hashes() != source.manifest.without_hashes():
        raise GenerateError(
            f"--reference {config.reference} was made from a different image list than "
            f"{config.data}; a reference store must describe the same images"
        )
    if not reference.is_complete():
        raise GenerateError(
            f"--reference {config.reference} has uncommitted blocks "
            f"{reference.uncommitted_blocks()[:5]}; finish it first"
        )
    return reference


def shard_failures(store: LabelStore, shard: tuple[int, int]) -> tuple[int, list[tuple[str, str]]]:
    """(images, [(path, reason)] of the failed ones) over the shard's committed blocks."""
    index, count = shard
    committed = store.committed_mask(refresh=True)
    blocks = [b for b in range(store.num_blocks) if b % count == index and committed[b]]
    images = sum(stop - start for start, stop in map(store.block_range, blocks))
    paths = store.manifest.paths
    failed = [
        (paths[image], reason)
        for image, reason in store.failures()
        if store.block_of(image) % count == index and committed[store.block_of(image)]
    ]
    return images, failed


def failure_message(summary: GenerateSummary, max_failures: float) -> str | None:
    """Why the run should exit non-zero, or ``None`` while failures are within budget.

    The budget applies to every committed block of the shard, so resuming an
    interrupted run, or re-running a finished one, gives the same verdict.
    """
    failures, images = summary.shard_failures, summary.shard_images
    if not failures or images == 0:
        return None
    fraction = len(failures) / images
    if fraction <= max_failures:
        return None
    path, reason = failures[0]
    return (
        f"{len(failures)} of {images} images failed to decode "
        f"({fraction:.1%} > --max-failures {max_failures:.1%}); first: {path}: {reason}. "
        "They are recorded in the store as failed; fix or remove them and re-run with "
        "--overwrite, or raise --max-failures"
    )


def store_bytes(location: str) -> int:
    """Bytes on disk under a local store (0 for URLs)."""
    if is_url(location):
        return 0
    total = 0
    for root, _, files in os.walk(location):
        total += sum(os.path.getsize(os.path.join(root, name)) for name in files)
    return total


__all__ = [
    "BlockStats",
    "GenerateConfig",
    "GenerateError",
    "GenerateSummary",
    "failure_message",
    "generate",
    "label_and_write_blocks",
    "prepare_run",
]

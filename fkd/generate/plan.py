"""``fkd generate --plan``: what a run will cost, from a few measured crops.

Nothing is written.  DATA is scanned (image count, hence blocks); the teacher runs
on a few crops of the first images only, on the run's device, to measure

- its throughput (teacher forward, softmax and encoding, in crops per second;
  decoding and crop cutting are not in it), unless the caller gives one;
- the encoded labels' size: the sample's labels are compressed with the store's
  own codec chain (zstd at the store's level).  A store chunk holds 16 images x M
  crops, which compress at least as well as the small sample, so this errs high.

Per-image arrays (path, size, status, error text...) are counted at their
uncompressed size, an upper bound.

The last lines size the store for a student run (``fkd.crop_budget``): with
``--for-epochs``, how often the run uses each stored crop, and the store size and
teacher-hours against the default ``-m``; with ``-m`` alone, the ``--for-epochs``
values it serves with every crop fresh.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from fkd.crop_budget import epochs_covered, visits_for
from fkd.devices import resolve_device
from fkd.generate.config import DEFAULT_CROPS_PER_IMAGE, GenerateConfig
from fkd.generate.cutter import CropCutter, sample_image_boxes
from fkd.generate.errors import GenerateError
from fkd.generate.labeller import encode_on_device, teacher_probabilities
from fkd.generate.shards import shard_blocks
from fkd.generate.store_setup import build_spec, open_reference
from fkd.images import ImageSource, decode_or_reason, scan_source
from fkd.storage_formats import StoreSpec
from fkd.storage_formats.layout import COMMIT_ARRAY, store_layout
from fkd.teachers import LoadedTeacher, load_teachers

SAMPLE_CROPS_CPU = 64
SAMPLE_CROPS_GPU_MAX = 1024
MIN_TIMED_SECONDS = 2.0
MAX_TIMED_PASSES = 20
SAMPLE_MAX_IMAGES = 16


@dataclass(frozen=True)
class Sample:
    """The crops measured: how many, from how many images, and the decode time."""

    crops: torch.Tensor
    images: int
    decode_seconds: float


@dataclass(frozen=True)
class StudentRun:
    """The student run a plan sizes the store for (``fkd.crop_budget``), and the M
    its store is compared with."""

    for_epochs: int | None
    crops_per_visit: int
    reuse: int
    compared_m: int = DEFAULT_CROPS_PER_IMAGE

    @classmethod
    def of(cls, config: GenerateConfig) -> StudentRun:
        return cls(config.for_epochs, config.crops_per_visit, config.reuse)


@dataclass(frozen=True)
class GenerationPlan:
    """A run's size and cost; ``lines()`` says what was measured and what is assumed."""

    spec: StoreSpec
    shard: tuple[int, int]
    shard_blocks: int
    shard_images: int
    label_bytes_per_crop: float
    raw_label_bytes_per_crop: int
    image_bytes: int
    sample_crops: int
    sample_images: int
    decode_seconds_per_image: float
    crops_per_s: float
    throughput_measured: bool
    device: str
    batch: int
    student: StudentRun

    @property
    def crops(self) -> int:
        return self.spec.num_images * self.spec.crops_per_image

    @property
    def store_bytes(self) -> float:
        return self.store_bytes_at(self.spec.crops_per_image)

    @property
    def teacher_hours(self) -> float:
        """Device-hours of teacher work for this shard's images."""
        return self.teacher_hours_at(self.spec.crops_per_image)

    def store_bytes_at(self, m: int) -> float:
        """The store's size with M = ``m`` (the same labels per crop and per-image arrays)."""
        return self.spec.num_images * (m * self.label_bytes_per_crop + self.image_bytes)

    def teacher_hours_at(self, m: int) -> float:
        return self.shard_images * m / self.crops_per_s / 3600

    def lines(self) -> list[str]:
        spec, (index, count) = self.spec, self.shard
        last = spec.num_images - (spec.num_blocks - 1) * spec.block_size
        codec = spec.codec
        where = "" if count == 1 else f"; shard {index}/{count}: {self.shard_blocks} blocks"
        if count > 1:
            where += f", {self.shard_images} images"
        if self.throughput_measured:
            throughput = (
                f"{self.crops_per_s:.4g} crops/s measured on {self.device} (teacher forward, "
                f"softmax and top-K encoding of {self.sample_crops} crops of the first "
                f"{self.sample_images} image(s) in batches of {self.batch}, after a warm-up "
                "pass; decode and crop cutting not included)"
            )
        else:
            throughput = f"{self.crops_per_s:.4g} crops/s as given (--plan-crops-per-s)"
        return [
            f"images {spec.num_images}, blocks {spec.num_blocks} of {spec.block_size} images "
            f"(last block {last}){where}",
            f"crops {self.crops} (M={spec.crops_per_image}), codec {codec.name} "
            f"top-{codec.k} {codec.value_dtype}, {codec.num_classes} classes",
            f"store ~{_size(self.store_bytes)}: labels {self.label_bytes_per_crop:.2f} B/crop "
            f"measured (the teacher's labels of {self.sample_crops} sample crops, encoded and "
            f"zstd-compressed as the store does; {self.raw_label_bytes_per_crop} B/crop "
            f"uncompressed) + per-image arrays {self.image_bytes} B/image (uncompressed, an "
            "upper bound)",
            f"teacher {throughput}: {self.teacher_hours:.3g} teacher-hours for "
            f"{self.shard_images * spec.crops_per_image} crops (divide by the number of "
            "devices for wall time)",
            f"decode {1000 * self.decode_seconds_per_image:.1f} ms/image measured on the first "
            f"{self.sample_images} image(s), one process: "
            f"{self.decode_seconds_per_image * self.shard_images / 3600:.3g} core-hours",
            *self.student_lines(),
        ]

    def student_lines(self) -> list[str]:
        """The student run M serves: with --for-epochs, its M against the default -m's;
        with -m alone, the --for-epochs values it serves without reuse."""
        m, run = self.spec.crops_per_image, self.student
        n = run.crops_per_visit
        if run.for_epochs is None:
            covered = epochs_covered(m, n)
            more = f", up to {epochs_covered(m, n, run.reuse)} with --reuse {run.reuse}"
            return [
                f"student: M={m} serves --for-epochs up to {covered} at N={n} crops per visit "
                f"with every crop fresh ({covered // n} visits per image)"
                f"{more if run.reuse > 1 else ''}; a run of E crop-epochs uses each crop "
                f"about E/{m} times"
            ]
        epochs, other = run.for_epochs, run.compared_m
        visits = visits_for(epochs, n)
        used = visits * n
        return [
            f"student: M={m} sized by --for-epochs {epochs} at N={n} crops per visit "
            f"(--crops-per-visit) and --reuse {run.reuse}: {visits} visits per image use "
            f"{used} crops, {_usage(used, m)}",
            f"against -m {other} (the default M): store ~{_size(self.store_bytes)} vs "
            f"~{_size(self.store_bytes_at(other))}, {self.teacher_hours:.3g} vs "
            f"{self.teacher_hours_at(other):.3g} teacher-hours; at M={other} the same run "
            f"would use {_usage(used, other)}",
        ]


def plan_generation(config: GenerateConfig, crops_per_s: float | None = None) -> GenerationPlan:
    """Plan ``generate(config)``: counts from DATA, sizes and speed from a few crops."""
    if crops_per_s is not None and not (crops_per_s > 0 and math.isfinite(crops_per_s)):
        raise GenerateError(f"--plan-crops-per-s {crops_per_s}: expected a positive number")
    source = scan_source(config.data)
    device = resolve_device(config.device)
    teacher = load_teachers(config.teachers, config.weights, device)
    reference = open_reference(config, source)
    spec = build_spec(config, source, teacher, reference.spec.crops if reference else None)
    blocks = shard_blocks(spec.num_blocks, config.shard)
    shard_images = sum(stop - start for start, stop in map(spec.block_range, blocks))
    size = SAMPLE_CROPS_CPU
    if device.type != "cpu":  # a full batch, as the run will use
        size = min(SAMPLE_CROPS_GPU_MAX, config.batch_size_on(device))
    sample = sample_crops(source, spec, size, config.max_pixels, device)
    batch = min(config.batch_size_on(device), len(sample.crops))
    measured, encoded = teacher_throughput(teacher, spec, sample.crops, batch, device)
    label_bytes = compressed_bytes(encoded) / len(sample.crops)
    return GenerationPlan(
        spec=spec,
        shard=config.shard,
        shard_blocks=len(blocks),
        shard_images=shard_images,
        label_bytes_per_crop=label_bytes,
        raw_label_bytes_per_crop=sum(v[:1].nbytes for v in encoded.values()),
        image_bytes=per_image_bytes(spec),
        sample_crops=len(sample.crops),
        sample_images=sample.images,
        decode_seconds_per_image=sample.decode_seconds / sample.images,
        crops_per_s=crops_per_s if crops_per_s is not None else measured,
        throughput_measured=crops_per_s is None,
        device=str(device),
        batch=batch,
        student=StudentRun.of(config),
    )


def sample_crops(
    source: ImageSource, spec: StoreSpec, count: int, max_pixels: int, device: torch.device
) -> Sample:
    """Up to ``count`` normalised crops: the first crops of the first decodable images."""
    cutter = CropCutter.for_store(spec, device)
    per_image = max(min(spec.crops_per_image, count), math.ceil(count / SAMPLE_MAX_IMAGES))
    parts: list[torch.Tensor] = []
    images = have = 0
    decode_seconds = 0.0
    for index in range(len(source)):
        if have >= count:
            break
        start = time.perf_counter()
        image, _ = decode_or_reason(source.path_of(index), max_pixels)
        decode_seconds += time.perf_counter() - start
        images += 1
        if image is None:
            continue
        height, width = image.shape[:2]
        boxes, flips = sample_image_boxes(spec.crops, index, height, width)
        take = min(per_image, spec.crops_per_image, count - have)
        crops = cutter.cut_boxes(image, boxes[:take], flips[:take], device)
        parts.append(crops)
        have += take
    if not parts:
        raise GenerateError(
            f"--plan: none of the first {images} images of {source.root} decodes; "
            "check DATA (fkd verify --data) before planning"
        )
    return Sample(torch.cat(parts), images, decode_seconds)


def teacher_throughput(
    teacher: LoadedTeacher,
    spec: StoreSpec,
    crops: torch.Tensor,
    batch: int,
    device: torch.device,
) -> tuple[float, dict[str, NDArray[Any]]]:
    """(crops/s of forward + softmax + encoding over ``crops``, their encoded labels)."""

    def one_pass() -> dict[str, NDArray[Any]]:
        parts = []
        for start in range(0, len(crops), batch):
            probs = teacher_probabilities(
                teacher, crops[start : start + batch], spec.codec.temperature, device
            )
            parts.append(encode_on_device(probs, spec.codec))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}

    encoded = one_pass()  # warm-up
    passes, start = 0, time.perf_counter()
    while passes < 1 or (
        time.perf_counter() - start < MIN_TIMED_SECONDS and passes < MAX_TIMED_PASSES
    ):
        one_pass()
        passes += 1
    return passes * len(crops) / (time.perf_counter() - start), encoded


def compressed_bytes(encoded: dict[str, NDArray[Any]]) -> int:
    """Bytes of the encoded label fields after the store's compressor (zstd, its level)."""
    from numcodecs import Zstd

    from fkd.storage_formats.zarr_store import COMPRESSION_LEVEL

    codec = Zstd(level=COMPRESSION_LEVEL)
    return sum(len(codec.encode(np.ascontiguousarray(values))) for values in encoded.values())


def per_image_bytes(spec: StoreSpec) -> int:
    """Uncompressed bytes per image of the per-image arrays (path, size, status, error...)."""
    per_image = [
        layout
        for layout in store_layout(spec).values()
        if layout.inner is None and layout.name != COMMIT_ARRAY  # per-crop arrays are sharded
    ]
    total = sum(int(np.prod(a.shape, dtype=np.int64)) * a.dtype.itemsize for a in per_image)
    return -(-total // spec.num_images)


def _usage(used: int, m: int) -> str:
    """How a run using ``used`` crops per image uses M = ``m`` stored ones (the schedule
    takes every crop once per cycle: ``fkd.crop_budget``)."""
    if used < m:
        return f"{used} of the {m} stored crops, each once"
    if used == m:
        return "each stored crop once"
    most = math.ceil(used / m)
    return f"each stored crop {used / m:.3g} times" + ("" if used % m == 0 else f", at most {most}")


def _size(nbytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if nbytes < 1000 or unit == "TB":
            return f"{nbytes:.1f} {unit}" if unit != "B" else f"{nbytes:.0f} B"
        nbytes /= 1000
    raise AssertionError("unreachable")


__all__ = ["GenerationPlan", "StudentRun", "plan_generation"]

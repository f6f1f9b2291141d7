"""The original FKD per-image label files, in and out (``fkd convert``).

FKD (Shen & Xing, 2022) writes one ``torch.save`` file per image at
``<root>/<class>/<image-stem>.tar`` holding ``[coords, flips, labels]``:

- ``coords``: ``(M, 4)`` crop boxes as fractions (top, left, height, width);
- ``flips``: ``(M,)`` booleans;
- ``labels``: ``(M, 2, K)`` [indices, values] for the top-K label types,
  ``(M, 2)`` [index, value] for ``smoothing``, ``(M,)`` indices for ``hard``;
  values (and, in FKD, indices too) are often float16.

Reading is safe: ``torch.load(weights_only=True)`` with only numpy's array
reconstruction functions added to the allowlist, so a file carrying any other
object is refused and never executed.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from fkd.exceptions import UserInputError
from fkd.storage_formats import (
    STATUS_OK,
    BlockData,
    CodecSpec,
    CropSpec,
    LabelStore,
    Manifest,
    StoreSpec,
    TeacherInfo,
)
from fkd.storage_formats.zarr_store import is_url

LEGACY_SUFFIX = ".tar"


class LegacyFormatError(UserInputError):
    """A legacy FKD file that is malformed, truncated or carries anything but arrays."""


def numpy_safe_globals() -> list[Any]:
    """numpy's array reconstruction, the only globals a legacy file may reference."""
    from numpy import dtypes

    kinds = (
        "Bool",
        "Float16",
        "Float32",
        "Float64",
        "Int8",
        "Int16",
        "Int32",
        "Int64",
        "UInt8",
        "UInt16",
        "UInt32",
        "UInt64",
    )
    from numpy._core.multiarray import _reconstruct

    return [
        _reconstruct,
        np.ndarray,
        np.dtype,
        *(getattr(dtypes, f"{kind}DType") for kind in kinds),
    ]


@dataclass(frozen=True)
class LegacyLabels:
    """One image's legacy file, as numpy arrays."""

    coords: NDArray[np.float64]
    flips: NDArray[np.bool_]
    index: NDArray[np.int64]
    value: NDArray[np.float32] | None


def load_legacy_file(path: Path) -> LegacyLabels:
    """Read one FKD file safely; refuse anything that is not three arrays of the right shapes."""
    try:
        with torch.serialization.safe_globals(numpy_safe_globals()):
            content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = str(exc).splitlines()[0][:200]
        raise LegacyFormatError(
            f"{path}: not a safe FKD label file ({type(exc).__name__}: {reason})"
        ) from None
    if not isinstance(content, (list, tuple)) or len(content) != 3:
        raise LegacyFormatError(f"{path}: expected [coords, flips, labels], got {type(content)}")
    coords, flips, labels = (as_numpy(part) for part in content)
    m = coords.shape[0] if coords.ndim == 2 else -1
    if coords.shape != (m, 4) or flips.shape != (m,) or labels.shape[:1] != (m,):
        raise LegacyFormatError(
            f"{path}: inconsistent shapes coords {coords.shape}, flips "
            f"{flips.shape}, labels {labels.shape}"
        )
    index, value = split_labels(labels, path)
    return LegacyLabels(coords.astype(np.float64), flips.astype(bool), index, value)


def as_numpy(part: Any) -> NDArray[Any]:
    if isinstance(part, torch.Tensor):
        return part.detach().cpu().float().numpy() if part.dtype == torch.bfloat16 else part.numpy()
    return np.asarray(part)


def split_labels(labels: NDArray[Any], path: Path) -> tuple[NDArray[np.int64], NDArray[Any] | None]:
    """Indices and values from the three legacy label shapes."""
    if labels.ndim == 1:  # hard: (M,)
        index, value = labels, None
    elif labels.ndim in (2, 3) and labels.shape[1] == 2:  # smoothing (M, 2), top-K (M, 2, K)
        index, value = labels[:, 0], labels[:, 1]
    else:
        raise LegacyFormatError(
            f"{path}: labels of shape {labels.shape} are none of (M,), (M, 2) or (M, 2, K)"
        )
    index = np.asarray(index, dtype=np.float64)
    if not np.isfinite(index).all() or (index < 0).any() or (index != np.round(index)).any():
        raise LegacyFormatError(f"{path}: label indices are not whole non-negative numbers")
    values = None if value is None else np.asarray(value, dtype=np.float32)
    if values is not None and not np.isfinite(values).all():
        raise LegacyFormatError(f"{path}: label values hold NaN or infinity")
    return index.astype(np.int64), values


def legacy_files(source: Path) -> list[Path]:
    """``<class>/<stem>.tar`` files under ``source``, sorted."""
    if not source.is_dir():
        raise LegacyFormatError(f"{source}: no such folder of FKD label files")
    files = sorted(source.glob(f"*/*{LEGACY_SUFFIX}"))
    if not files:
        raise LegacyFormatError(f"{source}: no <class>/<stem>{LEGACY_SUFFIX} files found")
    return files


def codec_for(
    sample: LegacyLabels, num_classes: int, label_type: str | None, value_dtype: str
) -> CodecSpec:
    """The codec that stores what the legacy files hold (a top-K file keeps its K)."""
    if sample.value is None:
        return CodecSpec("hard", num_classes)
    if sample.index.ndim == 1:
        return CodecSpec("smoothing", num_classes, value_dtype=value_dtype)
    name = label_type or "marginal_smoothing"
    return CodecSpec(name, num_classes, k=sample.index.shape[1], value_dtype=value_dtype)


@dataclass(frozen=True)
class ImportPlan:
    files: list[Path]
    manifest: Manifest
    heights: NDArray[np.uint32]
    widths: NDArray[np.uint32]


def plan_import(source: Path, data: Path | None) -> ImportPlan:
    """Match every legacy file to its image (``--data``), or name it ``<class>/<stem>.JPEG``."""
    files = legacy_files(source)
    classes = sorted({f.parent.name for f in files})
    targets = [classes.index(f.parent.name) for f in files]
    if data is None:
        paths = [f"{f.parent.name}/{f.stem}.JPEG" for f in files]
        zeros = np.zeros(len(files), dtype=np.uint32)
        return ImportPlan(files, Manifest.build(paths, [0] * len(files), targets), zeros, zeros)
    images = {(p.parent.name, p.stem): p for p in data.glob("*/*") if p.is_file()}
    missing = [f for f in files if (f.parent.name, f.stem) not in images]
    if missing:
        raise LegacyFormatError(
            f"{len(missing)} label files have no image under {data}, "
            f"e.g. {missing[0].relative_to(source)}"
        )
    matched = [images[(f.parent.name, f.stem)] for f in files]
    sizes = [image_size(p) for p in matched]
    manifest = Manifest.build(
        [p.relative_to(data).as_posix() for p in matched],
        [p.stat().st_size for p in matched],
        targets,
    )
    return ImportPlan(
        files,
        manifest,
        np.array([s[0] for s in sizes], np.uint32),
        np.array([s[1] for s in sizes], np.uint32),
    )


def image_size(path: Path) -> tuple[int, int]:
    from PIL import Image, ImageOps

    with Image.open(path) as image:
        transposed = (
            ImageOps.exif_transpose(image) if image.getexif().get(0x0112, 1) != 1 else image
        )
        return transposed.height, transposed.width


def import_legacy(
    source: Path,
    out: str,
    data: Path | None,
    num_classes: int,
    label_type: str | None = None,
    value_dtype: str = "float16",
    block_size: int = 256,
    overwrite: bool = False,
) -> LabelStore:
    """Convert a folder of FKD files into a store (boxes kept on the 16-bit grid)."""
    plan = plan_import(source, data)
    first = load_legacy_file(plan.files[0])
    spec = StoreSpec(
        num_images=len(plan.files),
        codec=codec_for(first, num_classes, label_type, value_dtype),
        crops=CropSpec(crops_per_image=first.coords.shape[0], sampler="stored"),
        teacher=TeacherInfo("fkd-legacy", input_size=224),
        manifest_digest=plan.manifest.digest(),
        block_size=block_size,
        max_path_bytes=max(plan.manifest.max_path_bytes, 16),
    )
    store = LabelStore.create(out, spec, plan.manifest, overwrite=overwrite)
    try:
        for block in range(spec.num_blocks):
            start, stop = spec.block_range(block)
            store.write_block(block, block_from_files(store, plan, start, stop))
    except BaseException:
        if not is_url(out):  # leave nothing half-converted behind
            shutil.rmtree(out, ignore_errors=True)
        raise
    return store


def block_from_files(store: LabelStore, plan: ImportPlan, start: int, stop: int) -> BlockData:
    entries = [load_legacy_file(f) for f in plan.files[start:stop]]
    m = store.spec.crops_per_image
    for entry, path in zip(entries, plan.files[start:stop], strict=True):
        if entry.coords.shape[0] != m:
            raise LegacyFormatError(
                f"{path}: {entry.coords.shape[0]} crops, but the first "
                f"file has {m}; all files must have the same M"
            )
    labels = stored_labels(store, entries)
    count = stop - start
    return BlockData(
        height=plan.heights[start:stop],
        width=plan.widths[start:stop],
        status=np.full(count, STATUS_OK, dtype=np.uint8),
        errors=[""] * count,
        labels=labels,
        boxes=np.stack([e.coords for e in entries]),
        flips=np.stack([e.flips for e in entries]),
    )


def stored_labels(store: LabelStore, entries: Sequence[LegacyLabels]) -> dict[str, NDArray[Any]]:
    from fkd.storage_formats.label_codecs import quantize_values

    codec = store.codec
    labels: dict[str, NDArray[Any]] = {}
    for field in codec.fields():
        if field.name == "index":
            stacked = np.stack([e.index for e in entries])
            if stacked.size and int(stacked.max()) >= codec.num_classes:
                raise LegacyFormatError(
                    f"label index {int(stacked.max())} >= --num-classes {codec.num_classes}"
                )
            labels["index"] = stacked.astype(field.dtype)
        else:
            values = np.stack([e.value for e in entries if e.value is not None])
            labels["value"] = quantize_values(values, codec.spec.value_dtype)
    return labels


def export_legacy(store: LabelStore, out: Path) -> Iterator[Path]:
    """Write one FKD file per ok image; yields the paths written."""
    paths = store.manifest.paths
    for block in range(store.num_blocks):
        start, stop = store.block_range(block)
        batch = store.read_images(np.arange(start, stop))
        for row, image in enumerate(range(start, stop)):
            if batch.status[row] != STATUS_OK:
                continue
            target = legacy_path(out, paths[image])
            target.parent.mkdir(parents=True, exist_ok=True)
            labels = {name: values[row] for name, values in batch.labels.items()}
            torch.save(legacy_content(store, batch.boxes[row], batch.flips[row], labels), target)
            yield target


def legacy_path(out: Path, image_path: str) -> Path:
    relative = Path(image_path)
    return out / relative.parent.name / f"{relative.stem}{LEGACY_SUFFIX}"


def legacy_content(
    store: LabelStore, boxes: NDArray[Any], flips: NDArray[Any], labels: dict[str, NDArray[Any]]
) -> list[torch.Tensor]:
    """[coords float32 (M,4), flips bool (M,), labels float32 in FKD's shapes]."""
    from fkd.storage_formats.label_codecs import dequantize_values

    coords = torch.from_numpy(np.asarray(boxes, dtype=np.float32))
    flip = torch.from_numpy(np.asarray(flips, dtype=bool))
    index = torch.from_numpy(labels["index"].astype(np.float32)) if "index" in labels else None
    if "value" not in labels:
        assert index is not None
        return [coords, flip, index]
    value = torch.from_numpy(dequantize_values(labels["value"], store.spec.codec.value_dtype))
    if index is None:
        raise LegacyFormatError("the 'full' codec has no FKD file form; export top-K stores")
    return [coords, flip, torch.stack([index, value], dim=1)]

"""Import: legacy FKD label files into a new store (``fkd convert --from fkd-legacy``).

A plan matches each file to its image by FKD's own lookup rule; the codec follows
what the first file holds; boxes are kept on the 16-bit grid (``sampler="stored"``).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fkd.storage_formats.block_commit import BlockData
from fkd.storage_formats.label_codecs import quantize_values
from fkd.storage_formats.label_store import LabelStore
from fkd.storage_formats.layout import STATUS_OK
from fkd.storage_formats.legacy_fkd import (
    FKD_SPLIT,
    LegacyFormatError,
    LegacyLabels,
    LoadLegacy,
    fkd_label_file,
)
from fkd.storage_formats.manifest import Manifest
from fkd.storage_formats.spec import CodecSpec, CropSpec, StoreSpec, TeacherInfo
from fkd.storage_formats.store_location import is_url


@dataclass(frozen=True)
class ImportPlan:
    files: list[Path]
    manifest: Manifest
    heights: NDArray[np.uint32]
    widths: NDArray[np.uint32]


def unmatched_plan(files: Sequence[Path]) -> ImportPlan:
    """Without the images: each file names an image ``<class>/<stem>.JPEG`` of unknown size."""
    classes = sorted({f.parent.name for f in files})
    targets = [classes.index(f.parent.name) for f in files]
    paths = [f"{f.parent.name}/{f.stem}.JPEG" for f in files]
    zeros = np.zeros(len(files), dtype=np.uint32)
    return ImportPlan(list(files), Manifest.build(paths, [0] * len(files), targets), zeros, zeros)


def matched_plan(
    files: Sequence[Path], images: Manifest, rows: Sequence[int], sizes: Sequence[tuple[int, int]]
) -> ImportPlan:
    """Each file with its image: row ``rows[i]`` of ``images``, of (height, width) ``sizes[i]``."""
    manifest = Manifest.build(
        [images.paths[row] for row in rows],
        [int(images.nbytes[row]) for row in rows],
        [int(images.targets[row]) for row in rows],
    )
    return ImportPlan(
        list(files),
        manifest,
        np.array([s[0] for s in sizes], np.uint32),
        np.array([s[1] for s in sizes], np.uint32),
    )


def matching_rows(files: Sequence[Path], root: Path, paths: Sequence[str]) -> list[int]:
    """The image (row of ``paths``, relative to ``root``) each legacy file labels."""
    candidates = image_candidates(files, root, paths)
    return [matching_image(f, root, paths, c) for f, c in zip(files, candidates, strict=True)]


def image_candidates(files: Sequence[Path], root: Path, paths: Sequence[str]) -> list[list[int]]:
    """For each legacy file, the images whose FKD label file it is; refuses unmatched files."""
    by_file: dict[str, list[int]] = {}
    for row, path in enumerate(paths):
        by_file.setdefault(fkd_label_file(path), []).append(row)
    found = [by_file.get(f"{FKD_SPLIT}/{f.parent.name}/{f.name}", []) for f in files]
    missing = [f for f, rows in zip(files, found, strict=True) if not rows]
    if missing:
        raise LegacyFormatError(
            f"{len(missing)} label files have no image under {root}, e.g. "
            f"{missing[0].parent.name}/{missing[0].name}; pass the image folder the labels "
            "were made from as --data, or convert without --data"
        )
    return found


def matching_image(file: Path, root: Path, paths: Sequence[str], rows: Sequence[int]) -> int:
    """The one image ``file`` labels, or an error naming the images it cannot tell apart."""
    if len(rows) > 1:
        first, second = (paths[row] for row in rows[:2])
        raise LegacyFormatError(
            f"{file.parent.name}/{file.name} could label {first} or {second} under "
            f"{root} (FKD finds labels by class folder and file name up to its first "
            "'.'); rename or remove one of them"
        )
    return rows[0]


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


def legacy_store_spec(
    plan: ImportPlan,
    first: LegacyLabels,
    num_classes: int,
    label_type: str | None,
    value_dtype: str,
    block_size: int,
) -> StoreSpec:
    """The spec of the store the planned files make, from what the ``first`` file holds."""
    return StoreSpec(
        **plan.manifest.spec_fields(),
        codec=codec_for(first, num_classes, label_type, value_dtype),
        crops=CropSpec(crops_per_image=first.coords.shape[0], sampler="stored"),
        teacher=TeacherInfo("fkd-legacy", input_size=224),
        block_size=block_size,
    )


def write_legacy_store(
    plan: ImportPlan, spec: StoreSpec, out: str, load: LoadLegacy, overwrite: bool
) -> LabelStore:
    """Write the planned files into a new store at ``out``; a failure leaves nothing there."""
    store = LabelStore.create(out, spec, plan.manifest, overwrite=overwrite)
    try:
        for block in range(spec.num_blocks):
            start, stop = spec.block_range(block)
            entries = [load(f) for f in plan.files[start:stop]]
            store.write_block(block, block_from_files(store, plan, start, stop, entries))
    except BaseException:
        if not is_url(out):  # leave nothing half-converted behind
            shutil.rmtree(out, ignore_errors=True)
        raise
    return store


def block_from_files(
    store: LabelStore, plan: ImportPlan, start: int, stop: int, entries: Sequence[LegacyLabels]
) -> BlockData:
    """The block of images ``[start, stop)`` from their files' ``entries``."""
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

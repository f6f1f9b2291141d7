"""The original FKD per-image label files, in and out (``fkd convert``).

FKD (Shen & Xing, 2022) writes one ``torch.save`` file per image at
``<root>/<split>/<class>/<image-stem>.tar`` holding ``[coords, flips, labels]``:

- ``coords``: ``(M, 4)`` crop boxes as fractions (top, left, height, width);
- ``flips``: ``(M,)`` booleans;
- ``labels``: ``(M, 2, K)`` [indices, values] for the top-K label types,
  ``(M, 2)`` [index, value] for ``smoothing``, ``(M,)`` indices for ``hard``;
  values (and, in FKD, indices too) are often float16.

Reading is safe: ``torch.load(weights_only=True)`` with only numpy's array
reconstruction functions added to the allowlist, so a file carrying any other
object is refused and never executed.

Where FKD looks (``ImageFolder_FKD`` in FKD's ``utils_FKD.py``): ``train_FKD.py
DATA`` lists ``DATA/train`` with torchvision's ``ImageFolder`` and loads the
labels of image ``path`` from ``os.path.join(softlabel_path,
'/'.join(path.split('/')[-3:]).split('.')[0] + '.tar')``: the image path's last
three components (``train/<class>/<file>``), cut at their first '.'.  So an
export is written at ``OUT/train/<class>/<stem>.tar`` (``fkd_label_file``), and
two images whose names agree up to their first '.' in one class folder
(``x.jpg`` and ``x.png``) cannot both be labelled: the export refuses them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from fkd.exceptions import UserInputError
from fkd.images import ImageSource, image_folder_root, scan_source
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
FKD_SPLIT = "train"
"""The folder FKD's ``train_FKD.py`` reads (``DATA/train``), first in its label paths."""


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
    """``<class>/<stem>.tar`` files under ``source/train`` (when that is a folder, the rule
    DATA follows) or ``source``, sorted."""
    if not source.is_dir():
        raise LegacyFormatError(f"{source}: no such folder of FKD label files")
    files = sorted(image_folder_root(source).glob(f"*/*{LEGACY_SUFFIX}"))
    if not files:
        raise LegacyFormatError(
            f"{source}: no <class>/<stem>{LEGACY_SUFFIX} files found in it or in its "
            f"{FKD_SPLIT}/ folder"
        )
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
    """Match every legacy file to its image (``--data``), or name it ``<class>/<stem>.JPEG``.

    DATA is scanned as ``fkd generate`` scans it (``DATA/train`` when that is a folder), and
    a file ``<class>/<stem>.tar`` labels the image FKD's training script would load it for.
    """
    files = legacy_files(source)
    if data is None:
        classes = sorted({f.parent.name for f in files})
        targets = [classes.index(f.parent.name) for f in files]
        paths = [f"{f.parent.name}/{f.stem}.JPEG" for f in files]
        zeros = np.zeros(len(files), dtype=np.uint32)
        return ImportPlan(files, Manifest.build(paths, [0] * len(files), targets), zeros, zeros)
    images = scan_source(data)
    candidates = image_candidates(files, images)
    rows = [matching_image(f, images, c) for f, c in zip(files, candidates, strict=True)]
    sizes = [image_size(images.path_of(row)) for row in rows]
    manifest = Manifest.build(
        [images.manifest.paths[row] for row in rows],
        [int(images.manifest.nbytes[row]) for row in rows],
        [int(images.manifest.targets[row]) for row in rows],
    )
    return ImportPlan(
        files,
        manifest,
        np.array([s[0] for s in sizes], np.uint32),
        np.array([s[1] for s in sizes], np.uint32),
    )


def image_candidates(files: Sequence[Path], images: ImageSource) -> list[list[int]]:
    """For each legacy file, the images whose FKD label file it is; refuses unmatched files."""
    by_file: dict[str, list[int]] = {}
    for row, path in enumerate(images.manifest.paths):
        by_file.setdefault(fkd_label_file(path), []).append(row)
    found = [by_file.get(f"{FKD_SPLIT}/{f.parent.name}/{f.name}", []) for f in files]
    missing = [f for f, rows in zip(files, found, strict=True) if not rows]
    if missing:
        raise LegacyFormatError(
            f"{len(missing)} label files have no image under {images.root}, e.g. "
            f"{missing[0].parent.name}/{missing[0].name}; pass the image folder the labels "
            "were made from as --data, or convert without --data"
        )
    return found


def matching_image(file: Path, images: ImageSource, rows: Sequence[int]) -> int:
    """The one image ``file`` labels, or an error naming the images it cannot tell apart."""
    if len(rows) > 1:
        first, second = (images.manifest.paths[row] for row in rows[:2])
        raise LegacyFormatError(
            f"{file.parent.name}/{file.name} could label {first} or {second} under "
            f"{images.root} (FKD finds labels by class folder and file name up to its first "
            "'.'); rename or remove one of them"
        )
    return rows[0]


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) as decoded (EXIF orientation applied), read from the header."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as image:
            transposed = (
                ImageOps.exif_transpose(image) if image.getexif().get(0x0112, 1) != 1 else image
            )
            return transposed.height, transposed.width
    except Exception as exc:
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise LegacyFormatError(
            f"{path}: cannot read the image's size ({reason}); fix or remove the image, or "
            "convert without --data"
        ) from None


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
        **plan.manifest.spec_fields(),
        codec=codec_for(first, num_classes, label_type, value_dtype),
        crops=CropSpec(crops_per_image=first.coords.shape[0], sampler="stored"),
        teacher=TeacherInfo("fkd-legacy", input_size=224),
        block_size=block_size,
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


def export_legacy(
    store: LabelStore, out: Path, split: str = FKD_SPLIT, overwrite: bool = False
) -> int:
    """Write one FKD file per ok image at ``out/<split>/<class>/<stem>.tar``; the count.

    Refused before anything is written: two images with one FKD label file, a
    non-empty ``out`` without ``overwrite``, and (with it) an ``out`` holding anything
    but FKD label files.  The files are written into a staging folder beside ``out``
    and renamed into place, so ``out`` holds one whole export, the old or the new.
    """
    check_split(split)
    label_files = fkd_label_files(store.manifest.paths, split)
    if "index" not in {field.name for field in store.codec.fields()}:
        raise LegacyFormatError("the 'full' codec has no FKD file form; export top-K stores")
    out = Path(os.path.abspath(out))
    check_export_target(out, overwrite)
    staging = out.parent / f".{out.name}.converting-{os.getpid()}"
    out.parent.mkdir(parents=True, exist_ok=True)
    staging.mkdir()
    try:
        written = write_legacy_files(store, staging, label_files)
        replace_folder(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return written


def write_legacy_files(store: LabelStore, folder: Path, label_files: Sequence[str]) -> int:
    """Every ok image's file under ``folder``, block by block; the number written."""
    written = 0
    for block in range(store.num_blocks):
        start, stop = store.block_range(block)
        batch = store.read_images(np.arange(start, stop))
        for row, image in enumerate(range(start, stop)):
            if batch.status[row] != STATUS_OK:
                continue
            target = folder / label_files[image]
            target.parent.mkdir(parents=True, exist_ok=True)
            labels = {name: values[row] for name, values in batch.labels.items()}
            torch.save(legacy_content(store, batch.boxes[row], batch.flips[row], labels), target)
            written += 1
    return written


def check_split(split: str) -> None:
    """A split is one folder name without '.' (FKD cuts label paths at their first '.')."""
    if not split or "/" in split or "\\" in split or "." in split:
        raise UserInputError(
            f"split folder {split!r} must be one folder name without '/' or '.' (FKD cuts "
            f"label paths at their first '.'); FKD's train_FKD.py reads {FKD_SPLIT!r}"
        )


def fkd_label_file(image_path: str, split: str = FKD_SPLIT) -> str:
    """The label file, relative to ``--softlabel_path``, that FKD's ``train_FKD.py`` loads
    for the image at ``DATA/<split>/<image_path>``: the last three path components, cut at
    their first '.', plus ``.tar`` (``ImageFolder_FKD.__getitem__`` in FKD's utils_FKD.py)."""
    return "/".join([split, *image_path.split("/")][-3:]).split(".")[0] + LEGACY_SUFFIX


def legacy_path(out: Path, image_path: str, split: str = FKD_SPLIT) -> Path:
    """Where ``export_legacy`` writes the labels of ``image_path`` (a manifest path)."""
    return out / fkd_label_file(image_path, split)


def fkd_label_files(paths: Sequence[str], split: str = FKD_SPLIT) -> list[str]:
    """Each image's FKD label file; two images with one file are an error naming both."""
    files = [fkd_label_file(path, split) for path in paths]
    first: dict[str, str] = {}
    for path, file in zip(paths, files, strict=True):
        other = first.setdefault(file, path)
        if other != path:
            raise LegacyFormatError(
                f"images {other} and {path} would share the FKD label file {file} (FKD's "
                "train_FKD.py finds labels by class folder and file name up to its first "
                "'.', so it cannot tell them apart); rename one of them and generate its "
                "store again; nothing was written"
            )
    return files


def check_export_target(out: Path, overwrite: bool) -> None:
    """``out`` is absent or empty; or, with ``overwrite``, a folder of FKD label files only."""
    if not out.exists() and not out.is_symlink():
        return
    if not out.is_dir() or out.is_symlink():
        raise LegacyFormatError(
            f"--out {out} exists and is a link or not a folder; choose another --out"
        )
    if not any(out.iterdir()):
        return
    if not overwrite:
        raise LegacyFormatError(
            f"--out {out} is not empty; pass --overwrite to replace the FKD label files "
            "there with this export, or choose an empty or new folder"
        )
    stranger = first_non_label_file(out)
    if stranger is not None:
        raise LegacyFormatError(
            f"--out {out} holds {stranger.relative_to(out)}, which is not an FKD label "
            f"file (*{LEGACY_SUFFIX}); --overwrite replaces only a folder of FKD label "
            "files: choose another --out"
        )


def first_non_label_file(folder: Path) -> Path | None:
    """The first entry below ``folder`` that is neither a folder nor a ``*.tar`` file."""
    for parent, folders, names in os.walk(folder):
        for name in folders:
            if Path(parent, name).is_symlink():
                return Path(parent, name)
        for name in names:
            path = Path(parent, name)
            if path.is_symlink() or not name.endswith(LEGACY_SUFFIX) or not path.is_file():
                return path
    return None


def replace_folder(staging: Path, out: Path) -> None:
    """Rename ``staging`` to ``out``; an existing ``out`` is moved aside first, then deleted."""
    if not out.exists() or not any(out.iterdir()):
        os.replace(staging, out)  # onto an empty folder, or nothing: one rename
        return
    old = out.parent / f".{out.name}.replaced-{os.getpid()}"
    os.rename(out, old)
    try:
        os.rename(staging, out)
    except BaseException:
        os.rename(old, out)
        raise
    shutil.rmtree(old)


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

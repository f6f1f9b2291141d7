"""``fkd convert`` to and from the original FKD label files: the torch side.

FKD's files are ``torch.save`` pickles, so reading and writing them needs torch;
everything else about the format lives torch-free in ``fkd.storage_formats``
(``legacy_fkd``: where the files lie and what they hold; ``legacy_import``;
``legacy_export``).  This module reads a file safely, writes one, and matches the
files to an image folder (``--data``).

Reading is safe: ``torch.load(weights_only=True)`` with only numpy's array
reconstruction functions added to the allowlist, so a file carrying any other
object is refused and never executed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from fkd.images import scan_source
from fkd.storage_formats import LabelStore
from fkd.storage_formats.legacy_export import export_legacy_files
from fkd.storage_formats.legacy_fkd import (
    FKD_SPLIT,
    LegacyFormatError,
    LegacyLabels,
    legacy_files,
    legacy_labels,
)
from fkd.storage_formats.legacy_import import (
    ImportPlan,
    legacy_store_spec,
    matched_plan,
    matching_rows,
    unmatched_plan,
    write_legacy_store,
)
from fkd.weights import WeightsFileError, load_weights_only


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


def load_legacy_file(path: Path) -> LegacyLabels:
    """Read one FKD file safely; refuse anything that is not three arrays of the right shapes."""
    try:
        content = load_weights_only(path, allowed=numpy_safe_globals())
    except WeightsFileError as exc:
        raise LegacyFormatError(f"{path}: not a safe FKD label file ({exc.reason})") from None
    if isinstance(content, (list, tuple)) and len(content) == 3:
        content = [as_numpy(part) for part in content]
    return legacy_labels(content, path)


def as_numpy(part: Any) -> NDArray[Any]:
    if isinstance(part, torch.Tensor):
        return part.detach().cpu().float().numpy() if part.dtype == torch.bfloat16 else part.numpy()
    return np.asarray(part)


def save_legacy_file(content: list[NDArray[Any]], path: Path) -> None:
    """Write one FKD file: ``content`` as a list of tensors, with ``torch.save``."""
    torch.save([torch.from_numpy(part) for part in content], path)


def plan_import(source: Path, data: Path | None) -> ImportPlan:
    """Match every legacy file to its image (``--data``), or name it ``<class>/<stem>.JPEG``.

    DATA is scanned as ``fkd generate`` scans it (``DATA/train`` when that is a folder), and
    a file ``<class>/<stem>.tar`` labels the image FKD's training script would load it for.
    """
    files = legacy_files(source)
    if data is None:
        return unmatched_plan(files)
    images = scan_source(data)
    rows = matching_rows(files, images.root, images.manifest.paths)
    sizes = [image_size(images.path_of(row)) for row in rows]
    return matched_plan(files, images.manifest, rows, sizes)


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
    spec = legacy_store_spec(plan, first, num_classes, label_type, value_dtype, block_size)
    return write_legacy_store(plan, spec, out, load_legacy_file, overwrite)


def export_legacy(
    store: LabelStore, out: Path, split: str = FKD_SPLIT, overwrite: bool = False
) -> int:
    """Write one FKD file per ok image at ``out/<split>/<class>/<stem>.tar``; the count
    (see ``fkd.storage_formats.legacy_export.export_legacy_files``)."""
    return export_legacy_files(store, out, save_legacy_file, split, overwrite)

"""The original FKD per-image label format: where its files lie and what they hold.

FKD (Shen & Xing, 2022) writes one ``torch.save`` file per image at
``<root>/<split>/<class>/<image-stem>.tar`` holding ``[coords, flips, labels]``:

- ``coords``: ``(M, 4)`` crop boxes as fractions (top, left, height, width);
- ``flips``: ``(M,)`` booleans;
- ``labels``: ``(M, 2, K)`` [indices, values] for the top-K label types,
  ``(M, 2)`` [index, value] for ``smoothing``, ``(M,)`` indices for ``hard``;
  values (and, in FKD, indices too) are often float16.

Where FKD looks (``ImageFolder_FKD`` in FKD's ``utils_FKD.py``): ``train_FKD.py
DATA`` lists ``DATA/train`` with torchvision's ``ImageFolder`` and loads the
labels of image ``path`` from ``os.path.join(softlabel_path,
'/'.join(path.split('/')[-3:]).split('.')[0] + '.tar')``: the image path's last
three components (``train/<class>/<file>``), cut at their first '.'.  So an
export is written at ``OUT/train/<class>/<stem>.tar`` (``fkd_label_file``), and
two images whose names agree up to their first '.' in one class folder
(``x.jpg`` and ``x.png``) cannot both be labelled: the export refuses them.

This module, ``legacy_import`` and ``legacy_export`` work on numpy arrays.  The
files themselves are torch pickles, so the caller reads and writes them
(``LoadLegacy``, ``SaveLegacy``): ``fkd.legacy_fkd_convert`` does, safely
(``torch.load(weights_only=True)``, numpy arrays only).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fkd.exceptions import UserInputError
from fkd.storage_formats.label_codecs import dequantize_values

LEGACY_SUFFIX = ".tar"
FKD_SPLIT = "train"
"""The folder FKD's ``train_FKD.py`` reads (``DATA/train``), first in its label paths."""


class LegacyFormatError(UserInputError):
    """A legacy FKD file that is malformed, truncated or carries anything but arrays."""


@dataclass(frozen=True)
class LegacyLabels:
    """One image's legacy file, as numpy arrays."""

    coords: NDArray[np.float64]
    flips: NDArray[np.bool_]
    index: NDArray[np.int64]
    value: NDArray[np.float32] | None


LoadLegacy = Callable[[Path], LegacyLabels]
"""Reads one legacy file (``fkd.legacy_fkd_convert.load_legacy_file``)."""

SaveLegacy = Callable[[list[NDArray[Any]], Path], None]
"""Writes one file's ``[coords, flips, labels]`` (``fkd.legacy_fkd_convert.save_legacy_file``)."""


def legacy_labels(content: Any, path: Path) -> LegacyLabels:
    """A file's content (``[coords, flips, labels]`` as numpy arrays) checked; anything else
    is refused, naming ``path``."""
    if not isinstance(content, (list, tuple)) or len(content) != 3:
        raise LegacyFormatError(f"{path}: expected [coords, flips, labels], got {type(content)}")
    coords, flips, labels = (np.asarray(part) for part in content)
    m = coords.shape[0] if coords.ndim == 2 else -1
    if coords.shape != (m, 4) or flips.shape != (m,) or labels.shape[:1] != (m,):
        raise LegacyFormatError(
            f"{path}: inconsistent shapes coords {coords.shape}, flips "
            f"{flips.shape}, labels {labels.shape}"
        )
    index, value = split_labels(labels, path)
    return LegacyLabels(coords.astype(np.float64), flips.astype(bool), index, value)


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


def legacy_content(
    boxes: NDArray[Any], flips: NDArray[Any], labels: dict[str, NDArray[Any]], value_dtype: str
) -> list[NDArray[Any]]:
    """One image's file content from its stored crops: [coords float32 (M,4), flips bool (M,),
    labels float32 in FKD's shapes]."""
    coords = np.asarray(boxes, dtype=np.float32)
    flip = np.asarray(flips, dtype=bool)
    index = labels["index"].astype(np.float32) if "index" in labels else None
    if "value" not in labels:
        assert index is not None
        return [coords, flip, index]
    value = dequantize_values(labels["value"], value_dtype)
    if index is None:
        raise LegacyFormatError("the 'full' codec has no FKD file form; export top-K stores")
    return [coords, flip, np.stack([index, value], axis=1)]


def legacy_files(source: Path) -> list[Path]:
    """``<class>/<stem>.tar`` files under ``source/train`` (when that is a folder, the rule
    DATA follows) or ``source``, sorted."""
    if not source.is_dir():
        raise LegacyFormatError(f"{source}: no such folder of FKD label files")
    split = source / FKD_SPLIT
    files = sorted((split if split.is_dir() else source).glob(f"*/*{LEGACY_SUFFIX}"))
    if not files:
        raise LegacyFormatError(
            f"{source}: no <class>/<stem>{LEGACY_SUFFIX} files found in it or in its "
            f"{FKD_SPLIT}/ folder"
        )
    return files


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
    """Where an export writes the labels of ``image_path`` (a manifest path)."""
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

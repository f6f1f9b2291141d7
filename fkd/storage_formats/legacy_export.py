"""Export: a store out to legacy FKD label files (``fkd convert --to fkd-legacy``).

An export is whole or absent: staged beside ``out``, then renamed into place.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fkd.storage_formats.label_store import LabelStore
from fkd.storage_formats.layout import STATUS_OK
from fkd.storage_formats.legacy_fkd import (
    FKD_SPLIT,
    LEGACY_SUFFIX,
    LegacyFormatError,
    SaveLegacy,
    check_split,
    fkd_label_files,
    legacy_content,
)


def export_legacy_files(
    store: LabelStore,
    out: Path,
    save: SaveLegacy,
    split: str = FKD_SPLIT,
    overwrite: bool = False,
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
        written = write_legacy_files(store, staging, label_files, save)
        replace_folder(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return written


def write_legacy_files(
    store: LabelStore, folder: Path, label_files: Sequence[str], save: SaveLegacy
) -> int:
    """Every ok image's file under ``folder``, block by block; the number written."""
    written = 0
    value_dtype = store.spec.codec.value_dtype
    for block in range(store.num_blocks):
        start, stop = store.block_range(block)
        batch = store.read_images(np.arange(start, stop))
        for row, image in enumerate(range(start, stop)):
            if batch.status[row] != STATUS_OK:
                continue
            target = folder / label_files[image]
            target.parent.mkdir(parents=True, exist_ok=True)
            labels = {name: values[row] for name, values in batch.labels.items()}
            save(legacy_content(batch.boxes[row], batch.flips[row], labels, value_dtype), target)
            written += 1
    return written


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

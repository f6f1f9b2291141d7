"""A local store seen as files on disk: a block's chunk files, their digest, commit markers,
the leftovers of killed writes, and an array-by-array comparison of two stores."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def block_arrays(store: Path) -> list[str]:
    """The arrays of a local store that a block's writer writes, one chunk (or shard) each."""
    from fkd.storage_formats import StoreSpec
    from fkd.storage_formats.layout import block_arrays as written_per_block
    from fkd.storage_formats.layout import store_layout

    spec = StoreSpec.from_dict(json.loads((store / "zarr.json").read_bytes())["attributes"]["fkd"])
    return sorted(a.name for a in written_per_block(store_layout(spec)))


def chunk_files(store: Path, name: str, block: int) -> list[Path]:
    """The chunk files of array ``name`` for ``block``: the finished files of its folder
    (not ``*.partial`` temporaries), or its one chunk file, present or not."""
    folder = store / name / "c" / str(block)
    if folder.is_dir():
        return sorted(p for p in folder.rglob("*") if p.is_file() and p.name.isdigit())
    return [folder]


def block_files(store: Path, block: int) -> list[Path]:
    """The chunk files of ``block`` (every array but the commit markers), present or not."""
    return [path for name in block_arrays(store) for path in chunk_files(store, name, block)]


def block_digest(store: Path, block: int) -> str | None:
    """sha256 over the names and bytes of a block's chunk files; ``None`` if one is missing."""
    digest = hashlib.sha256()
    for path in block_files(store, block):
        if not path.is_file():
            return None
        digest.update(str(path.relative_to(store)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def committed(store: Path) -> set[int]:
    """Blocks whose commit marker file exists (fkd writes a marker only to commit); none
    when the store does not exist."""
    folder = store / "block_commit" / "c"
    if not folder.is_dir():
        return set()
    return {int(p.name) for p in folder.iterdir() if p.name.isdigit()}


def written_bytes(store: Path, block: int, create_arrays: Sequence[str]) -> tuple[int, int, int]:
    """(files, bytes, expected files) of the block-written chunk files of ``block`` on disk."""
    files = nbytes = expected = 0
    for name in block_arrays(store):
        if name in create_arrays:
            continue
        expected += 1
        for path in chunk_files(store, name, block):
            if path.is_file():
                files += 1
                nbytes += path.stat().st_size
    return files, nbytes, expected


def debris(root: Path) -> tuple[int, int]:
    """(count, bytes) of leftovers of killed writes under ``root``: zarr's ``*.partial``
    temporary files and fkd's ``.NAME.creating-PID`` staging folders."""
    count = nbytes = 0
    for path in root.rglob("*"):
        if path.name.endswith(".partial") and path.is_file():
            count += 1
            nbytes += path.stat().st_size
        elif ".creating-" in path.name and path.is_dir():
            count += 1
            nbytes += sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return count, nbytes


def arrays_equal(a: Path, b: Path) -> list[str]:
    """Names of the arrays whose values (or dtypes) differ between two stores."""
    from fkd.storage_formats import LabelStore

    first, second = LabelStore.open(a), LabelStore.open(b)
    differing = []
    for name in first.layout:
        x, y = np.asarray(first.group[name][...]), np.asarray(second.group[name][...])
        if x.dtype != y.dtype or x.shape != y.shape or not np.array_equal(x, y):
            differing.append(name)
    return differing

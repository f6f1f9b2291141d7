"""A direct reader for the per-block chunks of a local, unsharded per-image array.

``image_status``, ``image_height`` and ``image_width`` hold one small chunk file per
block.  Reading them whole through zarr costs about 0.4 ms per chunk, so 1.8 s per
array at ImageNet-1K's 5,005 blocks and 20 s at ImageNet-21K's 55,000.  This reader
does what ``docs/format.md`` §3.1 says instead: read the file, check its crc32c,
check that the zstd frame declares exactly the chunk's size, and decode into a
buffer of that size (about 25 µs per chunk).  It serves only local stores whose
chain is exactly fkd's (bytes little-endian, zstd, crc32c); others go through zarr.
"""

from __future__ import annotations

import errno
import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import google_crc32c
import numcodecs
import numcodecs.zstd as zstd
import numpy as np
from numpy.typing import NDArray

from fkd.storage_formats.bounded_codecs import zstd_declared_size
from fkd.storage_formats.errors import CorruptChunkError, UnsafePathError, repair_advice
from fkd.storage_formats.layout import ArrayLayout

FKD_CHAIN = ["bytes", "zstd", "crc32c"]


def is_fkd_block_chain(doc: dict[str, Any]) -> bool:
    """True if an unsharded array's zarr.json uses exactly fkd's chain."""
    codecs = doc.get("codecs")
    if not isinstance(codecs, list) or [c.get("name") for c in codecs] != FKD_CHAIN:
        return False
    endian = codecs[0].get("configuration", {}).get("endian", "little")
    separator = doc.get("chunk_key_encoding", {}).get("configuration", {}).get("separator", "/")
    return bool(endian == "little" and separator == "/")


MISSING = 2**64 - 1
ZSTD = numcodecs.Zstd()  # stateless: one decompressor for every chunk


def decode_checked(data: bytes, nbytes: int) -> NDArray[np.uint8]:
    """One stored chunk of fkd's chain (``zstd frame || crc32c``), checked and decoded to
    exactly ``nbytes``; ``ValueError`` saying what is wrong otherwise."""
    if len(data) < 4:
        raise ValueError(f"is {len(data)} bytes long: emptied or truncated")
    payload, stored = data[:-4], data[-4:]
    if google_crc32c.value(payload) != int.from_bytes(stored, "little"):
        raise ValueError("fails its crc32c checksum (truncated or damaged)")
    declared = zstd_declared_size(payload[:18])
    if declared is None:
        raise ValueError("zstd frame declares no content size; refused (cannot bound it)")
    if declared != nbytes:
        raise ValueError(f"zstd frame declares {declared} bytes, chunk holds {nbytes}")
    out = np.empty(nbytes, dtype=np.uint8)
    zstd.decompress(payload, out)  # the frame's declared size is checked above
    return out


def decode_block(raw: bytes, layout: ArrayLayout, rows: int) -> NDArray[Any]:
    """A block's whole chunk (unsharded) or shard (fkd's sharding) of ``layout``, decoded
    from its stored bytes: ``[rows, ...]``.  Every stored value's crc32c is checked, and a
    shard must have a sound index naming each inner chunk that holds any of ``rows``
    (zarr alone reads a missing or emptied one as fill values).  ``ValueError`` says
    what is wrong."""
    dtype = layout.dtype.newbyteorder("<")
    if layout.inner is None:
        values = decode_checked(raw, math.prod(layout.outer) * layout.dtype.itemsize)
        return values.view(dtype).reshape(layout.outer)[:rows].astype(layout.dtype)
    per_chunk, per_crops = layout.inner[0], layout.inner[1]
    groups, columns = layout.outer[0] // per_chunk, layout.outer[1] // per_crops
    chunks = groups * columns  # the index lists them in C order: (image group, crop group)
    index_bytes = 16 * chunks + 4
    if len(raw) < index_bytes:
        raise ValueError(f"is {len(raw)} bytes long: emptied or truncated")
    try:
        index = decode_index(raw[-index_bytes:], chunks)
    except ValueError:
        raise ValueError("its shard index fails its crc32c: truncated or damaged") from None
    inner_nbytes = math.prod(layout.inner) * layout.dtype.itemsize
    out = np.zeros((groups * per_chunk, *layout.outer[1:]), dtype=layout.dtype)
    for chunk in range(-(-rows // per_chunk) * columns):
        group, column = divmod(chunk, columns)
        offset, nbytes = (int(v) for v in index[chunk])
        if offset == MISSING:
            raise ValueError(
                f"lacks inner chunk {chunk} (images {group * per_chunk}.., crops "
                f"{column * per_crops}.. of the block)"
            )
        if offset + nbytes > len(raw) - index_bytes:
            raise ValueError(f"inner chunk {chunk} lies past the end of the shard: truncated")
        try:
            values = decode_checked(raw[offset : offset + nbytes], inner_nbytes)
        except ValueError as exc:
            raise ValueError(f"inner chunk {chunk} {exc}") from None
        where = (
            slice(group * per_chunk, (group + 1) * per_chunk),
            slice(column * per_crops, (column + 1) * per_crops),
        )
        out[where] = values.view(dtype).reshape(layout.inner)
    return out[:rows, : layout.shape[1]]


def decode_index(data: bytes, chunks: int) -> NDArray[np.uint64]:
    """A shard index (``uint64 [chunks, 2] LE || crc32c``), checked."""
    payload, stored = data[:-4], data[-4:]
    if google_crc32c.value(payload) != int.from_bytes(stored, "little"):
        raise ValueError("shard index fails its crc32c")
    return np.frombuffer(payload, dtype="<u8").reshape(chunks, 2)


def refuse_outside(root: Path, path: Path) -> None:
    """Refuse (``UnsafePathError``) a path under ``root`` whose real path leaves it."""
    real = os.path.realpath(path)
    if not real.startswith(os.path.realpath(root) + os.sep):
        raise UnsafePathError(
            f"{root}: {path.relative_to(root)} leads outside the store (to {real}); refused: "
            "replace the link with the file itself or regenerate the store"
        )


class BlockChunkReader:
    """Reads whole per-block chunks of one unsharded array of a local store."""

    def __init__(self, root: Path, layout: ArrayLayout) -> None:
        self.root = root
        self.layout = layout
        self.chunk_bytes = math.prod(layout.outer) * layout.dtype.itemsize
        self.dtype = layout.dtype.newbyteorder("<")
        self._folder: str | None = None
        self.trailing = f"{os.sep}0" * (len(layout.shape) - 1)  # trailing axes are never split

    @classmethod
    def for_array(cls, root: Path, layout: ArrayLayout) -> BlockChunkReader | None:
        """A reader if the array is local, unsharded, one chunk per block, fkd's chain."""
        if layout.inner is not None or layout.writer != "block":
            return None
        try:
            doc = json.loads((root / layout.name / "zarr.json").read_bytes())
        except (OSError, ValueError):
            return None
        return cls(root, layout) if isinstance(doc, dict) and is_fkd_block_chain(doc) else None

    def read_blocks(self, blocks: Iterable[int], out: NDArray[Any]) -> None:
        """Write each block's rows into ``out`` (the whole array, ``layout.shape``)."""
        rows = self.layout.outer[0]
        for block in blocks:
            start = block * rows
            stop = min(start + rows, out.shape[0])
            out[start:stop] = self.read_block(block)[: stop - start]

    def read_block(self, block: int) -> NDArray[Any]:
        """The block's whole chunk, ``layout.outer`` (a view of a fresh buffer)."""
        path = f"{self.folder()}{os.sep}{block}{self.trailing}"
        try:
            data = self.read_contained(path)
        except FileNotFoundError:
            raise self.corrupt(block, "its chunk file is missing") from None
        except OSError as exc:
            raise self.corrupt(block, f"cannot read {path}: {exc}") from None
        try:
            buffer = decode_checked(data, self.chunk_bytes)
        except ValueError as exc:
            raise self.corrupt(block, str(exc)) from None
        return buffer.view(self.dtype).reshape(self.layout.outer)

    def folder(self) -> str:
        """The chunk folder, its real path checked once to lie inside the store."""
        if self._folder is None:
            folder = self.root / self.layout.name / "c"
            self.check_contained(folder)
            self._folder = str(folder)
        return self._folder

    def read_contained(self, path: str) -> bytes:
        """The bytes of ``path`` in the checked folder, refusing a link that leaves the store:
        the file is opened without following a final symlink, and only a file that is a link
        pays a ``realpath``."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            self.check_contained(Path(path))
            fd = os.open(path, os.O_RDONLY)
        with os.fdopen(fd, "rb") as file:
            return file.read()

    def check_contained(self, path: Path) -> None:
        refuse_outside(self.root, path)

    def corrupt(self, block: int, why: str) -> CorruptChunkError:
        return CorruptChunkError(
            f"{self.root}: array {self.layout.name!r}, block {block}: unreadable chunk ({why})",
            repair_advice(self.layout.writer, [block]),
        )

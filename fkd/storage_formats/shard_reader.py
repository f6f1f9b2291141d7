"""A direct reader for one image's rows of a local sharded array (the loader's hot path).

A student loader reads one image's labels per sample, in random order.  Going
through zarr costs about a millisecond per array; this reader does what the
format (``docs/format.md`` §3) says directly: read the shard index once per
shard (crc32c-checked, cached), then ``pread`` the one inner chunk, check its
crc32c, and zstd-decode it into a buffer of exactly the chunk's size.  It is
used only for local stores whose codec chain is exactly fkd's own; any other
store goes through zarr.
"""

from __future__ import annotations

import json
import math
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fkd.storage_formats.block_chunk_reader import (
    MISSING,
    decode_checked,
    decode_index,
    refuse_outside,
)
from fkd.storage_formats.errors import CorruptChunkError, repair_advice
from fkd.storage_formats.layout import ArrayLayout

CACHED_SHARD_INDEXES = 256


def is_fkd_chain(doc: dict[str, Any]) -> bool:
    """True if an array's zarr.json uses exactly fkd's sharded chain (bytes, zstd, crc32c)."""
    codecs = doc.get("codecs")
    if not isinstance(codecs, list) or len(codecs) != 1:
        return False
    sharding = codecs[0]
    if sharding.get("name") != "sharding_indexed":
        return False
    config = sharding.get("configuration", {})
    inner = [c.get("name") for c in config.get("codecs", [])]
    index = [c.get("name") for c in config.get("index_codecs", [])]
    endian = [
        c.get("configuration", {}).get("endian", "little")
        for c in config.get("codecs", [])
        if c.get("name") == "bytes"
    ]
    return (
        inner == ["bytes", "zstd", "crc32c"]
        and index == ["bytes", "crc32c"]
        and config.get("index_location", "end") == "end"
        and endian == ["little"]
        and doc.get("chunk_key_encoding", {}).get("configuration", {}).get("separator", "/") == "/"
    )


class ShardRowReader:
    """Reads the rows of single images from one sharded per-crop array of a local store."""

    def __init__(self, root: Path, layout: ArrayLayout) -> None:
        assert layout.inner is not None
        self.root = root
        self.layout = layout
        self.block = layout.outer[0]
        self.per_chunk = layout.inner[0]
        self.chunks_per_shard = self.block // self.per_chunk
        self.row_shape = layout.shape[1:]
        self.chunk_bytes = math.prod(layout.inner) * layout.dtype.itemsize
        self._indexes: OrderedDict[int, NDArray[np.uint64]] = OrderedDict()

    @classmethod
    def for_array(cls, root: Path, layout: ArrayLayout) -> ShardRowReader | None:
        """A reader if the array is a local, sharded array with fkd's chain, else ``None``."""
        if layout.inner is None:
            return None
        try:
            doc = json.loads((root / layout.name / "zarr.json").read_bytes())
        except (OSError, ValueError):
            return None
        return cls(root, layout) if is_fkd_chain(doc) else None

    def read(self, image: int) -> NDArray[Any]:
        """The ``[M, ...]`` rows of ``image``."""
        block, offset_in_block = divmod(image, self.block)
        chunk, row = divmod(offset_in_block, self.per_chunk)
        path = self.shard_path(block)
        start, nbytes = self.shard_index(block, path)[chunk]
        if start == MISSING:
            raise self.corrupt(image, "its inner chunk is not in the shard")
        try:
            out = decode_checked(self.pread(path, int(start), int(nbytes), image), self.chunk_bytes)
        except ValueError as exc:
            raise self.corrupt(image, str(exc)) from None
        rows = out.view(self.layout.dtype.newbyteorder("<")).reshape(
            (self.per_chunk, *self.row_shape)
        )
        return rows[row].astype(self.layout.dtype, copy=True)

    def shard_path(self, block: int) -> Path:
        key = [str(block)] + ["0"] * (len(self.layout.shape) - 1)
        return self.root / self.layout.name / "c" / Path(*key)

    def shard_index(self, block: int, path: Path) -> NDArray[np.uint64]:
        cached = self._indexes.get(block)
        if cached is not None:
            self._indexes.move_to_end(block)
            return cached
        size = 16 * self.chunks_per_shard + 4
        self.check_contained(path)
        try:
            file_size = path.stat().st_size
        except OSError:
            raise self.corrupt(block * self.block, f"shard file {path} is missing") from None
        raw = self.pread(path, file_size - size, size, block * self.block)
        try:
            index = decode_index(raw, self.chunks_per_shard)
        except ValueError as exc:
            raise self.corrupt(block * self.block, str(exc)) from None
        self._indexes[block] = index
        if len(self._indexes) > CACHED_SHARD_INDEXES:
            self._indexes.popitem(last=False)
        return index

    def check_contained(self, path: Path) -> None:
        """Refuse a shard whose real path leaves the store (a symlink out of it)."""
        refuse_outside(self.root, path)

    def pread(self, path: Path, start: int, nbytes: int, image: int) -> bytes:
        """``nbytes`` at ``start`` of ``path`` (checked by ``decode_checked``/``decode_index``)."""
        try:
            fd = os.open(path, os.O_RDONLY)
            try:
                return os.pread(fd, nbytes, start)
            finally:
                os.close(fd)
        except OSError as exc:
            raise self.corrupt(image, f"cannot read {path}: {exc}") from None

    def corrupt(self, image: int, why: str) -> CorruptChunkError:
        return CorruptChunkError(
            f"{self.root}: array {self.layout.name!r}, image {image}: unreadable chunk ({why})",
            repair_advice(self.layout.writer, [image // self.block]),
        )

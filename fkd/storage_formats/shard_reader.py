"""A direct reader for one image's rows, or some crops of them, of a local sharded array
(the loader's hot path).

A student loader reads one image's labels per sample, in random order.  Going
through zarr costs about a millisecond per array; this reader does what the
format (``docs/format.md`` §3) says directly: read the shard index once per
shard (crc32c-checked, cached), then ``pread`` the inner chunks that hold the
wanted crops (one per image in v1/v2, where a chunk holds all M crops; in v3
only those of the wanted crops), check each crc32c, and zstd-decode it into a
buffer of exactly the chunk's size.  It is
used only for local stores whose codec chain is exactly fkd's own; any other
store goes through zarr.
"""

from __future__ import annotations

import json
import math
import os
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
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

# Shard indexes kept per array: at most this many, and at most this many bytes (a v3
# shard of B=256 images at M=4,800 has a 78 KB index).
CACHED_SHARD_INDEXES = 256
CACHED_INDEX_BYTES = 32 * 2**20


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


def inner_chunk_shape(doc: dict[str, Any]) -> tuple[int, ...] | None:
    """The inner chunk shape a sharded array's zarr.json declares (``None`` if unsharded)."""
    codecs = doc.get("codecs")
    if not isinstance(codecs, list) or len(codecs) != 1 or not isinstance(codecs[0], dict):
        return None
    shape = codecs[0].get("configuration", {}).get("chunk_shape")
    return tuple(shape) if isinstance(shape, list) else None


class ShardRowReader:
    """Reads single images' rows, or chosen crops of them, from one sharded per-crop array
    of a local store.  A shard is a block of ``B`` images; its inner chunks hold ``P``
    images by ``Q`` crops (v3; ``Q = M`` before), listed in the index in C order."""

    def __init__(self, root: Path, layout: ArrayLayout) -> None:
        assert layout.inner is not None
        self.root = root
        self.layout = layout
        self.block = layout.outer[0]
        self.per_chunk, self.per_crops = layout.inner[0], layout.inner[1]
        self.crops = layout.shape[1]
        self.columns = layout.outer[1] // self.per_crops
        self.chunks_per_shard = self.block // self.per_chunk * self.columns
        self.trailing = layout.shape[2:]
        self.chunk_bytes = math.prod(layout.inner) * layout.dtype.itemsize
        self.dtype = layout.dtype.newbyteorder("<")
        self._indexes: OrderedDict[int, NDArray[np.uint64]] = OrderedDict()
        self.decoded_bytes = 0  # bytes decoded so far (tests count them)

    @classmethod
    def for_array(cls, root: Path, layout: ArrayLayout) -> ShardRowReader | None:
        """A reader if the array is a local, sharded array with fkd's chain and the inner
        chunk shape of the spec, else ``None`` (zarr then reads it)."""
        if layout.inner is None:
            return None
        try:
            doc = json.loads((root / layout.name / "zarr.json").read_bytes())
        except (OSError, ValueError):
            return None
        if not isinstance(doc, dict) or not is_fkd_chain(doc):
            return None
        return cls(root, layout) if inner_chunk_shape(doc) == layout.inner else None

    def read(self, image: int) -> NDArray[Any]:
        """The ``[M, ...]`` rows of ``image``."""
        return self._read_columns(image, range(self.columns))[: self.crops]

    def read_crops(self, image: int, crops: NDArray[np.int64]) -> NDArray[Any]:
        """The ``[k, ...]`` rows of crops ``crops`` (``[k]``, each in ``[0, M)``) of
        ``image``, decoding only the inner chunks that hold them."""
        columns, within = np.divmod(crops, self.per_crops)
        wanted, position = np.unique(columns, return_inverse=True)
        rows = self._read_columns(image, wanted.tolist())
        rows = rows.reshape(len(wanted), self.per_crops, *self.trailing)
        return rows[position, within]

    def _read_columns(self, image: int, columns: Any) -> NDArray[Any]:
        """``image``'s rows of the given crop groups, concatenated: ``[len * Q, ...]``."""
        block, offset_in_block = divmod(image, self.block)
        group, row = divmod(offset_in_block, self.per_chunk)
        path = self.shard_path(block)
        index = self.shard_index(block, path)
        parts = []
        with self.open(path, image) as fd:
            for column in columns:
                start, nbytes = index[group * self.columns + column]
                if start == MISSING:
                    raise self.corrupt(image, f"its inner chunk {column} is not in the shard")
                raw = self.pread(fd, path, int(start), int(nbytes), image)
                try:
                    out = decode_checked(raw, self.chunk_bytes)
                except ValueError as exc:
                    raise self.corrupt(image, str(exc)) from None
                self.decoded_bytes += self.chunk_bytes
                chunk = out.view(self.dtype).reshape(self.layout.inner)
                parts.append(chunk[row])
        rows = np.concatenate(parts) if len(parts) != 1 else parts[0]
        return rows.astype(self.layout.dtype, copy=True)

    def shard_path(self, block: int) -> Path:
        key = [str(block)] + ["0"] * (len(self.layout.shape) - 1)
        return self.root / self.layout.name / "c" / Path(*key)

    def shard_index(self, block: int, path: Path) -> NDArray[np.uint64]:
        """The shard's index ``[chunks, 2]`` (offset, nbytes), crc32c-checked, cached."""
        cached = self._indexes.get(block)
        if cached is not None:
            self._indexes.move_to_end(block)
            return cached
        size = 16 * self.chunks_per_shard + 4
        self.check_contained(path)
        with self.open(path, block * self.block) as fd:
            file_size = os.fstat(fd).st_size
            if file_size < size:
                raise self.corrupt(block * self.block, f"{path} is {file_size} bytes: truncated")
            raw = self.pread(fd, path, file_size - size, size, block * self.block)
        try:
            index = decode_index(raw, self.chunks_per_shard)
        except ValueError as exc:
            raise self.corrupt(block * self.block, str(exc)) from None
        self._indexes[block] = index
        limit = max(1, min(CACHED_SHARD_INDEXES, CACHED_INDEX_BYTES // max(size, 1)))
        while len(self._indexes) > limit:
            self._indexes.popitem(last=False)
        return index

    def check_contained(self, path: Path) -> None:
        """Refuse a shard whose real path leaves the store (a symlink out of it)."""
        refuse_outside(self.root, path)

    @contextmanager
    def open(self, path: Path, image: int) -> Iterator[int]:
        """A read-only descriptor of ``path`` (a missing shard is a corrupt block)."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise self.corrupt(image, f"shard file {path} is missing") from None
        except OSError as exc:
            raise self.corrupt(image, f"cannot read {path}: {exc}") from None
        try:
            yield fd
        finally:
            os.close(fd)

    def pread(self, fd: int, path: Path, start: int, nbytes: int, image: int) -> bytes:
        """``nbytes`` at ``start`` of ``path`` (checked by ``decode_checked``/``decode_index``)."""
        try:
            return os.pread(fd, nbytes, start)
        except OSError as exc:
            raise self.corrupt(image, f"cannot read {path}: {exc}") from None

    def corrupt(self, image: int, why: str) -> CorruptChunkError:
        return CorruptChunkError(
            f"{self.root}: array {self.layout.name!r}, image {image}: unreadable chunk ({why})",
            repair_advice(self.layout.writer, [image // self.block]),
        )

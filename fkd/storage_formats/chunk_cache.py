"""A local on-disk cache in front of a remote store, for loaders that read over HTTP.

The first read of a key fetches its whole value (a whole shard, even when zarr
asks for a byte range of it) into a file under the cache folder; every later
read, whole or ranged, is served from there.  Commit markers are never cached
(a block may be committed later).  Cached bytes are still
checked by the chunks' crc32c when they are decoded, so a damaged cache file
fails loudly like a damaged store.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from zarr.abc.store import (
    ByteRequest,
    OffsetByteRequest,
    RangeByteRequest,
    Store,
    SuffixByteRequest,
)
from zarr.core.buffer import Buffer, BufferPrototype
from zarr.storage import WrapperStore

UNCACHED_PREFIXES = ("block_commit/",)


def slice_bytes(data: bytes, byte_range: ByteRequest | None) -> bytes:
    """The part of ``data`` a zarr byte request asks for."""
    if byte_range is None:
        return data
    if isinstance(byte_range, RangeByteRequest):
        return data[byte_range.start : byte_range.end]
    if isinstance(byte_range, OffsetByteRequest):
        return data[byte_range.offset :]
    if isinstance(byte_range, SuffixByteRequest):
        return data[-byte_range.suffix :] if byte_range.suffix else b""
    raise TypeError(f"unknown byte request {byte_range!r}")


class LocalChunkCache(WrapperStore[Store]):
    """A read-only store that caches whole values of ``store`` under ``folder``."""

    def __init__(self, store: Store, folder: str | os.PathLike[str]) -> None:
        super().__init__(store)
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def cache_path(self, key: str) -> Path:
        # Keys are hashed so that no key can name a path outside the cache folder.
        return self.folder / hashlib.sha256(key.encode()).hexdigest()

    async def get(
        self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None
    ) -> Buffer | None:
        if key.startswith(UNCACHED_PREFIXES):
            return await self._store.get(key, prototype, byte_range)
        path = self.cache_path(key)
        if not path.is_file():
            value = await self._store.get(key, prototype)  # the whole shard, once
            if value is None:
                return None
            temporary = path.with_suffix(f".{os.getpid()}.tmp")
            temporary.write_bytes(value.to_bytes())
            os.replace(temporary, path)
        data = path.read_bytes()
        return prototype.buffer.from_bytes(slice_bytes(data, byte_range))

    def __repr__(self) -> str:
        return f"LocalChunkCache({self._store!r}, {str(self.folder)!r})"

    def with_read_only(self, read_only: bool = False) -> Any:
        return self

"""Decompressors that never produce more bytes than the chunk they decode.

zarr's zstd, blosc and gzip codecs allocate whatever the compressed frame
claims (or grow without limit), so a tiny chunk from an untrusted store could
ask for terabytes.  These subclasses check the size a frame declares against
the chunk's own size (shape times item size) before decompressing, and refuse
larger ones.  They read and write exactly the same bytes as zarr's codecs.

``bounded(array)`` gives fkd's own handle on one array with these codecs in place
of zarr's.  Nothing is registered and zarr's configuration is untouched, so a
user's own zarr data in the same process reads exactly as before ``import fkd``
(a zstd frame without a declared size, such as ``zstd -c`` writes, reads there).
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from typing import Any

import zarr
from zarr.abc.codec import Codec
from zarr.codecs import BloscCodec, GzipCodec, ShardingCodec, ZstdCodec
from zarr.core.array import AsyncArray
from zarr.core.array_spec import ArraySpec
from zarr.core.buffer import Buffer

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def chunk_nbytes(chunk_spec: ArraySpec) -> int:
    """The exact decoded size of a chunk: the product of its shape times the item size."""
    itemsize = chunk_spec.dtype.to_native_dtype().itemsize
    return math.prod(chunk_spec.shape) * itemsize


def zstd_declared_size(frame: bytes) -> int | None:
    """The content size a zstd frame header declares, or ``None`` if it declares none."""
    if len(frame) < 6 or frame[:4] != ZSTD_MAGIC:
        raise ValueError("not a zstd frame (bad magic number)")
    descriptor = frame[4]
    size_flag, single_segment, dict_flag = descriptor >> 6, (descriptor >> 5) & 1, descriptor & 3
    position = 5 + (0 if single_segment else 1) + (0, 1, 2, 4)[dict_flag]
    width = (1 if single_segment else 0, 2, 4, 8)[size_flag]
    if width == 0:
        return None
    field = frame[position : position + width]
    if len(field) != width:
        raise ValueError("truncated zstd frame header")
    return int.from_bytes(field, "little") + (256 if width == 2 else 0)


def refuse_oversized(declared: int | None, limit: int, codec: str) -> None:
    if declared is None:
        raise ValueError(f"{codec} frame declares no content size; refused (cannot bound it)")
    if declared > limit:
        raise ValueError(
            f"{codec} frame declares {declared} bytes but the chunk holds {limit}; refused"
        )


class BoundedZstdCodec(ZstdCodec):
    def _decode_sync(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> Buffer:
        raw = chunk_bytes.to_bytes()
        refuse_oversized(zstd_declared_size(raw[:18]), chunk_nbytes(chunk_spec), "zstd")
        return super()._decode_sync(chunk_bytes, chunk_spec)


class BoundedBloscCodec(BloscCodec):
    def _decode_sync(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> Buffer:
        header = chunk_bytes.to_bytes()[:16]
        if len(header) < 16:
            raise ValueError("truncated blosc header")
        declared = int.from_bytes(header[4:8], "little")
        refuse_oversized(declared, chunk_nbytes(chunk_spec), "blosc")
        return super()._decode_sync(chunk_bytes, chunk_spec)


class BoundedGzipCodec(GzipCodec):
    def _decode_sync(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> Buffer:
        limit = chunk_nbytes(chunk_spec)
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        data = inflater.decompress(chunk_bytes.to_bytes(), limit + 1)
        if len(data) > limit or inflater.unconsumed_tail:
            raise ValueError(f"gzip data inflates past the chunk's {limit} bytes; refused")
        return chunk_spec.prototype.buffer.from_bytes(data)


BOUNDED: dict[type[Codec], type[Codec]] = {
    ZstdCodec: BoundedZstdCodec,
    BloscCodec: BoundedBloscCodec,
    GzipCodec: BoundedGzipCodec,
}


def bounded_codec(codec: Codec) -> Codec:
    """``codec`` with its decompressor replaced by the bounded one (through sharding)."""
    if isinstance(codec, ShardingCodec):
        return dataclasses.replace(
            codec,
            codecs=tuple(bounded_codec(c) for c in codec.codecs),
            index_codecs=tuple(bounded_codec(c) for c in codec.index_codecs),
        )
    bounded_cls = BOUNDED.get(type(codec))
    if bounded_cls is None:
        return codec
    return bounded_cls.from_dict(codec.to_dict())


def bounded(array: Any) -> Any:
    """A handle on the same zarr v3 array whose decompressors are bounded (see module)."""
    inner = array._async_array
    metadata = dataclasses.replace(
        inner.metadata, codecs=tuple(bounded_codec(c) for c in inner.metadata.codecs)
    )
    return zarr.Array(
        AsyncArray(metadata=metadata, store_path=inner.store_path, config=inner.config)
    )

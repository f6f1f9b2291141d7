"""Validation of an untrusted store's metadata, before zarr touches any chunk.

Opening a store reads only JSON documents (each capped in size) and checks:
the format version; the spec (every value within its caps); every expected
array's data type, shape and chunking against ``layout.store_layout``; and
every codec, recursively through sharding, against an allowlist.  Pickle,
object dtypes, unknown codecs and absurd shapes never reach zarr.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from fkd.storage_formats.errors import StoreFormatError
from fkd.storage_formats.layout import ArrayLayout
from fkd.storage_formats.spec import StoreSpec

ATTRIBUTE_KEY = "fkd"
MAX_METADATA_BYTES = 16 * 2**20
MAX_INNER_CHUNK_BYTES = 256 * 2**20
MAX_OUTER_CHUNK_BYTES = 2 * 2**30

ALLOWED_CODECS = frozenset(
    {
        "bytes",
        "crc32c",
        "blosc",
        "zstd",
        "gzip",
        "transpose",
        "sharding_indexed",
        "numcodecs.shuffle",
    }
)
ALLOWED_DATA_TYPES = frozenset(
    {
        "bool",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "int8",
        "int16",
        "int32",
        "int64",
        "float16",
        "float32",
        "float64",
    }
)
CHECKSUM_CODEC = "crc32c"


def parse_json_document(raw: bytes | None, what: str) -> dict[str, Any]:
    """Parse a zarr.json document, refusing missing, oversized or non-object ones."""
    if raw is None:
        raise StoreFormatError(f"{what} is missing: this is not an fkd label store")
    if len(raw) > MAX_METADATA_BYTES:
        raise StoreFormatError(f"{what} is {len(raw)} bytes, over the {MAX_METADATA_BYTES} cap")
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise StoreFormatError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise StoreFormatError(f"{what} must hold a JSON object")
    return doc


def spec_from_group_metadata(doc: Mapping[str, Any], where: str) -> StoreSpec:
    """The ``StoreSpec`` from a group's zarr.json, validated."""
    if doc.get("zarr_format") != 3 or doc.get("node_type") != "group":
        raise StoreFormatError(f"{where}: not a Zarr v3 group (zarr_format 3, node_type group)")
    attrs = doc.get("attributes")
    if not isinstance(attrs, Mapping) or ATTRIBUTE_KEY not in attrs:
        raise StoreFormatError(
            f"{where}: the group has no '{ATTRIBUTE_KEY}' attribute: not an fkd label store"
        )
    try:
        return StoreSpec.from_dict(attrs[ATTRIBUTE_KEY])
    except (KeyError, TypeError, ValueError) as exc:
        raise StoreFormatError(f"{where}: invalid store spec: {exc}") from None


def check_array_metadata(doc: Mapping[str, Any], expected: ArrayLayout, where: str) -> None:
    """Refuse an array whose metadata differs from ``expected`` or uses a refused codec."""
    what = f"{where}: array {expected.name!r}"
    if doc.get("zarr_format") != 3 or doc.get("node_type") != "array":
        raise StoreFormatError(f"{what}: not a Zarr v3 array")
    data_type = doc.get("data_type")
    if not isinstance(data_type, str) or data_type not in ALLOWED_DATA_TYPES:
        raise StoreFormatError(f"{what}: data type {data_type!r} is refused (only plain numerics)")
    if data_type != expected.dtype.name:
        raise StoreFormatError(
            f"{what}: data type {data_type} but the spec needs {expected.dtype.name}"
        )
    shape = doc.get("shape")
    if not isinstance(shape, list) or tuple(shape) != expected.shape:
        raise StoreFormatError(f"{what}: shape {shape} but the spec needs {list(expected.shape)}")
    if doc.get("fill_value") != expected.fill_value:
        raise StoreFormatError(
            f"{what}: fill value {doc.get('fill_value')!r} but the format "
            f"needs {expected.fill_value} (it marks unwritten data)"
        )
    if doc.get("storage_transformers") not in (None, []):
        raise StoreFormatError(f"{what}: storage transformers are refused")
    _check_chunk_grid(doc.get("chunk_grid"), expected, what)
    codecs = doc.get("codecs")
    _check_codec_chain(codecs, what, chunk_shape=expected.outer, itemsize=expected.dtype.itemsize)


def _check_chunk_grid(grid: Any, expected: ArrayLayout, what: str) -> None:
    if not isinstance(grid, Mapping) or grid.get("name") != "regular":
        raise StoreFormatError(f"{what}: only a regular chunk grid is read")
    config = grid.get("configuration")
    chunk_shape = config.get("chunk_shape") if isinstance(config, Mapping) else None
    if not isinstance(chunk_shape, list) or tuple(chunk_shape) != expected.outer:
        raise StoreFormatError(
            f"{what}: chunk shape {chunk_shape} but the spec needs {list(expected.outer)} "
            "(one chunk or shard per block)"
        )


def _check_codec_chain(codecs: Any, what: str, chunk_shape: tuple[int, ...], itemsize: int) -> None:
    if not isinstance(codecs, list) or not codecs:
        raise StoreFormatError(f"{what}: codecs must be a non-empty list")
    nbytes = _prod(chunk_shape) * itemsize
    names = []
    for codec in codecs:
        name = codec.get("name") if isinstance(codec, Mapping) else None
        if name not in ALLOWED_CODECS:
            raise StoreFormatError(
                f"{what}: codec {name!r} is refused; allowed codecs are {sorted(ALLOWED_CODECS)}"
            )
        names.append(name)
        if name == "sharding_indexed":
            _check_sharding(codec.get("configuration"), what, chunk_shape, itemsize)
    if "sharding_indexed" in names:
        if len(names) != 1:
            raise StoreFormatError(f"{what}: sharding must be the only outer codec")
        cap = MAX_OUTER_CHUNK_BYTES
    else:
        cap = MAX_INNER_CHUNK_BYTES
        if CHECKSUM_CODEC not in names:
            raise StoreFormatError(f"{what}: every chunk needs a crc32c checksum codec")
    if nbytes > cap:
        raise StoreFormatError(f"{what}: a chunk decodes to {nbytes} bytes, over the {cap} cap")


def _check_sharding(config: Any, what: str, shard_shape: tuple[int, ...], itemsize: int) -> None:
    if not isinstance(config, Mapping):
        raise StoreFormatError(f"{what}: sharding without a configuration")
    inner = config.get("chunk_shape")
    if (
        not isinstance(inner, list)
        or len(inner) != len(shard_shape)
        or not all(isinstance(c, int) and c >= 1 for c in inner)
        or any(s % c for s, c in zip(shard_shape, inner, strict=True))
    ):
        raise StoreFormatError(f"{what}: inner chunk shape {inner} does not divide {shard_shape}")
    _check_codec_chain(config.get("codecs"), what, tuple(inner), itemsize)
    index_codecs = config.get("index_codecs")
    index_shape = tuple(s // c for s, c in zip(shard_shape, inner, strict=True))
    _check_codec_chain(index_codecs, f"{what} (shard index)", (*index_shape, 2), 8)


def _prod(shape: tuple[int, ...]) -> int:
    total = 1
    for size in shape:
        total *= int(size)
    return total

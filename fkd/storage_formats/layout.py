"""The arrays of a store (format v1, v2 or v3), derived from its ``StoreSpec``.

This is the one place that names the arrays, their dtypes, shapes and
chunking; the writer creates exactly these and the validator expects exactly
these.  ``docs/format.md`` describes the same table for other readers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from fkd.storage_formats.label_codecs import get_codec
from fkd.storage_formats.spec import StoreSpec

ERROR_BYTES = 128
# Format v2 keeps the manifest (written once, by the creator) in large chunks, not one
# per block: at 14M images that is a handful of files per array instead of 55,000.
MANIFEST_CHUNK_IMAGES = 1 << 22
MANIFEST_CHUNK_PATH_BYTES = 1 << 27

# Status codes of ``image_status``.
STATUS_PENDING = 0  # fill value: the block holding the image has not been written
STATUS_OK = 1
STATUS_FAILED = 2

Writer = Literal["create", "block", "commit"]

COMMIT_ARRAY = "block_commit"
COMMITTED = 1


@dataclass(frozen=True)
class ArrayLayout:
    """One array: name, dtype, shape, outer chunk (a shard) and inner chunk.

    ``inner`` is ``None`` for arrays without sharding.  ``writer`` says who
    writes it: ``create`` (once, with the manifest), ``block`` (the block's
    one writer) or ``commit`` (the block's marker, written last).
    """

    name: str
    dtype: np.dtype[Any]
    shape: tuple[int, ...]
    outer: tuple[int, ...]
    inner: tuple[int, ...] | None
    writer: Writer
    fill_value: int = 0

    @property
    def inner_nbytes(self) -> int:
        return int(np.prod(self.inner or self.outer)) * self.dtype.itemsize

    @property
    def outer_nbytes(self) -> int:
        return int(np.prod(self.outer)) * self.dtype.itemsize


def label_array_name(field: str) -> str:
    return f"label_{field}"


def store_layout(spec: StoreSpec) -> dict[str, ArrayLayout]:
    """Every array of the store described by ``spec``, by name."""
    n, m, block = spec.num_images, spec.crops_per_image, spec.block_size
    per_chunk, crops_per_chunk = spec.images_per_chunk, spec.crops_per_inner_chunk
    padded = spec.padded_crops  # v3: M rounded up to whole inner chunks; M before

    def per_image(name: str, dtype: Any, trailing: tuple[int, ...], writer: Writer) -> ArrayLayout:
        return ArrayLayout(name, np.dtype(dtype), (n, *trailing), (block, *trailing), None, writer)

    def per_crop(name: str, dtype: Any, trailing: tuple[int, ...]) -> ArrayLayout:
        return ArrayLayout(
            name,
            np.dtype(dtype),
            (n, m, *trailing),
            (block, padded, *trailing),
            (per_chunk, crops_per_chunk, *trailing),
            "block",
        )

    arrays = [
        *(manifest_layout_v1(spec) if spec.format_version == 1 else manifest_layout(spec)),
        per_image("image_height", np.uint32, (), "block"),
        per_image("image_width", np.uint32, (), "block"),
        per_image("image_status", np.uint8, (), "block"),
        per_image("image_error", np.uint8, (ERROR_BYTES,), "block"),
    ]
    if spec.crops.boxes_stored:
        arrays.append(per_crop("crop_box", np.uint16, (4,)))
        arrays.append(per_crop("crop_flip", np.bool_, ()))
    for field in get_codec(spec.codec).fields():
        arrays.append(per_crop(label_array_name(field.name), field.dtype, field.shape))
    arrays.append(
        ArrayLayout(COMMIT_ARRAY, np.dtype(np.uint8), (spec.num_blocks,), (1,), None, "commit")
    )
    return {a.name: a for a in arrays}


def manifest_layout(spec: StoreSpec) -> list[ArrayLayout]:
    """Format v2's manifest: path bytes + offsets, sizes, targets, hashes, in large chunks."""
    n = spec.num_images

    def whole(
        name: str, dtype: Any, length: int, trailing: tuple[int, ...], per: int
    ) -> ArrayLayout:
        chunk = (min(length, per), *trailing)
        return ArrayLayout(name, np.dtype(dtype), (length, *trailing), chunk, None, "create")

    arrays = [
        whole("image_path_data", np.uint8, spec.path_data_bytes, (), MANIFEST_CHUNK_PATH_BYTES),
        whole("image_path_offsets", np.uint64, n + 1, (), MANIFEST_CHUNK_IMAGES),
        whole("image_nbytes", np.uint64, n, (), MANIFEST_CHUNK_IMAGES),
        whole("image_target", np.int32, n, (), MANIFEST_CHUNK_IMAGES),
    ]
    if spec.file_hashes:
        arrays.append(whole("image_sha256", np.uint8, n, (32,), MANIFEST_CHUNK_IMAGES))
    return arrays


def manifest_layout_v1(spec: StoreSpec) -> list[ArrayLayout]:
    """Format v1's manifest: one NUL-padded path row per image, chunked per block."""
    n, block = spec.num_images, spec.block_size

    def per_block(name: str, dtype: Any, trailing: tuple[int, ...]) -> ArrayLayout:
        return ArrayLayout(
            name, np.dtype(dtype), (n, *trailing), (block, *trailing), None, "create"
        )

    arrays = [
        per_block("image_path", np.uint8, (spec.max_path_bytes,)),
        per_block("image_nbytes", np.uint64, ()),
        per_block("image_target", np.int32, ()),
    ]
    if spec.file_hashes:
        arrays.append(per_block("image_sha256", np.uint8, (32,)))
    return arrays


def block_arrays(layout: dict[str, ArrayLayout]) -> list[ArrayLayout]:
    """The arrays a block's writer writes (one chunk or shard each per block)."""
    return [a for a in layout.values() if a.writer == "block"]


def chunk_key(layout: ArrayLayout, block: int) -> str:
    """The key of the chunk (or shard) of ``layout`` that holds ``block``."""
    return "/".join([layout.name, "c", str(block)] + ["0"] * (len(layout.shape) - 1))


def encode_error_text(text: str) -> NDArray[np.uint8]:
    """A failure reason as one ``image_error`` row: UTF-8, cut to ``ERROR_BYTES``, NUL-padded."""
    raw = text.encode("utf-8")[:ERROR_BYTES]
    # Never cut a multi-byte character in half.
    raw = raw.decode("utf-8", errors="ignore").encode("utf-8")
    out = np.zeros(ERROR_BYTES, dtype=np.uint8)
    out[: len(raw)] = np.frombuffer(raw, dtype=np.uint8)
    return out


def decode_error_text(row: NDArray[Any]) -> str:
    """The failure reason an ``image_error`` row holds ("" for none)."""
    return bytes(np.asarray(row, dtype=np.uint8)).rstrip(b"\x00").decode("utf-8", "replace")

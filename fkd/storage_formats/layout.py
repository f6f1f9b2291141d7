"""The arrays of a v1 store, derived from its ``StoreSpec``.

This is the one place that names the arrays, their dtypes, shapes and
chunking; the writer creates exactly these and the validator expects exactly
these.  ``docs/format.md`` describes the same table for other readers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from fkd.storage_formats.label_codecs import get_codec
from fkd.storage_formats.spec import StoreSpec

ERROR_BYTES = 128

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
    per_chunk = spec.images_per_chunk

    def per_image(name: str, dtype: Any, trailing: tuple[int, ...], writer: Writer) -> ArrayLayout:
        return ArrayLayout(name, np.dtype(dtype), (n, *trailing), (block, *trailing), None, writer)

    def per_crop(name: str, dtype: Any, trailing: tuple[int, ...]) -> ArrayLayout:
        return ArrayLayout(
            name,
            np.dtype(dtype),
            (n, m, *trailing),
            (block, m, *trailing),
            (per_chunk, m, *trailing),
            "block",
        )

    arrays = [
        per_image("image_path", np.uint8, (spec.max_path_bytes,), "create"),
        per_image("image_nbytes", np.uint64, (), "create"),
        per_image("image_target", np.int32, (), "create"),
        *([per_image("image_sha256", np.uint8, (32,), "create")] if spec.file_hashes else []),
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


def chunk_key(layout: ArrayLayout, block: int) -> str:
    """The key of the chunk (or shard) of ``layout`` that holds ``block``."""
    return "/".join([layout.name, "c", str(block)] + ["0"] * (len(layout.shape) - 1))

"""Reading a store: the manifest, per-image arrays, and the crops of chosen images.

Only committed blocks are read.  Small reads of a local store go through fkd's
direct chunk readers (``block_chunk_reader``, ``shard_reader``); the rest through
zarr, several arrays at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from zarr.core.sync import sync

from fkd.storage_formats import crop_sampler
from fkd.storage_formats.block_chunk_reader import BlockChunkReader
from fkd.storage_formats.crop_selection import crop_numbers, point_coordinates, take_crops
from fkd.storage_formats.errors import (
    CorruptChunkError,
    StoreError,
    StoreFormatError,
    UncommittedBlockError,
    repair_advice,
)
from fkd.storage_formats.layout import (
    STATUS_FAILED,
    STATUS_PENDING,
    decode_error_text,
    label_array_name,
)
from fkd.storage_formats.manifest import Manifest
from fkd.storage_formats.shard_reader import ShardRowReader
from fkd.storage_formats.store_handle import StoreHandle, describe_selection
from fkd.storage_formats.store_location import is_url

# Up to this many images per read go through the direct shard reader (local stores).
FAST_READ_MAX_IMAGES = 64


@dataclass(frozen=True)
class ReaderCache:
    """A handle's committed mask and per-image arrays, handed to a handle in another process."""

    committed: NDArray[np.bool_]
    per_image: Mapping[str, NDArray[Any]]


@dataclass(frozen=True)
class ImageBatch:
    """Stored crops of a batch of images, in the order asked for.

    ``boxes`` are fractions (top, left, height, width) of the image's height
    and width, ``[n, M, 4]``; ``flips`` ``[n, M]``; ``labels`` as stored by the
    codec (see ``LabelStore.decode_labels``).
    """

    indices: NDArray[np.int64]
    height: NDArray[np.uint32]
    width: NDArray[np.uint32]
    status: NDArray[np.uint8]
    boxes: NDArray[np.float64]
    flips: NDArray[np.bool_]
    labels: dict[str, NDArray[Any]]


class StoreReader(StoreHandle):
    """The reading side of a ``LabelStore``."""

    @property
    def manifest(self) -> Manifest:
        """The image list, read once per handle and validated (vectorised): every path
        relative, normalised, without '..'."""
        if self._manifest is None:
            self._manifest = self._read_manifest()
        return self._manifest

    def _read_manifest(self) -> Manifest:
        whole = slice(None)
        hashes = self._read("image_sha256", whole) if self.spec.file_hashes else None
        nbytes, targets = self._read("image_nbytes", whole), self._read("image_target", whole)
        try:
            if self.spec.format_version == 1:
                return Manifest.from_rows(self._read("image_path", whole), nbytes, targets, hashes)
            offsets = self._read("image_path_offsets", whole)
            return Manifest(self._read("image_path_data", whole), offsets, nbytes, targets, hashes)
        except ValueError as exc:
            raise StoreFormatError(
                f"{self.location}: invalid manifest ({exc}); refused: no file outside the "
                "data folder is ever read; regenerate the store"
            ) from None

    def per_image(self, name: str) -> NDArray[Any]:
        """A whole per-image array (height, width, status, target...), cached.

        Arrays written with each block are read over the committed blocks only (the
        rest hold the fill value): a torn chunk of a block still being written must
        not stop reads of the committed ones.
        """
        committed = self.committed_mask()
        if self._per_image_mask is None or not np.array_equal(self._per_image_mask, committed):
            self._per_image.clear()
            self._per_image_mask = committed.copy()
        if name not in self._per_image:
            if self.layout[name].writer == "block":
                self._per_image[name] = self._read_committed_rows(name, committed)
            else:
                self._per_image[name] = np.asarray(self._read(name, slice(None)))
        return self._per_image[name]

    def per_image_rows(self, name: str, index: NDArray[np.int64]) -> NDArray[Any]:
        """``per_image(name)[index]`` of committed images, reading only their blocks' chunks
        unless the whole array is cached or the read spans many blocks (then it is cached)."""
        if name in self._per_image and self._per_image_mask is not None:
            return self._per_image[name][index]
        layout = self.layout[name]
        if index.size == 0:
            return np.zeros((0, *layout.shape[1:]), dtype=layout.dtype)
        blocks = np.unique(index // self.spec.block_size)
        reader = self._block_reader(name)
        if reader is None or blocks.size > FAST_READ_MAX_IMAGES:
            return self.per_image(name)[index]
        chunks = {int(b): reader.read_block(int(b)) for b in blocks}
        rows = self.spec.block_size
        return np.stack([chunks[int(i) // rows][int(i) % rows] for i in index]).astype(layout.dtype)

    def _read_committed_rows(self, name: str, committed: NDArray[np.bool_]) -> NDArray[Any]:
        layout = self.layout[name]
        rows = np.full(layout.shape, layout.fill_value, dtype=layout.dtype)
        reader = self._block_reader(name)
        if reader is not None:
            reader.read_blocks(np.flatnonzero(committed).tolist(), rows)
            return rows
        for first, last in _runs(np.flatnonzero(committed)):
            start, stop = self.block_range(first)[0], self.block_range(last)[1]
            rows[start:stop] = self._read(name, slice(start, stop))
        return rows

    def _block_reader(self, name: str) -> BlockChunkReader | None:
        """The direct per-block reader of ``name`` (local stores, fkd's chain), made once."""
        if name not in self._block_readers:
            local = None if is_url(self.location) else Path(self.location)
            self._block_readers[name] = (
                BlockChunkReader.for_array(local, self.layout[name])
                if local is not None and local.is_dir()
                else None
            )
        return self._block_readers[name]

    def reader_cache(self, names: Sequence[str]) -> ReaderCache:
        """What this handle has read of ``names`` (per-image arrays) and the commit markers,
        for ``adopt`` by a handle on the same store in another process (a loader worker)."""
        committed = self.committed_mask()
        return ReaderCache(committed, {name: self.per_image(name) for name in names})

    def adopt(self, cache: ReaderCache) -> None:
        """Use another handle's reads of this store instead of reading them again."""
        if cache.committed.shape != (self.num_blocks,):
            raise ValueError(f"{self.location}: a reader cache of another store")
        self._committed = cache.committed.copy()
        self._per_image_mask = self._committed.copy()
        self._per_image = dict(cache.per_image)

    def failures(self) -> list[tuple[int, str]]:
        """(image index, reason) for every image recorded as failed in a committed block."""
        status = self.per_image("image_status")
        committed = np.repeat(self.committed_mask(refresh=True), self.spec.block_size)
        in_committed = committed[: self.spec.num_images]
        failed = [int(i) for i in np.flatnonzero((status == STATUS_FAILED) & in_committed)]
        if not failed:
            return []
        reasons = self._read("image_error", np.asarray(failed))
        return [(i, decode_error_text(row)) for i, row in zip(failed, reasons, strict=True)]

    def read_images(self, indices: Sequence[int] | NDArray[Any]) -> ImageBatch:
        """Boxes, flips and stored labels of all M crops of the given images, in one call.

        Raises ``UncommittedBlockError`` if any image lies in an uncommitted block.
        """
        index = np.asarray(indices, dtype=np.int64).reshape(-1)
        self._check_readable(index)
        height = self.per_image_rows("image_height", index)
        width = self.per_image_rows("image_width", index)
        status = self._checked_status(index)
        names = [label_array_name(field.name) for field in self.codec.fields()]
        per_crop = self._read_per_crop(names + self._box_arrays(), index)
        boxes, flips = self._boxes(index, height, width, per_crop)
        labels = {
            field.name: per_crop[label_array_name(field.name)] for field in self.codec.fields()
        }
        return ImageBatch(index, height, width, status, boxes, flips, labels)

    def read_image(self, index: int) -> ImageBatch:
        return self.read_images([index])

    def read_crops(
        self, indices: Sequence[int] | NDArray[Any], crops: NDArray[Any]
    ) -> dict[str, NDArray[Any]]:
        """Stored labels of crops ``crops`` (``[n, k]`` crop numbers in ``[0, M)``) of each
        image: ``{field: [n, k, ...]}``, equal to ``read_images(indices).labels`` at
        those crops.  ``read_boxes(indices, crops)`` gives their boxes and flips.

        A format v3 store is chunked along the crops too, so this decodes only the
        inner chunks holding the wanted crops: O(k) bytes per image whatever M is.
        v1 and v2 stores keep all M crops of an image in one chunk: read whole.
        """
        index = np.asarray(indices, dtype=np.int64).reshape(-1)
        chosen = self._crop_numbers(index, crops)
        self._check_readable(index)
        self._checked_status(index)
        names = [label_array_name(field.name) for field in self.codec.fields()]
        per_crop = self._read_crops(names, index, chosen)
        return {field.name: per_crop[label_array_name(field.name)] for field in self.codec.fields()}

    def read_boxes(
        self, indices: Sequence[int] | NDArray[Any], crops: NDArray[Any] | None = None
    ) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
        """Fraction boxes ``[n, M, 4]`` and flips ``[n, M]`` of the images, without labels.

        ``crops`` (``[n, k]`` crop numbers) keeps only those crops (``[n, k, 4]``,
        ``[n, k]``), reading only their chunks of a v3 store.  Boxes are read where
        the store holds them and derived from the crop sampler where it does not.
        """
        index = np.asarray(indices, dtype=np.int64).reshape(-1)
        chosen = None if crops is None else self._crop_numbers(index, crops)
        self._check_readable(index)
        height = self.per_image_rows("image_height", index)
        width = self.per_image_rows("image_width", index)
        names = self._box_arrays()
        per_crop = (
            self._read_per_crop(names, index)
            if chosen is None
            else self._read_crops(names, index, chosen)
        )
        return self._boxes(index, height, width, per_crop, chosen)

    def _crop_numbers(self, index: NDArray[np.int64], crops: NDArray[Any]) -> NDArray[np.int64]:
        return crop_numbers(crops, len(index), self.spec.crops_per_image)

    def _checked_status(self, index: NDArray[np.int64]) -> NDArray[np.uint8]:
        """The images' statuses; ``CorruptChunkError`` for a pending one (a lost chunk)."""
        status = self.per_image_rows("image_status", index)
        if (status == STATUS_PENDING).any():
            image = int(index[np.flatnonzero(status == STATUS_PENDING)[0]])
            raise CorruptChunkError(
                f"{self.location}: image {image} has no status although its block "
                f"{self.block_of(image)} is committed (a chunk is missing)",
                repair_advice("block", [self.block_of(image)]),
            )
        return status

    def _box_arrays(self) -> list[str]:
        return ["crop_box", "crop_flip"] if self.spec.crops.boxes_stored else []

    def _boxes(
        self,
        index: NDArray[np.int64],
        height: NDArray[Any],
        width: NDArray[Any],
        per_crop: Mapping[str, NDArray[Any]],
        crops: NDArray[np.int64] | None = None,
    ) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
        """The one place that decides between stored boxes and boxes derived from the seed.
        ``per_crop`` holds the stored boxes of ``crops`` only, when ``crops`` is given."""
        if self.spec.crops.boxes_stored:
            boxes = crop_sampler.grid_to_fractions(per_crop["crop_box"])
            return boxes, np.asarray(per_crop["crop_flip"], dtype=bool)
        pixels, flips = crop_sampler.sample_boxes(self.spec.crops, index, height, width, crops)
        return crop_sampler.boxes_to_fractions(pixels, height, width), flips

    def _read_per_crop(self, names: list[str], index: NDArray[np.int64]) -> dict[str, NDArray[Any]]:
        if not names:
            return {}
        readers = self._row_readers(names) if index.size <= FAST_READ_MAX_IMAGES else None
        if readers is not None:
            return {name: np.stack([readers[name].read(int(i)) for i in index]) for name in names}
        return self._read_concurrently(names, index)

    def _read_crops(
        self, names: list[str], index: NDArray[np.int64], chosen: NDArray[np.int64]
    ) -> dict[str, NDArray[Any]]:
        """``array[index][:, chosen]`` per name, ``[n, k, ...]``, reading only the inner
        chunks of the chosen crops where the store is chunked along crops (v3)."""
        if not names:
            return {}
        n, k = chosen.shape
        if self.spec.format_version < 3 or k == 0 or n == 0:  # an image's crops: one chunk
            rows = self._read_per_crop(names, index)
            return {name: take_crops(values, chosen) for name, values in rows.items()}
        readers = self._row_readers(names) if n <= FAST_READ_MAX_IMAGES else None
        if readers is not None:
            return {
                name: np.stack(
                    [
                        readers[name].read_crops(int(i), c)
                        for i, c in zip(index, chosen, strict=True)
                    ]
                )
                for name in names
            }
        values = self._read_concurrently(names, np.repeat(index, k), chosen.reshape(-1))
        return {name: v.reshape(n, k, *v.shape[1:]) for name, v in values.items()}

    def decode_labels(self, labels: Mapping[str, NDArray[Any]]) -> NDArray[np.float32]:
        """Dense probabilities ``[..., C]`` from stored label arrays."""
        return self.codec.decode(labels)

    def _check_readable(self, index: NDArray[np.int64]) -> None:
        if index.size == 0:
            return
        if index.min() < 0 or index.max() >= self.spec.num_images:
            raise IndexError(f"image index out of range [0, {self.spec.num_images})")
        blocks = np.unique(index // self.spec.block_size)
        committed = self.committed_mask()
        missing = [int(b) for b in blocks if not committed[b]]
        if missing:
            block = missing[0]
            start, stop = self.block_range(block)
            raise UncommittedBlockError(
                f"{self.location}: block {block} (images {start}..{stop - 1}) is not committed "
                f"({len(missing)} uncommitted block(s) in this read); its writer did not "
                "finish: re-run the same `fkd generate` command to resume"
            )

    def _row_readers(self, names: list[str]) -> dict[str, ShardRowReader] | None:
        """Direct shard readers for ``names``, when the store is local with fkd's chains."""
        if self._readers is None:
            root = None if is_url(self.location) else Path(self.location)
            self._readers = {}
            if root is not None and root.is_dir():
                for name, layout in self.layout.items():
                    reader = ShardRowReader.for_array(root, layout)
                    if reader is not None:
                        self._readers[name] = reader
        if all(name in self._readers for name in names):
            return self._readers
        return None

    def _read_concurrently(
        self, names: list[str], index: NDArray[np.int64], crops: NDArray[np.int64] | None = None
    ) -> dict[str, Any]:
        """``array[index]`` (or, with ``crops``, the points ``array[index[p], crops[p]]``) of
        several arrays at once, in one pass of zarr's event loop.  zarr reads only the
        inner chunks a selection touches, with ranged reads of each shard."""

        arrays = {name: self._array(name)._async_array for name in names}  # opened outside

        async def read(name: str) -> NDArray[Any]:
            array = arrays[name]
            try:
                if crops is not None:
                    trailing = tuple(array.shape[2:])
                    points = await array.get_coordinate_selection(
                        point_coordinates(index, crops, trailing)
                    )
                    return np.asarray(points).reshape(index.size, *trailing)
                if index.size == 1:  # a slice is cheaper than an orthogonal selection
                    start = int(index[0])
                    return np.asarray(await array.getitem(slice(start, start + 1)))
                return np.asarray(await array.get_orthogonal_selection((index,)))
            except StoreError:
                raise
            except Exception as exc:
                raise CorruptChunkError(
                    f"{self.location}: array {name!r}, {describe_selection(index)}: unreadable "
                    f"chunk ({type(exc).__name__}: {exc})",
                    self._repair_advice(name, index),
                ) from exc

        async def read_all() -> list[NDArray[Any]]:
            return list(await asyncio.gather(*(read(name) for name in names)))

        return dict(zip(names, sync(read_all()), strict=True))


def _runs(values: NDArray[Any]) -> list[tuple[int, int]]:
    """(first, last) of each run of consecutive integers in sorted ``values``."""
    if values.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(values) != 1)
    starts = np.concatenate([[0], breaks + 1])
    ends = np.concatenate([breaks, [values.size - 1]])
    return [(int(values[a]), int(values[b])) for a, b in zip(starts, ends, strict=True)]

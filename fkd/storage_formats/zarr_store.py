"""The label store: one Zarr v3 group, written block by block, read by image.

Write protocol: ``LabelStore.create`` writes the metadata and the manifest;
then each block's single writer calls ``write_block``, which writes every
block array (whole shards) and, last, the block's commit marker.  Readers
refuse images in blocks without a marker, so a block cut short by a crash is
never read; resume redoes exactly the uncommitted blocks.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from numpy.typing import NDArray
from zarr.abc.store import Store
from zarr.codecs import BytesCodec, Crc32cCodec, ZstdCodec
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync
from zarr.storage import LocalStore

from fkd.storage_formats import bounded_codecs, crop_sampler
from fkd.storage_formats.block_chunk_reader import BlockChunkReader
from fkd.storage_formats.errors import (
    CorruptChunkError,
    StoreError,
    StoreExistsError,
    StoreFormatError,
    UncommittedBlockError,
    UnsafePathError,
    repair_advice,
    write_failure,
)
from fkd.storage_formats.label_codecs import LabelCodec, get_codec
from fkd.storage_formats.layout import (
    COMMIT_ARRAY,
    COMMITTED,
    ERROR_BYTES,
    STATUS_FAILED,
    STATUS_OK,
    STATUS_PENDING,
    ArrayLayout,
    chunk_key,
    label_array_name,
    store_layout,
)
from fkd.storage_formats.manifest import Manifest, encode_paths
from fkd.storage_formats.shard_reader import ShardRowReader
from fkd.storage_formats.spec import StoreSpec
from fkd.storage_formats.validation import (
    ATTRIBUTE_KEY,
    MAX_INNER_CHUNK_BYTES,
    MAX_OUTER_CHUNK_BYTES,
    check_array_metadata,
    parse_json_document,
    spec_from_group_metadata,
)

COMPRESSION_LEVEL = 5
# Up to this many images per read go through the direct shard reader (local stores).
FAST_READ_MAX_IMAGES = 64


def is_url(location: str | Path | Store) -> bool:
    return isinstance(location, str) and "://" in location


def open_zarr_store(location: str | Path | Store, read_only: bool) -> Store:
    """A zarr ``Store`` for a local path or an fsspec URL (http://, s3://, memory://...)."""
    if isinstance(location, Store):
        return location
    if is_url(location):
        from zarr.storage import FsspecStore

        return FsspecStore.from_url(str(location), read_only=read_only)
    if str(location).endswith(".zip"):
        from zarr.storage import ZipStore

        if not read_only:
            raise StoreError(f"{location}: a zipped store is read-only; unzip it to write")
        zipped: Store = sync(ZipStore.open(Path(location), mode="r", read_only=True))
        return zipped
    return ContainedLocalStore(Path(location), read_only=read_only)


class ContainedLocalStore(LocalStore):
    """A ``LocalStore`` that never reads or writes outside its folder.

    A store copied from elsewhere may hold a symlink (a chunk file, or a folder
    such as ``label_index/c``) leading out of the store, e.g. to a private key;
    following it would read (or, on resume, write) a file the store does not own.
    Every key's real path must lie under the store's real path, for reads, writes,
    deletes, existence checks and listings alike (a resume deletes an uncommitted
    block's shards before rewriting them); links inside the store are allowed.  The
    check costs one ``realpath`` per key.
    """

    def contained(self, key: str) -> str:
        root = os.path.realpath(self.root)
        real = os.path.realpath(self.root / key)
        if real != root and not real.startswith(root + os.sep):
            raise UnsafePathError(
                f"{self.root}: {key} leads outside the store (to {real}); refused: "
                "replace the link with the file itself or regenerate the store"
            )
        return key

    def get_sync(self, key: str, **kwargs: Any) -> Any:
        return super().get_sync(self.contained(key), **kwargs)

    async def delete(self, key: str) -> None:
        await super().delete(self.contained(key))

    async def delete_dir(self, prefix: str) -> None:
        await super().delete_dir(self.contained(prefix))

    async def exists(self, key: str) -> bool:
        return await super().exists(self.contained(key))

    async def list_dir(self, prefix: str) -> AsyncIterator[str]:
        async for name in super().list_dir(self.contained(prefix)):
            yield name

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        async for key in super().list_prefix(self.contained(prefix)):
            yield self.contained(key)

    def set_sync(self, key: str, value: Any) -> None:
        super().set_sync(self.contained(key), value)

    async def get(self, key: str, prototype: Any = None, byte_range: Any = None) -> Any:
        return await super().get(self.contained(key), prototype, byte_range)

    async def get_partial_values(self, prototype: Any, key_ranges: Any) -> Any:
        checked = [(self.contained(key), byte_range) for key, byte_range in key_ranges]
        return await super().get_partial_values(prototype, checked)

    async def _set(self, key: str, value: Any, exclusive: bool = False) -> None:
        await super()._set(self.contained(key), value, exclusive)


def read_key(store: Store, key: str) -> bytes | None:
    """The raw bytes of one key of ``store``, or ``None`` if it is absent."""
    try:
        buffer = sync(store.get(key, prototype=default_buffer_prototype()))
    except StoreError:
        raise
    except Exception as exc:  # network and file-system errors of any store backend
        raise StoreError(f"cannot read {key!r} from {store}: {type(exc).__name__}: {exc}") from exc
    return None if buffer is None else buffer.to_bytes()


def chunk_codecs(layout: ArrayLayout) -> dict[str, Any]:
    """The codec arguments for ``zarr.create_array``: little-endian bytes, zstd, crc32c.

    ``benchmarks/compression_bench.py`` compared zstd with blosc-zstd (shuffle,
    bitshuffle, none) and with a K-major transpose on teacher-like labels: plain
    zstd was within 1.5% of the best chain and is the simplest one for another
    Zarr v3 reader to implement.
    """
    codecs: dict[str, Any] = {
        "filters": None,
        "serializer": BytesCodec(),
        "compressors": [ZstdCodec(level=COMPRESSION_LEVEL), Crc32cCodec()],
    }
    if layout.inner is not None:
        codecs["chunks"] = layout.inner
        codecs["shards"] = layout.outer
    else:
        codecs["chunks"] = layout.outer
    return codecs


@dataclass(frozen=True)
class BlockData:
    """Everything one block's writer produces, for images [start, stop) of the block.

    ``labels`` maps each codec field to ``[n, M, ...]``; ``boxes`` (fractions,
    ``[n, M, 4]``) and ``flips`` (``[n, M]``) are given only when the spec
    stores boxes (``sampler == "stored"``).  ``errors`` holds one reason per
    failed image, "" for the others.
    """

    height: NDArray[Any]
    width: NDArray[Any]
    status: NDArray[Any]
    errors: Sequence[str]
    labels: Mapping[str, NDArray[Any]]
    boxes: NDArray[Any] | None = None
    flips: NDArray[Any] | None = None


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


class LabelStore:
    """A handle on one fkd label store (a Zarr v3 group)."""

    def __init__(self, group: zarr.Group, spec: StoreSpec, location: str, read_only: bool) -> None:
        self.group = group
        self.spec = spec
        self.location = location
        self.read_only = read_only
        self.layout = store_layout(spec)
        self.codec: LabelCodec = get_codec(spec.codec)
        self._arrays: dict[str, Any] = {}
        self._per_image: dict[str, NDArray[Any]] = {}
        self._per_image_mask: NDArray[np.bool_] | None = None
        self._committed: NDArray[np.bool_] | None = None
        self._readers: dict[str, ShardRowReader] | None = None
        self._manifest: Manifest | None = None
        self._block_readers: dict[str, BlockChunkReader | None] = {}

    # Creating and opening ---------------------------------------------------

    @classmethod
    def create(
        cls, location: str | Path, spec: StoreSpec, manifest: Manifest, overwrite: bool = False
    ) -> LabelStore:
        """Create the store's metadata and write its manifest; no block is committed."""
        _check_manifest_matches(spec, manifest)
        _check_readable_caps(spec)
        if not is_url(location):
            _prepare_local_directory(Path(location), overwrite)
        store = open_zarr_store(location, read_only=False)
        try:
            group = zarr.create_group(
                store, attributes={ATTRIBUTE_KEY: spec.to_dict()}, overwrite=overwrite
            )
            handle = cls(group, spec, str(location), read_only=False)
            for layout in handle.layout.values():
                group.create_array(
                    layout.name,
                    shape=layout.shape,
                    dtype=layout.dtype,
                    fill_value=layout.fill_value,
                    **chunk_codecs(layout),
                )
            handle._write_manifest(manifest)
        except OSError as exc:
            failure = write_failure(exc, str(location))
            if failure is None:
                raise
            raise failure from exc
        return handle

    @classmethod
    def open(
        cls, location: str | Path | Store, mode: str = "r", cache: str | Path | None = None
    ) -> LabelStore:
        """Open an existing store after validating its metadata (see ``validation``).

        ``cache`` is a local folder that keeps the chunks of a remote (URL) store once read.
        """
        if mode not in ("r", "r+"):
            raise ValueError(f"mode must be 'r' or 'r+', got {mode!r}")
        read_only = mode == "r"
        if cache is not None and is_url(location):
            if not read_only:
                raise StoreError(f"{location}: a chunk cache is for reading only; use mode 'r'")
            from fkd.storage_formats.chunk_cache import LocalChunkCache

            cached = LocalChunkCache(open_zarr_store(location, read_only=True), cache)
            return cls._open_validated(cached, str(location), read_only, "r")
        if isinstance(location, (str, Path)) and not is_url(location):
            _check_local_location(Path(location))
        store = open_zarr_store(location, read_only=read_only)
        return cls._open_validated(store, str(location), read_only, mode)

    @classmethod
    def _open_validated(cls, store: Store, location: str, read_only: bool, mode: str) -> LabelStore:
        spec = validate_store_metadata(store, location)
        try:
            group = zarr.open_group(store, mode="r" if read_only else "r+", use_consolidated=False)
        except Exception as exc:  # zarr raises several types for unreadable metadata
            raise StoreFormatError(f"{location}: cannot open as a Zarr v3 group: {exc}") from None
        return cls(group, spec, location, read_only=read_only)

    # Blocks ------------------------------------------------------------------

    @property
    def num_blocks(self) -> int:
        return self.spec.num_blocks

    def block_range(self, block: int) -> tuple[int, int]:
        return self.spec.block_range(block)

    def block_of(self, image: int) -> int:
        return image // self.spec.block_size

    def committed_mask(self, refresh: bool = False) -> NDArray[np.bool_]:
        """One bool per block: is its commit marker present?

        Read once per handle (``refresh`` reads again, to see other writers' commits);
        this handle's own commits update it.  A local or zipped store answers with one
        listing of the markers' folder; any other store reads the marker array.
        """
        if self._committed is None or refresh:
            listed = commit_listing(self.group.store_path.store, self.num_blocks)
            if listed is None:
                listed = np.asarray(self._read(COMMIT_ARRAY, slice(None))) == COMMITTED
            self._committed = listed
        return self._committed

    def is_committed(self, block: int) -> bool:
        """Whether ``block``'s marker is present now (one existence check)."""
        key = chunk_key(self.layout[COMMIT_ARRAY], block)
        return bool(sync(self.group.store_path.store.exists(key)))

    def committed_blocks(self) -> list[int]:
        return [int(b) for b in np.flatnonzero(self.committed_mask(refresh=True))]

    def uncommitted_blocks(self) -> list[int]:
        return [int(b) for b in np.flatnonzero(~self.committed_mask(refresh=True))]

    def is_complete(self) -> bool:
        return bool(self.committed_mask(refresh=True).all())

    def write_block(self, block: int, data: BlockData) -> None:
        """Write every array of ``block`` (whole shards), then its commit marker.

        The caller must be the block's only writer.  Writing a committed block
        again is allowed (a re-run after a lost worker) and must give the
        same bytes: generation is deterministic.
        """
        if self.read_only:
            raise StoreError(f"{self.location}: opened read-only; open with mode='r+' to write")
        start, stop = self.block_range(block)
        arrays = self._block_arrays(block, data, stop - start)
        fresh = not self.is_committed(block)
        try:
            for name, values in arrays.items():
                self._write_rows(name, block, values, fresh)
            self._array(COMMIT_ARRAY)[block] = COMMITTED
            if self._committed is not None:
                self._committed[block] = True
        except OSError as exc:  # disk full, file-size limit, I/O error: the block stays open
            failure = write_failure(exc, self.location)
            if failure is None:
                raise
            raise failure from exc
        finally:
            self._per_image.clear()

    def _write_rows(self, name: str, block: int, values: NDArray[Any], fresh: bool) -> None:
        """Write one array's rows of ``block``: its whole chunk or shard.

        zarr reads an existing shard before replacing it and merges the two, so a
        shard left by a killed run could give other bytes than a first write.  An
        uncommitted (``fresh``) block's old shard is therefore deleted first: no
        reader may read it and this is its only writer.  A torn shard of a committed
        block (a crash without fsync, a damaged disk) cannot be read and must not
        stop a rewrite: it is deleted too and the shard written whole.
        """
        start, stop = self.block_range(block)
        array = self._array(name)
        key = chunk_key(self.layout[name], block)
        if fresh:
            sync(self.group.store_path.store.delete(key))
        try:
            array[start:stop] = values
        except OSError:
            raise
        except Exception:
            sync(self.group.store_path.store.delete(key))
            array[start:stop] = values

    # Reading ------------------------------------------------------------------

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
        return [(i, _decode_text(row)) for i, row in zip(failed, reasons, strict=True)]

    def read_images(self, indices: Sequence[int] | NDArray[Any]) -> ImageBatch:
        """Boxes, flips and stored labels of the given images, in one call.

        Raises ``UncommittedBlockError`` if any image lies in an uncommitted block.
        """
        index = np.asarray(indices, dtype=np.int64).reshape(-1)
        self._check_readable(index)
        height = self.per_image_rows("image_height", index)
        width = self.per_image_rows("image_width", index)
        status = self.per_image_rows("image_status", index)
        if (status == STATUS_PENDING).any():
            image = int(index[np.flatnonzero(status == STATUS_PENDING)[0]])
            raise CorruptChunkError(
                f"{self.location}: image {image} has no status although its block "
                f"{self.block_of(image)} is committed (a chunk is missing)",
                repair_advice("block", [self.block_of(image)]),
            )
        names = [label_array_name(field.name) for field in self.codec.fields()]
        per_crop = self._read_per_crop(names + self._box_arrays(), index)
        boxes, flips = self._boxes(index, height, width, per_crop)
        labels = {
            field.name: per_crop[label_array_name(field.name)] for field in self.codec.fields()
        }
        return ImageBatch(index, height, width, status, boxes, flips, labels)

    def read_image(self, index: int) -> ImageBatch:
        return self.read_images([index])

    def read_boxes(
        self, indices: Sequence[int] | NDArray[Any], crops: NDArray[Any] | None = None
    ) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
        """Fraction boxes ``[n, M, 4]`` and flips ``[n, M]`` of the images, without labels.

        ``crops`` (``[n, k]`` crop numbers) keeps only those crops.  Boxes are read
        where the store holds them and derived from the crop sampler where it does not.
        """
        index = np.asarray(indices, dtype=np.int64).reshape(-1)
        self._check_readable(index)
        height = self.per_image_rows("image_height", index)
        width = self.per_image_rows("image_width", index)
        return self._boxes(
            index, height, width, self._read_per_crop(self._box_arrays(), index), crops
        )

    def _box_arrays(self) -> list[str]:
        return ["crop_box", "crop_flip"] if self.spec.crops.boxes_stored else []

    def _boxes(
        self,
        index: NDArray[np.int64],
        height: NDArray[Any],
        width: NDArray[Any],
        per_crop: Mapping[str, NDArray[Any]],
        crops: NDArray[Any] | None = None,
    ) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
        """The one place that decides between stored boxes and boxes derived from the seed."""
        if self.spec.crops.boxes_stored:
            boxes = crop_sampler.grid_to_fractions(per_crop["crop_box"])
            flips = np.asarray(per_crop["crop_flip"], dtype=bool)
            if crops is None:
                return boxes, flips
            chosen = np.asarray(crops, dtype=np.int64).reshape(len(index), -1)
            return (
                np.take_along_axis(boxes, chosen[..., None], axis=1),
                np.take_along_axis(flips, chosen, axis=1),
            )
        pixels, flips = crop_sampler.sample_boxes(self.spec.crops, index, height, width, crops)
        return crop_sampler.boxes_to_fractions(pixels, height, width), flips

    def _read_per_crop(self, names: list[str], index: NDArray[np.int64]) -> dict[str, NDArray[Any]]:
        if not names:
            return {}
        readers = self._row_readers(names) if index.size <= FAST_READ_MAX_IMAGES else None
        if readers is not None:
            return {name: np.stack([readers[name].read(int(i)) for i in index]) for name in names}
        return self._read_concurrently(names, index)

    def decode_labels(self, labels: Mapping[str, NDArray[Any]]) -> NDArray[np.float32]:
        """Dense probabilities ``[..., C]`` from stored label arrays."""
        return self.codec.decode(labels)

    # Internals ------------------------------------------------------------------

    def array(self, name: str) -> Any:
        """The zarr array ``name`` (writable with empty chunks kept, when the store is)."""
        return self._array(name)

    def _array(self, name: str) -> Any:
        if name not in self._arrays:
            array: Any = bounded_codecs.bounded(self.group[name])
            if not self.read_only:
                # Every chunk of a committed block exists, even one of all zeros, so a lost
                # chunk file is detectable (``fkd verify``) rather than read as fill values.
                array = array.with_config({"write_empty_chunks": True})
            self._arrays[name] = array
        return self._arrays[name]

    def _read(self, name: str, selection: Any) -> NDArray[Any]:
        """Read ``array[selection]`` (orthogonal), naming the array if a chunk is bad."""
        try:
            array = self._array(name)
            if isinstance(selection, np.ndarray):
                return np.asarray(array.get_orthogonal_selection(selection))
            return np.asarray(array[selection])
        except StoreError:
            raise
        except Exception as exc:
            where = _describe_selection(selection)
            raise CorruptChunkError(
                f"{self.location}: array {name!r}, {where}: unreadable chunk "
                f"({type(exc).__name__}: {exc})",
                self._repair_advice(name, selection),
            ) from exc

    def _repair_advice(self, name: str, selection: Any) -> str:
        """``repair_advice`` for a failed read of ``selection`` (rows) of array ``name``."""
        layout, size = self.layout[name], self.spec.block_size
        if layout.writer != "block":
            return repair_advice(layout.writer, [])
        if isinstance(selection, slice):
            start, stop, _ = selection.indices(self.spec.num_images)
            blocks = list(range(start // size, (stop - 1) // size + 1)) if stop > start else []
        else:
            blocks = np.unique(np.asarray(selection, dtype=np.int64) // size).tolist()
        return repair_advice(layout.writer, blocks)

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

    def _read_concurrently(self, names: list[str], index: NDArray[np.int64]) -> dict[str, Any]:
        """``array[index]`` of several arrays at once, in one pass of zarr's event loop."""

        arrays = {name: self._array(name)._async_array for name in names}  # opened outside

        async def read(name: str) -> NDArray[Any]:
            array = arrays[name]
            try:
                if index.size == 1:  # a slice is cheaper than an orthogonal selection
                    start = int(index[0])
                    return np.asarray(await array.getitem(slice(start, start + 1)))
                return np.asarray(await array.get_orthogonal_selection((index,)))
            except StoreError:
                raise
            except Exception as exc:
                raise CorruptChunkError(
                    f"{self.location}: array {name!r}, {_describe_selection(index)}: unreadable "
                    f"chunk ({type(exc).__name__}: {exc})",
                    self._repair_advice(name, index),
                ) from exc

        async def read_all() -> list[NDArray[Any]]:
            return list(await asyncio.gather(*(read(name) for name in names)))

        return dict(zip(names, sync(read_all()), strict=True))

    def _write_manifest(self, manifest: Manifest) -> None:
        if self.spec.format_version == 1:  # kept to make v1 stores for compatibility tests
            rows = encode_paths(manifest.paths, self.spec.max_path_bytes)
            self._array("image_path")[:] = rows
        else:
            self._array("image_path_data")[:] = manifest.path_data
            self._array("image_path_offsets")[:] = manifest.path_offsets.astype(np.uint64)
        self._array("image_nbytes")[:] = manifest.nbytes
        self._array("image_target")[:] = manifest.targets
        if self.spec.file_hashes:
            assert manifest.digests is not None
            self._array("image_sha256")[:] = manifest.digests
        self._manifest = manifest

    def _block_arrays(self, block: int, data: BlockData, count: int) -> dict[str, NDArray[Any]]:
        """Validate one block's data and return it by array name."""
        m = self.spec.crops_per_image
        where = f"{self.location}: block {block}"
        status = np.asarray(data.status, dtype=np.uint8)
        if status.shape != (count,) or not np.isin(status, (STATUS_OK, STATUS_FAILED)).all():
            raise ValueError(f"{where}: status must be {count} values of ok (1) or failed (2)")
        if len(data.errors) != count:
            raise ValueError(f"{where}: {len(data.errors)} error strings for {count} images")
        arrays: dict[str, NDArray[Any]] = {
            "image_height": np.asarray(data.height, dtype=np.uint32),
            "image_width": np.asarray(data.width, dtype=np.uint32),
            "image_status": status,
            "image_error": np.stack([_encode_text(e) for e in data.errors]),
        }
        for field in self.codec.fields():
            values = np.asarray(data.labels[field.name])
            _check_label_field(values, field.dtype, (count, m, *field.shape), where, field.name)
            if (
                field.name == "index"
                and values.size
                and int(values.max()) >= self.codec.num_classes
            ):
                raise ValueError(f"{where}: label index {int(values.max())} >= num_classes")
            arrays[label_array_name(field.name)] = values
        if self.spec.crops.boxes_stored:
            if data.boxes is None or data.flips is None:
                raise ValueError(f"{where}: this store keeps boxes; give boxes and flips")
            arrays["crop_box"] = crop_sampler.fractions_to_grid(data.boxes)
            arrays["crop_flip"] = np.asarray(data.flips, dtype=bool)
        for name, values in arrays.items():
            expected = (count, *self.layout[name].shape[1:])
            if values.shape != expected:
                raise ValueError(f"{where}: {name} has shape {values.shape}, expected {expected}")
        return arrays


def commit_listing(store: Store, num_blocks: int) -> NDArray[np.bool_] | None:
    """The committed mask from one listing of ``block_commit/c``, where listing is exact.

    A local store lists its folder (``os.scandir``: no file is opened); a zipped one
    its directory.  Other stores (HTTP may not list at all) return ``None``: read the
    markers instead.  zarr writes each chunk to a temporary and renames it, so a
    marker that exists is whole; only names ``0 .. num_blocks - 1`` count.
    """
    from zarr.storage import ZipStore

    prefix = f"{COMMIT_ARRAY}/c"
    if isinstance(store, LocalStore):
        if isinstance(store, ContainedLocalStore):
            store.contained(prefix)
        try:
            with os.scandir(store.root / prefix) as entries:
                names = [entry.name for entry in entries]
        except (FileNotFoundError, NotADirectoryError):
            names = []
        except OSError as exc:
            raise StoreError(f"cannot list {store.root / prefix}: {exc}") from exc
    elif isinstance(store, ZipStore):

        async def listed() -> list[str]:
            return [name async for name in store.list_dir(prefix)]

        names = sync(listed())
    else:
        return None
    mask = np.zeros(num_blocks, dtype=bool)
    blocks = [int(n) for n in names if n.isascii() and n.isdigit() and str(int(n)) == n]
    mask[[b for b in blocks if b < num_blocks]] = True
    return mask


def validate_store_metadata(store: Store, where: str) -> StoreSpec:
    """Validate the group and every expected array's metadata; return the spec."""
    group_doc = parse_json_document(read_key(store, "zarr.json"), f"{where}/zarr.json")
    spec = spec_from_group_metadata(group_doc, where)
    for name, layout in store_layout(spec).items():
        key = f"{name}/zarr.json"
        doc = parse_json_document(read_key(store, key), f"{where}/{key}")
        check_array_metadata(doc, layout, where)
    return spec


def _check_local_location(path: Path) -> None:
    if not path.exists():
        raise StoreError(f"{path}: no such store (check the path)")
    if path.is_file() and path.suffix != ".zip":
        raise StoreError(f"{path} is a file, not a store (a directory or a .zip)")


def _check_manifest_matches(spec: StoreSpec, manifest: Manifest) -> None:
    if len(manifest) != spec.num_images:
        raise ValueError(f"manifest has {len(manifest)} images but the spec says {spec.num_images}")
    if (manifest.sha256 is not None) != spec.file_hashes:
        raise ValueError("the spec's file_hashes and the manifest's sha256 disagree")
    if manifest.digest() != spec.manifest_digest:
        raise ValueError("the spec's manifest_digest does not match the manifest")
    if spec.format_version >= 2 and manifest.path_data.size != spec.path_data_bytes:
        raise ValueError(
            f"the manifest's paths hold {manifest.path_data.size} bytes but the spec's "
            f"path_data_bytes is {spec.path_data_bytes}"
        )
    if manifest.max_path_bytes > spec.max_path_bytes:
        raise ValueError(
            f"a manifest path has {manifest.max_path_bytes} bytes, over the spec's "
            f"max_path_bytes={spec.max_path_bytes}"
        )


def _check_readable_caps(spec: StoreSpec) -> None:
    """Refuse to create a store whose chunks a reader would refuse to open."""
    for layout in store_layout(spec).values():
        if (
            layout.inner_nbytes > MAX_INNER_CHUNK_BYTES
            or layout.outer_nbytes > MAX_OUTER_CHUNK_BYTES
        ):
            raise ValueError(
                f"array {layout.name!r}: a block of {spec.block_size} images is "
                f"{layout.outer_nbytes} bytes, over the reader's cap; use a smaller block size"
            )


def _check_label_field(
    values: NDArray[Any], dtype: np.dtype[Any], shape: tuple[int, ...], where: str, name: str
) -> None:
    if values.dtype != dtype or values.shape != shape:
        raise ValueError(
            f"{where}: label field {name!r} is {values.dtype}{list(values.shape)}, "
            f"expected {dtype}{list(shape)}"
        )
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        raise ValueError(f"{where}: label field {name!r} holds NaN or infinity; nothing committed")


def _prepare_local_directory(path: Path, overwrite: bool) -> None:
    """Refuse to clobber anything that is not an fkd store; remove an old store if asked."""
    if not path.exists():
        return
    if path.is_dir() and not any(path.iterdir()):
        return
    is_store = (path / "zarr.json").is_file() and _looks_like_fkd_group(path / "zarr.json")
    if not is_store:
        raise StoreExistsError(
            f"{path} exists and is not an fkd label store; refusing to overwrite it "
            "(choose another path)"
        )
    if not overwrite:
        raise StoreExistsError(
            f"{path} already holds an fkd label store; pass --overwrite to replace it"
        )
    shutil.rmtree(path)


def _looks_like_fkd_group(zarr_json: Path) -> bool:
    try:
        doc = parse_json_document(zarr_json.read_bytes(), str(zarr_json))
        spec_from_group_metadata(doc, str(zarr_json))
    except (OSError, StoreError):
        return False
    return True


def _encode_text(text: str) -> NDArray[np.uint8]:
    raw = text.encode("utf-8")[:ERROR_BYTES]
    # Never cut a multi-byte character in half.
    raw = raw.decode("utf-8", errors="ignore").encode("utf-8")
    out = np.zeros(ERROR_BYTES, dtype=np.uint8)
    out[: len(raw)] = np.frombuffer(raw, dtype=np.uint8)
    return out


def _decode_text(row: NDArray[Any]) -> str:
    return bytes(np.asarray(row, dtype=np.uint8)).rstrip(b"\x00").decode("utf-8", "replace")


def _describe_selection(selection: Any) -> str:
    if isinstance(selection, np.ndarray) and selection.size:
        return f"images {int(selection.min())}..{int(selection.max())}"
    if isinstance(selection, slice) and selection.start is not None:
        return f"images {selection.start}..{selection.stop}"
    if isinstance(selection, (int, np.integer)):
        return f"index {int(selection)}"
    return "whole array"


__all__ = [
    "STATUS_FAILED",
    "STATUS_OK",
    "STATUS_PENDING",
    "BlockData",
    "ImageBatch",
    "LabelStore",
    "validate_store_metadata",
]


def _runs(values: NDArray[Any]) -> list[tuple[int, int]]:
    """(first, last) of each run of consecutive integers in sorted ``values``."""
    if values.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(values) != 1)
    starts = np.concatenate([[0], breaks + 1])
    ends = np.concatenate([breaks, [values.size - 1]])
    return [(int(values[a]), int(values[b])) for a, b in zip(starts, ends, strict=True)]

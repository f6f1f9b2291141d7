"""``LabelStore``: create or open a store, then read it (``store_reader``) or commit
blocks into it (``block_commit``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.abc.store import Store
from zarr.codecs import BytesCodec, Crc32cCodec, ZstdCodec

from fkd.storage_formats.block_commit import BlockWriter
from fkd.storage_formats.errors import StoreError, StoreFormatError, write_failure
from fkd.storage_formats.layout import ArrayLayout, store_layout
from fkd.storage_formats.manifest import Manifest
from fkd.storage_formats.path_bytes import encode_paths
from fkd.storage_formats.spec import StoreSpec
from fkd.storage_formats.store_location import (
    check_local_location,
    is_url,
    open_zarr_store,
    prepare_local_directory,
    validate_store_metadata,
)
from fkd.storage_formats.store_reader import StoreReader
from fkd.storage_formats.validation import (
    ATTRIBUTE_KEY,
    MAX_INNER_CHUNK_BYTES,
    MAX_OUTER_CHUNK_BYTES,
)

COMPRESSION_LEVEL = 5


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


class LabelStore(StoreReader, BlockWriter):
    """A handle on one fkd label store (a Zarr v3 group): ``create`` or ``open`` one, then
    read it (``StoreReader``) or commit blocks into it (``BlockWriter.write_block``)."""

    # Creating and opening ---------------------------------------------------

    @classmethod
    def create(
        cls, location: str | Path, spec: StoreSpec, manifest: Manifest, overwrite: bool = False
    ) -> LabelStore:
        """Create the store's metadata and write its manifest; no block is committed."""
        _check_manifest_matches(spec, manifest)
        _check_readable_caps(spec)
        if not is_url(location):
            prepare_local_directory(Path(location), overwrite)
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
            check_local_location(Path(location))
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
        index_nbytes = 0
        if layout.inner is not None:  # (offset, nbytes) per inner chunk of a shard
            index_nbytes = 16 * math.prod(
                o // i for o, i in zip(layout.outer, layout.inner, strict=True)
            )
        if (
            layout.inner_nbytes > MAX_INNER_CHUNK_BYTES
            or layout.outer_nbytes > MAX_OUTER_CHUNK_BYTES
            or index_nbytes > MAX_INNER_CHUNK_BYTES
        ):
            raise ValueError(
                f"array {layout.name!r}: a block of {spec.block_size} images is "
                f"{layout.outer_nbytes} bytes ({index_nbytes} of shard index), over the "
                "reader's cap; use a smaller block size"
            )

"""The old home of the Zarr label store, kept so ``fkd.storage_formats.zarr_store`` imports
still work.  The store now lives in files of one idea each:

- ``label_store.py``: ``LabelStore``, creating and opening a store;
- ``block_commit.py``: writing a block and its commit marker (``BlockData``);
- ``store_reader.py``: reading the manifest, per-image arrays and crops (``ImageBatch``);
- ``store_handle.py``: what those share (arrays, blocks, which are committed);
- ``store_location.py``: local folder, ``.zip`` or URL to a zarr store; metadata checks;
- ``contained_local_store.py``: a local store that never leaves its folder.
"""

from fkd.storage_formats.block_commit import BlockData
from fkd.storage_formats.contained_local_store import ContainedLocalStore
from fkd.storage_formats.label_store import COMPRESSION_LEVEL, LabelStore, chunk_codecs
from fkd.storage_formats.layout import STATUS_FAILED, STATUS_OK, STATUS_PENDING
from fkd.storage_formats.store_handle import commit_listing
from fkd.storage_formats.store_location import (
    is_url,
    open_zarr_store,
    read_key,
    validate_store_metadata,
)
from fkd.storage_formats.store_reader import FAST_READ_MAX_IMAGES, ImageBatch, ReaderCache

__all__ = [
    "COMPRESSION_LEVEL",
    "FAST_READ_MAX_IMAGES",
    "STATUS_FAILED",
    "STATUS_OK",
    "STATUS_PENDING",
    "BlockData",
    "ContainedLocalStore",
    "ImageBatch",
    "LabelStore",
    "ReaderCache",
    "chunk_codecs",
    "commit_listing",
    "is_url",
    "open_zarr_store",
    "read_key",
    "validate_store_metadata",
]

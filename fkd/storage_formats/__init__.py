"""The torch-free core: the store spec, label codecs, crop sampler and Zarr store.

Imports numpy, zarr and numcodecs only, so a consumer of a published store can
read it without torch.
"""

from fkd.storage_formats.block_commit import BlockData
from fkd.storage_formats.codec_registry import codec_names, register_codec
from fkd.storage_formats.crop_sampler import sample_boxes
from fkd.storage_formats.errors import (
    CorruptChunkError,
    StoreError,
    StoreExistsError,
    StoreFormatError,
    StoreWriteError,
    UncommittedBlockError,
    UnsafePathError,
)
from fkd.storage_formats.label_codecs import LabelCodec, LabelField, get_codec
from fkd.storage_formats.label_store import LabelStore
from fkd.storage_formats.layout import STATUS_FAILED, STATUS_OK, STATUS_PENDING
from fkd.storage_formats.manifest import Manifest
from fkd.storage_formats.spec import (
    FORMAT_VERSION,
    CodecSpec,
    CropSpec,
    StoreSpec,
    TeacherInfo,
)
from fkd.storage_formats.store_reader import ImageBatch

__all__ = [
    "FORMAT_VERSION",
    "STATUS_FAILED",
    "STATUS_OK",
    "STATUS_PENDING",
    "BlockData",
    "CodecSpec",
    "CorruptChunkError",
    "CropSpec",
    "ImageBatch",
    "LabelCodec",
    "LabelField",
    "LabelStore",
    "Manifest",
    "StoreError",
    "StoreExistsError",
    "StoreFormatError",
    "StoreSpec",
    "StoreWriteError",
    "TeacherInfo",
    "UncommittedBlockError",
    "UnsafePathError",
    "codec_names",
    "get_codec",
    "register_codec",
    "sample_boxes",
]

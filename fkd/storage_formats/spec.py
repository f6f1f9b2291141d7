"""The store specification: frozen dataclasses written into the group attributes.

Each spec validates itself at construction and round-trips through plain JSON
with ``to_dict`` / ``from_dict``.  ``fkd inspect`` and the student loader rebuild
everything from these, never from command-line flags.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fkd.storage_formats.spec_parts import (
    BOX_SAMPLERS,
    INTERPOLATIONS,
    MAX_CLASSES,
    MAX_CROPS_PER_IMAGE,
    RESAMPLINGS,
    VALUE_DTYPES,
    CodecSpec,
    CropSpec,
    TeacherInfo,
    _check_unknown_keys,
    _require,
    fields_as_json,
    index_dtype_for,
)

__all__ = [
    # the parts' names, importable from here too
    "BOX_SAMPLERS",
    "DEFAULT_IMAGES_PER_CHUNK",
    "DEFAULT_IMAGES_PER_CHUNK_V3",
    "FORMAT_VERSION",
    "INTERPOLATIONS",
    "MAX_BLOCK_SIZE",
    "MAX_CLASSES",
    "MAX_CROPS_PER_IMAGE",
    "MAX_IMAGES",
    "MAX_PATH_BYTES",
    "RESAMPLINGS",
    "SUPPORTED_FORMAT_VERSIONS",
    "TARGET_CROPS_PER_CHUNK",
    "VALUE_DTYPES",
    "CodecSpec",
    "CropSpec",
    "StoreSpec",
    "TeacherInfo",
    "default_crops_per_chunk",
    "diff_generation",
    "fields_as_json",
    "index_dtype_for",
]

# v2 keeps the manifest's paths as one byte array plus offsets, in a few large chunks
# (v1: one NUL-padded row per image, chunked per block).  v3 also splits the per-crop
# arrays' inner chunks along the crop axis (``crops_per_chunk``), so that reading k crops
# of an image decodes O(k) bytes whatever M is.  fkd reads all three and writes v3.
FORMAT_VERSION = 3
SUPPORTED_FORMAT_VERSIONS = (1, 2, 3)

# Caps applied to every store we create or open.  They bound what an untrusted
# store can make a reader allocate.
MAX_IMAGES = 2**31 - 1
MAX_BLOCK_SIZE = 65_536
MAX_PATH_BYTES = 4_096

# Images per inner chunk of the per-crop arrays in v1/v2: 16 wrote ~7x faster than 1 at
# slightly fewer bytes, with one-image reads unchanged (benchmarks/store_bench.py).
DEFAULT_IMAGES_PER_CHUNK = 16
# v3: one image per inner chunk and about this many crops (crops of one image share their
# top classes, so they compress best together; benchmarks/label_read_bench.py).
DEFAULT_IMAGES_PER_CHUNK_V3 = 1
TARGET_CROPS_PER_CHUNK = 256


def default_crops_per_chunk(crops_per_image: int) -> int:
    """v3's crops per inner chunk: at most ``TARGET_CROPS_PER_CHUNK``, as even as possible
    (``ceil(M / ceil(M / 256))``), so the padding past M is less than one crop per chunk."""
    chunks = -(-crops_per_image // TARGET_CROPS_PER_CHUNK)
    return -(-crops_per_image // chunks)


@dataclass(frozen=True)
class StoreSpec:
    """Everything that defines a store's layout and meaning.

    ``generation`` parameters (codec, crops, teacher, block size, manifest
    digest) decide the bytes; ``software`` and ``created`` are provenance only.
    ``path_data_bytes`` (format v2) is the total UTF-8 length of the manifest's
    paths, the length of ``image_path_data``; ``max_path_bytes`` caps one path.
    """

    num_images: int
    codec: CodecSpec
    crops: CropSpec
    teacher: TeacherInfo
    manifest_digest: str
    block_size: int = 256
    images_per_chunk: int = 0
    crops_per_chunk: int = 0
    max_path_bytes: int = 256
    file_hashes: bool = False
    path_data_bytes: int = 0
    format_version: int = FORMAT_VERSION
    software: Mapping[str, str] = field(default_factory=dict)
    created: str = ""
    # The (images_per_chunk, crops_per_chunk) this spec chose as defaults (not part of the
    # format): ``dataclasses.replace`` carries it, so a replaced spec whose chunking was the
    # default gets the default of its own version again (resuming a v2 store from a v3 spec).
    defaulted_chunks: tuple[int, int] = field(default=(0, 0), compare=False, repr=False)

    def __post_init__(self) -> None:
        _require(
            self.format_version in SUPPORTED_FORMAT_VERSIONS,
            f"format_version {self.format_version!r} is not supported by this fkd "
            f"(supported: {list(SUPPORTED_FORMAT_VERSIONS)}); upgrade fkd to read it",
        )
        _require(
            isinstance(self.num_images, int) and 1 <= self.num_images <= MAX_IMAGES,
            f"num_images must be an integer in [1, {MAX_IMAGES}], got {self.num_images!r}",
        )
        _require(
            isinstance(self.block_size, int) and 1 <= self.block_size <= MAX_BLOCK_SIZE,
            f"block_size must be an integer in [1, {MAX_BLOCK_SIZE}], got {self.block_size!r}",
        )
        self._resolve_chunking()
        _require(
            isinstance(self.max_path_bytes, int) and 1 <= self.max_path_bytes <= MAX_PATH_BYTES,
            f"max_path_bytes must be an integer in [1, {MAX_PATH_BYTES}], "
            f"got {self.max_path_bytes!r}",
        )
        _require(
            isinstance(self.manifest_digest, str)
            and re.fullmatch(r"sha256:[0-9a-f]{64}", self.manifest_digest) is not None,
            f"manifest_digest must be 'sha256:' and 64 hex digits, got {self.manifest_digest!r}",
        )
        names = self.teacher.class_names
        _require(
            names is None or len(names) == self.codec.num_classes,
            f"teacher.class_names has {0 if names is None else len(names)} names for "
            f"num_classes={self.codec.num_classes}",
        )
        _require(isinstance(self.file_hashes, bool), "file_hashes must be true or false")
        if self.format_version >= 2:
            _require(
                isinstance(self.path_data_bytes, int)
                and self.num_images
                <= self.path_data_bytes
                <= self.num_images * self.max_path_bytes,
                f"path_data_bytes must be an integer in [num_images, num_images * "
                f"max_path_bytes] = [{self.num_images}, {self.num_images * self.max_path_bytes}],"
                f" got {self.path_data_bytes!r}",
            )
        else:
            _require(self.path_data_bytes == 0, "path_data_bytes is not part of format v1")
        object.__setattr__(self, "software", dict(self.software))

    def _resolve_chunking(self) -> None:
        """Fill defaulted ``images_per_chunk`` / ``crops_per_chunk`` for this version, then
        check them.  v1/v2 inner chunks hold all M crops (``crops_per_chunk`` is 0)."""
        v3 = self.format_version >= 3
        auto_images, auto_crops = self.defaulted_chunks
        if self.images_per_chunk in (0, auto_images):
            per = DEFAULT_IMAGES_PER_CHUNK_V3 if v3 else DEFAULT_IMAGES_PER_CHUNK
            auto_images = math.gcd(per, self.block_size)
            object.__setattr__(self, "images_per_chunk", auto_images)
        else:
            auto_images = 0
        m = self.crops.crops_per_image
        if not v3:
            _require(
                self.crops_per_chunk in (0, auto_crops),
                f"crops_per_chunk is part of format v3 only, got {self.crops_per_chunk!r}",
            )
            object.__setattr__(self, "crops_per_chunk", 0)
            auto_crops = 0
        elif self.crops_per_chunk in (0, auto_crops):
            auto_crops = default_crops_per_chunk(m)
            object.__setattr__(self, "crops_per_chunk", auto_crops)
        else:
            auto_crops = 0
        object.__setattr__(self, "defaulted_chunks", (auto_images, auto_crops))
        _require(
            isinstance(self.images_per_chunk, int)
            and 1 <= self.images_per_chunk <= self.block_size
            and self.block_size % self.images_per_chunk == 0,
            f"images_per_chunk must divide block_size={self.block_size}, "
            f"got {self.images_per_chunk!r}",
        )
        _require(
            not v3 or (isinstance(self.crops_per_chunk, int) and 1 <= self.crops_per_chunk <= m),
            f"crops_per_chunk must be an integer in [1, crops_per_image={m}], "
            f"got {self.crops_per_chunk!r}",
        )

    def at_version(self, version: int) -> StoreSpec:
        """This spec written in format ``version`` (to resume an older store in its own
        format): v1 has no ``path_data_bytes``; v1 and v2 have no ``crops_per_chunk``, and
        chunking left to its default takes that version's default."""
        path_data_bytes = 0 if version == 1 else self.path_data_bytes
        return dataclasses.replace(self, format_version=version, path_data_bytes=path_data_bytes)

    @property
    def crops_per_inner_chunk(self) -> int:
        """Crops per inner chunk of the per-crop arrays: ``crops_per_chunk`` (v3) or M."""
        return self.crops_per_chunk or self.crops.crops_per_image

    @property
    def padded_crops(self) -> int:
        """The per-crop shards' length along the crop axis: M rounded up to whole inner
        chunks (v3; M itself before)."""
        per = self.crops_per_inner_chunk
        return -(-self.crops.crops_per_image // per) * per

    @property
    def num_blocks(self) -> int:
        return -(-self.num_images // self.block_size)

    @property
    def crops_per_image(self) -> int:
        return self.crops.crops_per_image

    def block_range(self, block: int) -> tuple[int, int]:
        """The half-open image range [start, stop) of ``block``."""
        if not 0 <= block < self.num_blocks:
            raise IndexError(f"block {block} is out of range [0, {self.num_blocks})")
        start = block * self.block_size
        return start, min(start + self.block_size, self.num_images)

    def generation_dict(self) -> dict[str, Any]:
        """The parameters that decide the stored bytes (no provenance fields)."""
        data = self.to_dict()
        for key in ("software", "created"):
            data.pop(key)
        return data

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "num_images": self.num_images,
            "block_size": self.block_size,
            "images_per_chunk": self.images_per_chunk,
            **({"crops_per_chunk": self.crops_per_chunk} if self.format_version >= 3 else {}),
            "max_path_bytes": self.max_path_bytes,
            "file_hashes": self.file_hashes,
            **({"path_data_bytes": self.path_data_bytes} if self.format_version >= 2 else {}),
            "manifest_digest": self.manifest_digest,
            "codec": self.codec.to_dict(),
            "crops": self.crops.to_dict(),
            "teacher": self.teacher.to_dict(),
            "software": dict(self.software),
            "created": self.created,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StoreSpec:
        _require(isinstance(data, Mapping), "store spec must be a JSON object")
        version = data.get("format_version")
        _require(
            isinstance(version, int)
            and not isinstance(version, bool)
            and version in SUPPORTED_FORMAT_VERSIONS,
            f"format_version {version!r} is not supported by this fkd "
            f"(supported: {list(SUPPORTED_FORMAT_VERSIONS)}); upgrade fkd to read it",
        )
        _check_unknown_keys(cls, data)
        if isinstance(version, int) and version >= 3:
            _require("crops_per_chunk" in data, "format v3 needs the key crops_per_chunk")
        payload = dict(data)
        payload["codec"] = CodecSpec.from_dict(data["codec"])
        payload["crops"] = CropSpec.from_dict(data["crops"])
        payload["teacher"] = TeacherInfo.from_dict(data["teacher"])
        return cls(**payload)


def diff_generation(old: StoreSpec, new: StoreSpec) -> list[str]:
    """Dotted names of the generation parameters that differ between two specs."""
    return _diff_dicts(old.generation_dict(), new.generation_dict(), prefix="")


def _diff_dicts(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str) -> list[str]:
    differing = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            differing += _diff_dicts(a, b, prefix=f"{prefix}{key}.")
        elif a != b:
            differing.append(f"{prefix}{key}")
    return differing

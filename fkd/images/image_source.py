"""An ``ImageSource``: a root folder and the ``Manifest`` of its images, in store order.

The scans (``folder_scan``, ``file_list``) find the images; ``build_source`` sorts
them by relative POSIX path, builds the manifest and hashes the files when asked.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from fkd.exceptions import UserInputError
from fkd.storage_formats.manifest import Manifest

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}
)
"""Lower-case suffixes (with the dot) of the files a folder scan picks up, in any case."""

TRAIN_SUBFOLDER = "train"
SHOWN_NAMES = 5


class ImageSourceError(UserInputError):
    """DATA is not a usable image folder or file list; the message says why and the fix."""


@dataclass(frozen=True)
class ImageSource:
    """Where the images are and which ones, in store order.

    ``class_names`` is the class of each target index, or ``None`` when the
    targets are bare integers or absent (-1).  The manifest carries each file's
    sha256 when the scan was asked to hash.
    """

    root: Path
    manifest: Manifest
    class_names: tuple[str, ...] | None

    @property
    def sha256(self) -> tuple[str, ...] | None:
        """Each file's hex digest, in manifest order (``None`` unless hashed)."""
        return self.manifest.sha256

    def __len__(self) -> int:
        return len(self.manifest)

    def path_of(self, index: int) -> Path:
        """The file of image ``index``: ``root / manifest.paths[index]``."""
        return self.root / self.manifest.paths[index]


@dataclass(frozen=True)
class FoundImage:
    """One image found by a scan: relative POSIX path, size in bytes, target or -1."""

    path: str
    nbytes: int
    target: int


def image_folder_root(data: Path) -> Path:
    """``DATA/train`` when it is a folder, else DATA itself."""
    train = data / TRAIN_SUBFOLDER
    return train if train.is_dir() else data


def source_root(data: str | Path) -> Path:
    """The folder that DATA's manifest paths are relative to, found without a scan:
    ``image_folder_root`` of a folder, a file list's own folder."""
    path = Path(data)
    return image_folder_root(path) if path.is_dir() else path.parent


def build_source(
    root: Path,
    found: Iterable[FoundImage],
    class_names: tuple[str, ...] | None,
    hash_files: bool,
) -> ImageSource:
    """Sort by path, build the manifest, hash when asked."""
    ordered = sorted(found, key=lambda image: image.path)
    paths = [image.path for image in ordered]
    digests = tuple(sha256_of(root / path) for path in paths) if hash_files else None
    manifest = Manifest.build(
        paths,
        [image.nbytes for image in ordered],
        [image.target for image in ordered],
        sha256=digests,
    )
    return ImageSource(root, manifest, class_names)


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    try:
        with path.open("rb") as stream:
            digest = hashlib.file_digest(stream, "sha256")
    except OSError as error:
        raise ImageSourceError(
            f"cannot read {path} to hash it: {error.strerror or error}; check its permissions"
        ) from error
    return digest.hexdigest()


def is_image_name(name: str) -> bool:
    """Whether a file name ends in one of ``IMAGE_EXTENSIONS``, in any case."""
    return PurePosixPath(name).suffix.lower() in IMAGE_EXTENSIONS


def few_names(names: Sequence[str]) -> str:
    """The first ``SHOWN_NAMES`` names, comma-separated, and how many more there are."""
    shown = ", ".join(names[:SHOWN_NAMES])
    more = f" and {len(names) - SHOWN_NAMES} more" if len(names) > SHOWN_NAMES else ""
    return shown + more


def extensions_text() -> str:
    """The extensions looked for, for messages: ``.bmp/.gif/...``."""
    return "/".join(sorted(IMAGE_EXTENSIONS))

"""The dataset manifest: which image each row of the store describes.

A manifest lists, in store order, every image's relative path (POSIX, UTF-8),
its size in bytes, and its ground-truth class (or -1).  Its digest is recorded
in the store so that a reader can tell whether a folder still matches.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fkd.storage_formats.spec import MAX_PATH_BYTES

NO_TARGET = -1


def check_relative_path(path: str) -> str:
    """Return ``path`` if it is a safe relative POSIX path, else raise ``ValueError``."""
    if not path or "\x00" in path or "\\" in path:
        raise ValueError(f"manifest path {path!r} is empty or holds a NUL or backslash")
    pure = PurePosixPath(path)
    if pure.is_absolute() or ".." in pure.parts or str(pure) != path:
        raise ValueError(f"manifest path {path!r} must be relative, normalised and without '..'")
    return path


@dataclass(frozen=True, eq=False)
class Manifest:
    """Relative paths, byte sizes and targets of the images, in store order.

    Two manifests are equal when their digests are.
    """

    paths: tuple[str, ...]
    nbytes: NDArray[np.uint64]
    targets: NDArray[np.int32]
    sha256: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        paths = tuple(check_relative_path(p) for p in self.paths)
        if not paths:
            raise ValueError("a manifest needs at least one image")
        object.__setattr__(self, "paths", paths)
        object.__setattr__(self, "nbytes", np.asarray(self.nbytes, dtype=np.uint64))
        object.__setattr__(self, "targets", np.asarray(self.targets, dtype=np.int32))
        if self.nbytes.shape != (len(paths),) or self.targets.shape != (len(paths),):
            raise ValueError(
                f"manifest arrays disagree: {len(paths)} paths, nbytes {self.nbytes.shape}, "
                f"targets {self.targets.shape}"
            )
        if len(set(paths)) != len(paths):
            raise ValueError("manifest paths must be unique")
        if self.sha256 is not None:
            hashes = tuple(str(h) for h in self.sha256)
            if len(hashes) != len(paths) or not all(_is_sha256(h) for h in hashes):
                raise ValueError("manifest sha256 needs one 64-hex-digit digest per image")
            object.__setattr__(self, "sha256", hashes)

    @classmethod
    def build(
        cls,
        paths: Sequence[str],
        nbytes: Sequence[int],
        targets: Sequence[int] | None = None,
        sha256: Sequence[str] | None = None,
    ) -> Manifest:
        count = len(paths)
        target_array = np.full(count, NO_TARGET) if targets is None else np.asarray(targets)
        hashes = None if sha256 is None else tuple(sha256)
        return cls(tuple(paths), np.asarray(nbytes), target_array, hashes)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Manifest) and self.digest() == other.digest()

    def __hash__(self) -> int:
        return hash(self.digest())

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def max_path_bytes(self) -> int:
        return max(len(p.encode("utf-8")) for p in self.paths)

    def digest(self) -> str:
        """sha256 over lines ``path<TAB>nbytes<TAB>target<LF>``, in order.

        With content hashes, each line is ``path<TAB>nbytes<TAB>target<TAB>sha256<LF>``.
        """
        h = hashlib.sha256()
        hashes = self.sha256 or ("",) * len(self.paths)
        rows = zip(self.paths, self.nbytes, self.targets, hashes, strict=True)
        for path, size, target, content in rows:
            tail = f"\t{content}" if content else ""
            h.update(f"{path}\t{int(size)}\t{int(target)}{tail}\n".encode())
        return "sha256:" + h.hexdigest()

    def without_hashes(self) -> Manifest:
        return Manifest(self.paths, self.nbytes, self.targets)

    def index_of(self) -> dict[str, int]:
        return {path: i for i, path in enumerate(self.paths)}


def _is_sha256(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def encode_hashes(hashes: Sequence[str]) -> NDArray[np.uint8]:
    """Hex sha256 digests to a ``[n, 32]`` uint8 array."""
    return np.frombuffer(b"".join(bytes.fromhex(h) for h in hashes), dtype=np.uint8).reshape(
        len(hashes), 32
    )


def decode_hashes(raw: NDArray[Any]) -> tuple[str, ...]:
    return tuple(bytes(row).hex() for row in np.asarray(raw, dtype=np.uint8))


def encode_paths(paths: Sequence[str], width: int) -> NDArray[np.uint8]:
    """UTF-8 paths to a NUL-padded ``[n, width]`` uint8 array."""
    if width > MAX_PATH_BYTES:
        raise ValueError(f"path width {width} is over the cap of {MAX_PATH_BYTES} bytes")
    out = np.zeros((len(paths), width), dtype=np.uint8)
    for row, path in enumerate(paths):
        raw = path.encode("utf-8")
        if len(raw) > width:
            raise ValueError(f"path {path!r} is longer than {width} bytes")
        out[row, : len(raw)] = np.frombuffer(raw, dtype=np.uint8)
    return out


def decode_paths(raw: NDArray[Any]) -> list[str]:
    """The inverse of ``encode_paths``: strip trailing NULs and decode UTF-8."""
    return [bytes(row).rstrip(b"\x00").decode("utf-8") for row in np.asarray(raw, np.uint8)]

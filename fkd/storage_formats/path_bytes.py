"""Many paths as one UTF-8 byte array plus ``N + 1`` offsets, and back.

At ImageNet-21K scale (14M images) a Python string per path costs over a gigabyte;
``PathList`` decodes a path only when asked.  Format v1 kept the paths as NUL-padded
rows instead (``encode_paths``, ``rows_to_paths``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, overload

import numpy as np
from numpy.typing import NDArray

from fkd.storage_formats.spec import MAX_PATH_BYTES


class PathList(Sequence[str]):
    """The manifest's paths as a read-only sequence of ``str``, decoded on access."""

    def __init__(self, data: NDArray[np.uint8], offsets: NDArray[np.int64]) -> None:
        self._data = data
        self._offsets = offsets

    def __len__(self) -> int:
        return len(self._offsets) - 1

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> list[str]: ...

    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        i = int(index)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"path index {index} out of range [0, {len(self)})")
        return self.encoded(i).decode("utf-8")

    def encoded(self, i: int) -> bytes:
        """The UTF-8 bytes of path ``i``."""
        return self._data[self._offsets[i] : self._offsets[i + 1]].tobytes()

    def __iter__(self) -> Iterator[str]:
        for i in range(len(self)):
            yield self.encoded(i).decode("utf-8")

    def index(self, path: Any, start: int = 0, stop: int | None = None) -> int:
        raw = str(path).encode("utf-8")
        lengths = np.diff(self._offsets)
        for i in np.flatnonzero(lengths == len(raw)).tolist():
            if start <= i < (len(self) if stop is None else stop) and self.encoded(i) == raw:
                return int(i)
        raise ValueError(f"{path!r} is not in the manifest")

    def __contains__(self, path: object) -> bool:
        try:
            self.index(path)
        except ValueError:
            return False
        return True

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PathList):
            return np.array_equal(self._offsets, other._offsets) and np.array_equal(
                self._data, other._data
            )
        if isinstance(other, (list, tuple)):
            return len(other) == len(self) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"PathList({len(self)} paths)"


def join_paths(paths: Sequence[str]) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    """``str`` paths to (UTF-8 bytes back to back, ``N + 1`` offsets)."""
    encoded = [p.encode("utf-8") for p in paths]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    return np.frombuffer(b"".join(encoded), dtype=np.uint8), offsets


def encode_paths(paths: Sequence[str], width: int) -> NDArray[np.uint8]:
    """UTF-8 paths to a NUL-padded ``[n, width]`` uint8 array (format v1's ``image_path``)."""
    if width > MAX_PATH_BYTES:
        raise ValueError(f"path width {width} is over the cap of {MAX_PATH_BYTES} bytes")
    out = np.zeros((len(paths), width), dtype=np.uint8)
    for row, path in enumerate(paths):
        raw = path.encode("utf-8")
        if len(raw) > width:
            raise ValueError(f"path {path!r} is longer than {width} bytes")
        out[row, : len(raw)] = np.frombuffer(raw, dtype=np.uint8)
    return out


def rows_to_paths(rows: NDArray[Any]) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    """NUL-padded ``[n, L]`` rows to (path bytes, offsets), trailing NULs dropped (vectorised)."""
    raw = np.asarray(rows, dtype=np.uint8)
    if raw.ndim != 2:
        raise ValueError(f"path rows must be 2-d, got shape {raw.shape}")
    nonzero = raw != 0
    width = raw.shape[1]
    lengths = np.where(nonzero.any(axis=1), width - np.argmax(nonzero[:, ::-1], axis=1), 0)
    keep = np.arange(width) < lengths[:, None]
    offsets = np.zeros(raw.shape[0] + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return raw[keep], offsets

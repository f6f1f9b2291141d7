"""The dataset manifest: which image each row of the store describes.

A manifest lists, in store order, every image's relative path (POSIX, UTF-8),
its size in bytes, and its ground-truth class (or -1).  Its digest is recorded
in the store so that a reader can tell whether a folder still matches.

At ImageNet-21K scale (14M images) a Python string per path costs over a
gigabyte, so the paths are kept as one UTF-8 byte array plus ``N + 1`` offsets,
validated and digested with vectorised numpy; a path becomes a ``str`` only
when someone asks for it (``manifest.paths[i]``).
"""

from __future__ import annotations

import codecs
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import PurePosixPath
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fkd.storage_formats.path_bytes import PathList, join_paths, rows_to_paths
from fkd.storage_formats.spec import MAX_PATH_BYTES

NO_TARGET = -1
MIN_PATH_WIDTH = 16  # the smallest ``max_path_bytes`` a new store records
SLASH, DOT, BACKSLASH, NUL = ord("/"), ord("."), ord("\\"), 0
# Rows digested (or UTF-8 checked) per numpy pass: bounds the temporaries to a few
# tens of MB at any N.
ROWS_PER_PASS = 1 << 18
HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
# Powers of an odd 64-bit constant, one per byte position of a path (for ``path_hashes``).
with np.errstate(over="ignore"):
    HASH_POWERS = np.cumprod(np.full(MAX_PATH_BYTES, 0x100000001B3, dtype=np.uint64))


def check_relative_path(path: str) -> str:
    """Return ``path`` if it is a safe relative POSIX path, else raise ``ValueError``."""
    if not path or "\x00" in path or "\\" in path:
        raise ValueError(f"manifest path {path!r} is empty or holds a NUL or backslash")
    pure = PurePosixPath(path)
    if pure.is_absolute() or ".." in pure.parts or not pure.parts or str(pure) != path:
        raise ValueError(f"manifest path {path!r} must be relative, normalised and without '..'")
    return path


@dataclass(frozen=True, eq=False)
class Manifest:
    """Relative paths, byte sizes and targets of the images, in store order.

    ``path_data`` holds every path's UTF-8 bytes back to back; path ``i`` is
    ``path_data[path_offsets[i]:path_offsets[i + 1]]``.  ``digests`` holds each
    file's sha256 as 32 bytes (``[N, 32]``) when the scan hashed them.  Two
    manifests are equal when their digests are.  Paths are validated on
    construction, vectorised; uniqueness is checked by ``build`` (a folder scan)
    and by ``fkd verify``, since it costs a Python object per path.
    """

    path_data: NDArray[np.uint8]
    path_offsets: NDArray[np.int64]
    nbytes: NDArray[np.uint64]
    targets: NDArray[np.int32]
    digests: NDArray[np.uint8] | None = None

    def __post_init__(self) -> None:
        data = np.ascontiguousarray(self.path_data, dtype=np.uint8).reshape(-1)
        offsets = np.asarray(self.path_offsets).astype(np.int64, copy=False).reshape(-1)
        object.__setattr__(self, "path_data", data)
        object.__setattr__(self, "path_offsets", offsets)
        count = offsets.size - 1
        if count < 1:
            raise ValueError("a manifest needs at least one image")
        object.__setattr__(self, "nbytes", np.asarray(self.nbytes).astype(np.uint64, copy=False))
        object.__setattr__(self, "targets", np.asarray(self.targets).astype(np.int32, copy=False))
        if self.nbytes.shape != (count,) or self.targets.shape != (count,):
            raise ValueError(
                f"manifest arrays disagree: {count} paths, nbytes {self.nbytes.shape}, "
                f"targets {self.targets.shape}"
            )
        if self.digests is not None:
            hashes = np.asarray(self.digests, dtype=np.uint8)
            if hashes.shape != (count, 32):
                raise ValueError("manifest sha256 needs one 32-byte digest per image")
            object.__setattr__(self, "digests", hashes)
        check_paths(data, offsets)

    @classmethod
    def build(
        cls,
        paths: Sequence[str],
        nbytes: Sequence[int] | NDArray[Any],
        targets: Sequence[int] | NDArray[Any] | None = None,
        sha256: Sequence[str] | None = None,
    ) -> Manifest:
        """A manifest from ``str`` paths (a folder scan); refuses duplicate paths."""
        if len(set(paths)) != len(paths):
            raise ValueError("manifest paths must be unique")
        data, offsets = join_paths(paths)
        count = len(paths)
        target_array = np.full(count, NO_TARGET) if targets is None else np.asarray(targets)
        if sha256 is not None and (
            len(sha256) != count or not all(_is_sha256(str(h)) for h in sha256)
        ):
            raise ValueError("manifest sha256 needs one 64-hex-digit digest per image")
        hashes = None if sha256 is None else encode_hashes(sha256)
        return cls(data, offsets, np.asarray(nbytes), target_array, hashes)

    @classmethod
    def from_rows(
        cls,
        rows: NDArray[Any],
        nbytes: NDArray[Any],
        targets: NDArray[Any],
        digests: NDArray[Any] | None = None,
    ) -> Manifest:
        """A manifest from NUL-padded ``[N, L]`` path rows (format v1's ``image_path``)."""
        data, offsets = rows_to_paths(rows)
        return cls(data, offsets, nbytes, targets, digests)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Manifest) and self.digest() == other.digest()

    def __hash__(self) -> int:
        return hash(self.digest())

    def __len__(self) -> int:
        return self.path_offsets.size - 1

    @cached_property
    def paths(self) -> PathList:
        return PathList(self.path_data, self.path_offsets)

    @property
    def path_lengths(self) -> NDArray[np.int64]:
        return np.diff(self.path_offsets)

    @property
    def max_path_bytes(self) -> int:
        return int(self.path_lengths.max())

    @cached_property
    def sha256(self) -> tuple[str, ...] | None:
        """Each file's hex sha256, in order, or ``None`` (a Python string per image)."""
        return None if self.digests is None else decode_hashes(self.digests)

    def digest(self) -> str:
        """sha256 over lines ``path<TAB>nbytes<TAB>target<LF>``, in order.

        With content hashes, each line is ``path<TAB>nbytes<TAB>target<TAB>sha256<LF>``.
        Computed with numpy a pass of ``ROWS_PER_PASS`` rows at a time, and cached.
        """
        return self._digest

    @cached_property
    def _digest(self) -> str:
        h = hashlib.sha256()
        for start in range(0, len(self), ROWS_PER_PASS):
            stop = min(start + ROWS_PER_PASS, len(self))
            h.update(self._digest_lines(start, stop).tobytes())
        return "sha256:" + h.hexdigest()

    def _digest_lines(self, start: int, stop: int) -> NDArray[np.uint8]:
        """The digest's lines of rows [start, stop), as one byte array (scattered, no loop)."""
        first, ends = self.path_offsets[start:stop], self.path_offsets[start + 1 : stop + 1]
        lengths = ends - first
        sizes, size_lengths = decimal_digits(self.nbytes[start:stop])
        targets, target_lengths = decimal_digits(self.targets[start:stop])
        pieces: list[tuple[NDArray[np.uint8] | int, NDArray[np.int64] | int]] = [
            (9, 1),
            (sizes, size_lengths),
            (9, 1),
            (targets, target_lengths),
        ]
        if self.digests is not None:
            pieces += [(9, 1), (hex_digits(self.digests[start:stop]), 64)]
        pieces.append((10, 1))
        line_lengths = lengths + sum(np.asarray(n, dtype=np.int64) for _, n in pieces)
        cursor = np.concatenate([[0], np.cumsum(line_lengths)[:-1]]).astype(np.int64)
        out = np.empty(int(line_lengths.sum()), dtype=np.uint8)
        total = int(lengths.sum())
        out[np.repeat(cursor - (first - first[0]), lengths) + np.arange(total)] = self.path_data[
            first[0] : ends[-1]
        ]
        cursor = cursor + lengths
        for values, widths in pieces:
            if isinstance(values, int):
                out[cursor] = values
            else:
                columns = np.arange(values.shape[1])
                keep = columns < np.asarray(widths).reshape(-1, 1)
                out[(cursor[:, None] + columns)[np.broadcast_to(keep, values.shape)]] = values[
                    np.broadcast_to(keep, values.shape)
                ]
            cursor = cursor + widths
        return out

    def spec_fields(self) -> dict[str, Any]:
        """The ``StoreSpec`` fields that describe this manifest (pass them with ``**``)."""
        return {
            "num_images": len(self),
            "manifest_digest": self.digest(),
            "max_path_bytes": max(self.max_path_bytes, MIN_PATH_WIDTH),
            "path_data_bytes": int(self.path_data.size),
            "file_hashes": self.digests is not None,
        }

    def without_hashes(self) -> Manifest:
        return Manifest(self.path_data, self.path_offsets, self.nbytes, self.targets)

    def same_paths(self, other: Manifest) -> bool:
        """True if both list the same paths in the same order (vectorised)."""
        return np.array_equal(self.path_offsets, other.path_offsets) and np.array_equal(
            self.path_data, other.path_data
        )

    def duplicate_paths(self) -> list[str]:
        """Paths listed more than once (for ``fkd verify``), in the order of their repeats.

        Each path's 64-bit hash is computed with numpy, a pass of rows at a time; only
        paths whose hashes collide are compared as bytes, so memory stays a few arrays of
        N numbers (a Python set of 14M paths would take over a gigabyte).
        """
        hashes = path_hashes(self.path_data, self.path_offsets)
        order = np.argsort(hashes, kind="stable")
        same = np.flatnonzero(hashes[order][1:] == hashes[order][:-1])
        seen: dict[int, set[bytes]] = {}
        repeats = []
        for row in sorted({int(order[i]) for i in same} | {int(order[i + 1]) for i in same}):
            raw = self.paths.encoded(row)
            group = seen.setdefault(int(hashes[row]), set())
            if raw in group:
                repeats.append(raw.decode("utf-8", "replace"))
            group.add(raw)
        return repeats


def path_hashes(data: NDArray[np.uint8], offsets: NDArray[np.int64]) -> NDArray[np.uint64]:
    """A 64-bit polynomial hash of each path's bytes (arithmetic wraps modulo 2^64)."""
    count = offsets.size - 1
    out = np.empty(count, dtype=np.uint64)
    lengths = np.diff(offsets)
    for first in range(0, count, ROWS_PER_PASS):
        stop = min(first + ROWS_PER_PASS, count)
        base = int(offsets[first])
        piece = data[base : offsets[stop]].astype(np.uint64)
        starts = offsets[first:stop] - base
        within = np.arange(piece.size) - np.repeat(starts, lengths[first:stop])
        with np.errstate(over="ignore"):
            out[first:stop] = np.add.reduceat(piece * HASH_POWERS[within], starts)
    return out


def check_paths(data: NDArray[np.uint8], offsets: NDArray[np.int64]) -> None:
    """Refuse (``ValueError``) paths that are not safe, relative, normalised UTF-8.

    Vectorised over the byte array, ``ROWS_PER_PASS`` rows at a time (so the
    temporaries stay a few tens of MB at 14M paths): offsets run from 0 to
    ``len(data)`` without decreasing; no path is empty or longer than
    ``MAX_PATH_BYTES``; no NUL or backslash; no leading or trailing ``/``, no
    ``//``; no ``.`` or ``..`` component; valid UTF-8.  Names the first offending path.
    """
    if offsets[0] != 0 or offsets[-1] != data.size:
        raise ValueError(
            f"manifest path offsets must rise from 0 to {data.size}, the path bytes' length"
        )
    for first in range(0, offsets.size - 1, ROWS_PER_PASS):
        check_path_rows(data, offsets, first, min(first + ROWS_PER_PASS, offsets.size - 1))
    check_utf8(data, offsets)


def check_path_rows(
    data: NDArray[np.uint8], offsets: NDArray[np.int64], first: int, stop: int
) -> None:
    """``check_paths`` for rows ``[first, stop)``, on their bytes only."""
    rows = offsets[first : stop + 1]
    lengths = np.diff(rows)
    if (lengths < 0).any():
        raise ValueError(
            f"manifest path offsets must rise from 0 to {data.size}, the path bytes' length"
        )
    bad = (lengths == 0) | (lengths > MAX_PATH_BYTES)
    too_long = f"is empty or longer than {MAX_PATH_BYTES} bytes"
    _refuse(_marked_row(bad, first), data, offsets, too_long)
    base = int(rows[0])
    piece = data[base : rows[-1]]
    local = rows - base
    nul_or_backslash = _marked_row((piece == NUL) | (piece == BACKSLASH), base, offsets)
    _refuse(nul_or_backslash, data, offsets, "holds a NUL or backslash")
    slash = piece == SLASH
    # A component starts at a path's first byte or after '/', and ends at its last or before '/'.
    begins = np.zeros(piece.size, dtype=bool)
    begins[local[:-1]] = True
    begins[1:] |= slash[:-1]
    ends = np.zeros(piece.size, dtype=bool)
    ends[local[1:] - 1] = True
    ends[:-1] |= slash[1:]
    dot = piece == DOT
    wrong = slash & (begins | ends)  # a leading or trailing '/', or '//'
    wrong |= dot & begins & ends  # '.'
    wrong[:-1] |= dot[:-1] & dot[1:] & begins[:-1] & ends[1:] & ~ends[:-1]  # '..'
    not_normal = "must be relative, normalised and without '..'"
    _refuse(_marked_row(wrong, base, offsets), data, offsets, not_normal)


def check_utf8(data: NDArray[np.uint8], offsets: NDArray[np.int64]) -> None:
    """Refuse paths that are not valid UTF-8 (decoded a pass of rows at a time)."""
    if data.size == 0 or int(data.max()) < 0x80:
        return
    for start in range(0, offsets.size - 1, ROWS_PER_PASS):
        stop = min(start + ROWS_PER_PASS, offsets.size - 1)
        piece = data[offsets[start] : offsets[stop]].tobytes()
        try:
            codecs.utf_8_decode(piece, "strict", True)
        except UnicodeDecodeError as exc:
            # Paths start on byte boundaries of the pass, so the bad byte names its path.
            row = (
                start
                + int(np.searchsorted(offsets[start:stop], offsets[start] + exc.start, "right"))
                - 1
            )
            raise ValueError(
                f"manifest path {row} ({data[offsets[row] : offsets[row + 1]].tobytes()!r}) "
                "is not valid UTF-8"
            ) from None
        # A character split across two paths decodes in one piece but not alone.
        starts = offsets[start:stop]
        bad_start = (data[starts[np.diff(offsets[start : stop + 1]) > 0]] & 0xC0) == 0x80
        if bad_start.any():
            row = start + int(np.flatnonzero(bad_start)[0])
            raise ValueError(f"manifest path {row} does not start on a UTF-8 character")


def _marked_row(
    bad: NDArray[np.bool_], first: int, offsets: NDArray[np.int64] | None = None
) -> int | None:
    """The first row marked ``bad`` (``bad[0]`` is row ``first``), or, given ``offsets``,
    the row holding the first byte marked ``bad`` (``bad[0]`` is byte ``first``)."""
    if not bad.any():
        return None
    at = first + int(np.flatnonzero(bad)[0])
    return at if offsets is None else int(np.searchsorted(offsets, at, side="right")) - 1


def _refuse(
    row: int | None, data: NDArray[np.uint8], offsets: NDArray[np.int64], what: str
) -> None:
    """Refuse path ``row`` saying ``what`` is wrong with it (nothing when ``row`` is None)."""
    if row is None:
        return
    raw = data[offsets[row] : offsets[row + 1]].tobytes()[:MAX_PATH_BYTES]
    raise ValueError(f"manifest path {row} ({raw!r}) {what}")


def decimal_digits(values: NDArray[Any]) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    """ASCII decimals of integers, left-aligned: (``[n, 21]`` bytes, lengths)."""
    text = np.asarray(values).astype("S21")
    raw = text.view(np.uint8).reshape(len(text), 21)
    return raw, (raw != 0).sum(axis=1).astype(np.int64)


def hex_digits(raw: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """Lowercase hex of ``[n, 32]`` digests as ``[n, 64]`` ASCII bytes."""
    out = np.empty((raw.shape[0], 64), dtype=np.uint8)
    out[:, 0::2] = HEX_DIGITS[raw >> 4]
    out[:, 1::2] = HEX_DIGITS[raw & 15]
    return out


def _is_sha256(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def encode_hashes(hashes: Sequence[str]) -> NDArray[np.uint8]:
    """Hex sha256 digests to a ``[n, 32]`` uint8 array."""
    return np.frombuffer(b"".join(bytes.fromhex(h) for h in hashes), dtype=np.uint8).reshape(
        len(hashes), 32
    )


def decode_hashes(raw: NDArray[Any]) -> tuple[str, ...]:
    return tuple(bytes(row).hex() for row in np.asarray(raw, dtype=np.uint8))

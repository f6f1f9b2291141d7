"""Image sources and decoding: which images a store describes, and their pixels.

Two halves, neither needs torch:

- ``scan_source`` turns DATA (an ImageFolder tree, a flat folder of images or
  a text/CSV list of files) into an ``ImageSource``: a root folder plus a
  ``Manifest`` of relative paths, byte sizes and targets in a sorted, stable
  order.
- ``decode_image`` turns one file into an RGB ``uint8`` ``HxWx3`` C-contiguous,
  writable array, or raises ``ImageDecodeError`` with a short reason fit for
  the label store's per-image error field.

Decoding choices (all deliberate, all documented here once):

- JPEG is recognised by its magic bytes (``FF D8 FF``), not its extension, and
  decoded with simplejpeg (libjpeg-turbo) when it is installed.  PIL decodes
  it instead when the header says CMYK/YCCK (to match PIL's ``convert("RGB")``,
  which is what torchvision's default loader gives), when the EXIF orientation
  is not 1 (simplejpeg ignores EXIF), or when libjpeg reports any problem (PIL
  then gives the verdict, so a file is refused only if PIL refuses it too).
- Everything else is decoded by PIL, restricted to the formats in
  ``PIL_FORMATS`` (so a renamed EPS never starts Ghostscript).  The first
  frame of an animated GIF (or the first page of a TIFF) is used.
- EXIF orientation is applied (``ImageOps.exif_transpose``), in every format.
- Alpha is dropped, not composited: the colour channels are kept as stored,
  exactly as ``Image.convert("RGB")`` (torchvision's default loader) does, so
  a student trained with the usual loader sees the same pixels.
- 16-bit greyscale (``I;16*``) keeps its high byte (``>> 8``); mode ``I`` is
  taken as a 16-bit container (clipped to ``[0, 65535]``, then ``>> 8``);
  mode ``F`` is clipped to ``[0, 255]`` and rounded, NaN as 0 (PIL's own
  ``F`` to ``L`` rule).  Other modes (``1``, ``L``, ``LA``, ``P``, ``RGBA``,
  ``CMYK``, ``YCbCr``, ...) go through ``convert("RGB")``; greyscale comes out
  as three equal channels.
- Pixel cap: ``DEFAULT_MAX_PIXELS = 178_956_970``, which is PIL's own
  decompression-bomb error threshold (``2 * Image.MAX_IMAGE_PIXELS``).  The
  cap is checked on the header (simplejpeg's ``decode_jpeg_header`` or PIL's
  lazy ``open``) before any pixel is decoded.  Nothing global in PIL is
  changed; PIL's own bomb check still runs inside ``Image.open`` and refuses
  anything over its threshold whatever ``max_pixels`` says, while its warning
  (between ``MAX_IMAGE_PIXELS`` and twice that) is silenced around that call
  because we check the size ourselves.  (On Python < 3.14
  ``warnings.catch_warnings`` is not thread-safe; the worst a race can do is
  leave that one warning silenced.)
- The smallest image decoded is 1x1; nothing is refused for being small.
- Truncated files are refused as long as ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES``
  keeps its default ``False``; this module never changes it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import stat
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps, UnidentifiedImageError

from fkd.exceptions import UserInputError
from fkd.storage_formats.manifest import NO_TARGET, Manifest, check_relative_path

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}
)
"""Lower-case suffixes (with the dot) of the files a folder scan picks up, in any case."""

DEFAULT_MAX_PIXELS = 178_956_970
"""Largest width x height decoded: PIL's own decompression-bomb error threshold."""

MAX_REASON_BYTES = 120
"""Longest failure reason, in UTF-8 bytes (the store keeps 128)."""

PIL_FORMATS = ("JPEG", "PNG", "BMP", "DIB", "GIF", "WEBP", "TIFF", "PPM")
"""The PIL decoders ``decode_image`` lets PIL pick from (JPEG includes MPO)."""

TRAIN_SUBFOLDER = "train"
LABEL_HEADER_NAMES = frozenset({"label", "target", "class"})
EXIF_ORIENTATION_TAG = 0x0112
JPEG_MAGIC = b"\xff\xd8\xff"
SIMPLEJPEG_COLORSPACES = frozenset({"YCbCr", "Gray", "RGB"})
SHOWN_NAMES = 5
HASH_CHUNK_BYTES = 1 << 20
INT32_MAX = 2**31 - 1


class ImageSourceError(UserInputError):
    """DATA is not a usable image folder or file list; the message says why and the fix."""


class ImageDecodeError(Exception):
    """One image could not be decoded; ``reason`` is a short line for the label store."""

    def __init__(self, reason: str) -> None:
        self.reason = short_reason(reason)
        super().__init__(self.reason)


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


@dataclass(frozen=True)
class ListedImage:
    """One entry of a file list, before its file is looked at."""

    path: str
    label: str | None
    line: int


# --------------------------------------------------------------------------- scanning


def scan_source(
    data: str | Path, hash_files: bool = False, root: str | Path | None = None
) -> ImageSource:
    """Scan DATA into an ``ImageSource``.

    DATA is either a folder or a file list:

    - A folder (``DATA/train`` when that is a folder): class subfolders of
      images (searched recursively) give targets by sorted class-folder name,
      like torchvision's ``ImageFolder``.  A folder whose images sit directly
      at its top level, with no class folder holding any, is taken as a flat,
      unlabelled folder (targets -1) rather than refused.  Only files with an
      ``IMAGE_EXTENSIONS`` suffix count; names starting with '.' are skipped.
    - A text file: one path per line, relative to the list's folder (or to
      ``root``), with an optional label column; see ``parse_file_list``.

    Images are ordered by relative POSIX path.  ``hash_files`` also computes
    every file's sha256.
    """
    path = Path(data)
    if not path.exists():
        raise ImageSourceError(f"DATA {path} does not exist; pass an image folder or a file list")
    if path.is_dir():
        if root is not None:
            raise ImageSourceError(
                f"root={root} only applies to a file list, but DATA {path} is a folder; "
                "drop root or pass a file list"
            )
        return scan_image_folder(path, hash_files)
    if not path.is_file():
        raise ImageSourceError(
            f"DATA {path} is neither a folder nor a regular file; pass an image folder or a "
            "file list"
        )
    return scan_file_list(path, hash_files, None if root is None else Path(root))


def scan_image_folder(data: Path, hash_files: bool = False) -> ImageSource:
    """An ``ImageSource`` for an ImageFolder tree or a flat folder of images."""
    folder = image_folder_root(data)
    entries = visible_entries(folder)
    top_images = [entry for entry in entries if is_image_entry(entry)]
    class_dirs = [entry for entry in entries if entry.is_dir()]
    by_class = {entry.name: list(images_under(folder, Path(entry.path))) for entry in class_dirs}
    if any(by_class.values()):
        refuse_top_level_images(folder, top_images)
        refuse_empty_class_folders(folder, by_class)
        class_names = tuple(sorted(by_class))
        target_of = {name: target for target, name in enumerate(class_names)}
        found = [
            FoundImage(path, size, target_of[name])
            for name, images in by_class.items()
            for path, size in images
        ]
    elif top_images:
        class_names = None
        found = [
            FoundImage(manifest_path(folder, Path(e.path)), e.stat().st_size, NO_TARGET)
            for e in top_images
        ]
    else:
        raise ImageSourceError(
            f"no images found in {folder}; looked for {extensions_text()} files "
            "in class subfolders or at its top level"
        )
    return build_source(folder, found, class_names, hash_files)


def image_folder_root(data: Path) -> Path:
    """``DATA/train`` when it is a folder, else DATA itself."""
    train = data / TRAIN_SUBFOLDER
    return train if train.is_dir() else data


def source_root(data: str | Path) -> Path:
    """The folder that DATA's manifest paths are relative to, found without a scan:
    ``image_folder_root`` of a folder, a file list's own folder."""
    path = Path(data)
    return image_folder_root(path) if path.is_dir() else path.parent


def visible_entries(folder: Path) -> list[os.DirEntry[str]]:
    """Entries of ``folder`` whose names do not start with '.', sorted by name."""
    try:
        with os.scandir(folder) as entries:
            return sorted((e for e in entries if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError as error:
        raise ImageSourceError(
            f"cannot list folder {folder}: {error.strerror or error}; check its permissions"
        ) from error


def is_image_entry(entry: os.DirEntry[str]) -> bool:
    """A regular file (symlinks followed) with an image extension; broken links are errors."""
    if Path(entry.name).suffix.lower() not in IMAGE_EXTENSIONS:
        return False
    if entry.is_symlink() and not os.path.exists(entry.path):
        raise ImageSourceError(f"{entry.path} is a broken symlink; fix the link or remove it")
    return entry.is_file()


def images_under(root: Path, folder: Path) -> Iterator[tuple[str, int]]:
    """(relative path, size) of every image below ``folder``, following symlinked folders once."""
    seen: set[tuple[int, int]] = set()
    pending = [folder]
    while pending:
        current = pending.pop()
        info = os.stat(current)
        if (info.st_dev, info.st_ino) in seen:
            continue
        seen.add((info.st_dev, info.st_ino))
        for entry in visible_entries(current):
            if entry.is_dir():
                pending.append(Path(entry.path))
            elif is_image_entry(entry):
                yield manifest_path(root, Path(entry.path)), entry.stat().st_size


def manifest_path(root: Path, path: Path) -> str:
    """``path`` relative to ``root`` as a manifest path, or an error saying to rename it."""
    relative = path.relative_to(root).as_posix()
    try:
        relative.encode("utf-8")
    except UnicodeEncodeError:
        raise ImageSourceError(
            f"file name {relative!r} under {root} is not valid UTF-8; rename the file"
        ) from None
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in relative):
        raise ImageSourceError(
            f"file name {relative!r} under {root} holds a control character; rename the file"
        )
    try:
        return check_relative_path(relative)
    except ValueError as error:
        raise ImageSourceError(f"{error}; rename the file under {root}") from None


def refuse_top_level_images(folder: Path, top_images: Sequence[os.DirEntry[str]]) -> None:
    """Images both at the top level and in class folders are ambiguous: refuse them."""
    if top_images:
        names = ", ".join(e.name for e in top_images[:SHOWN_NAMES])
        raise ImageSourceError(
            f"{folder} has class folders and also {len(top_images)} image(s) at its top level "
            f"({names}); move them into a class folder or remove them"
        )


def refuse_empty_class_folders(folder: Path, by_class: dict[str, list[tuple[str, int]]]) -> None:
    """A class folder without images would shift every later class index: refuse it."""
    empty = [name for name, images in by_class.items() if not images]
    if empty:
        raise ImageSourceError(
            f"class folder(s) {', '.join(empty[:SHOWN_NAMES])} in {folder} hold no "
            f"{extensions_text()} images; add their images or remove the folders "
            "(class indices follow the sorted folder names)"
        )


def scan_file_list(
    list_file: Path, hash_files: bool = False, root: Path | None = None
) -> ImageSource:
    """An ``ImageSource`` for a text/CSV file list, paths relative to ``root`` (default:
    the list's folder)."""
    if list_file.suffix.lower() in IMAGE_EXTENSIONS:
        raise ImageSourceError(
            f"DATA {list_file} is an image, not a folder or a file list; pass its folder"
        )
    base = source_root(list_file) if root is None else root
    if not base.is_dir():
        raise ImageSourceError(f"root {base} is not a folder; pass the folder the list is under")
    listed = parse_file_list(read_list_text(list_file), list_file)
    refuse_duplicates(list_file, listed)
    targets, class_names = labels_to_targets(list_file, listed)
    sizes = listed_file_sizes(list_file, base, listed)
    found = [
        FoundImage(item.path, size, target)
        for item, size, target in zip(listed, sizes, targets, strict=True)
    ]
    return build_source(base, found, class_names, hash_files)


def read_list_text(list_file: Path) -> str:
    """The list's text (UTF-8, BOM allowed), or an error naming the file."""
    try:
        return list_file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ImageSourceError(
            f"file list {list_file} is not UTF-8 text; pass an image folder or a UTF-8 "
            "list of relative paths"
        ) from None
    except OSError as error:
        raise ImageSourceError(
            f"cannot read file list {list_file}: {error.strerror or error}; check its permissions"
        ) from error


def parse_file_list(text: str, where: Path | str = "file list") -> list[ListedImage]:
    """Entries of a file list.

    One image per line, an optional label after it.  Blank lines and lines
    starting with '#' are skipped, and so is a first line ``path`` or
    ``path,label`` (also ``target``/``class``).  The separator is chosen once
    per file: a tab if any line holds one, else a comma if any line holds one
    (CSV quoting allowed), else whitespace.  With whitespace, a line whose last
    word ends in an image extension is taken whole as the path, so unlabelled
    paths may hold spaces.  Paths are normalised (``./a//b.jpg`` is
    ``a/b.jpg``) and must stay below the root.
    """
    lines = [
        (number, line.strip())
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.strip().startswith("#")
    ]
    split = choose_splitter([line for _, line in lines])
    rows = [(number, split(line)) for number, line in lines]
    if rows and is_header(rows[0][1]):
        rows = rows[1:]
    if not rows:
        raise ImageSourceError(f"file list {where} names no images; add one relative path per line")
    return [listed_image(where, number, fields) for number, fields in rows]


def choose_splitter(lines: Sequence[str]) -> Callable[[str], list[str]]:
    """The function that splits one line of this file into its fields."""
    if any("\t" in line for line in lines):
        return lambda line: [field.strip() for field in line.split("\t")]
    if any("," in line for line in lines):
        return lambda line: [field.strip() for field in next(csv.reader([line]))]
    return split_on_whitespace


def split_on_whitespace(line: str) -> list[str]:
    """``path label`` on the last run of whitespace, unless the last word is an image name."""
    fields = line.rsplit(None, 1)
    if len(fields) == 2 and PurePosixPath(fields[1]).suffix.lower() in IMAGE_EXTENSIONS:
        return [line]
    return fields


def is_header(fields: Sequence[str]) -> bool:
    """Whether a first row is a ``path[,label]`` header."""
    if not fields or fields[0].lower() != "path":
        return False
    return len(fields) == 1 or (len(fields) == 2 and fields[1].lower() in LABEL_HEADER_NAMES)


def listed_image(where: Path | str, number: int, fields: Sequence[str]) -> ListedImage:
    """One checked entry from the fields of line ``number``."""
    if len(fields) > 2:
        raise ImageSourceError(
            f"file list {where} line {number} has {len(fields)} fields; expected a path "
            "and at most one label (quote paths holding commas)"
        )
    label = fields[1] if len(fields) == 2 and fields[1] else None
    return ListedImage(listed_path(where, number, fields[0]), label, number)


def listed_path(where: Path | str, number: int, raw: str) -> str:
    """A list entry's path, normalised, or an error saying how to write it."""
    at = f"file list {where} line {number}"
    if "\\" in raw:
        raise ImageSourceError(f"{at}: path {raw!r} holds a backslash; use forward slashes")
    pure = PurePosixPath(raw)
    if pure.is_absolute():
        raise ImageSourceError(
            f"{at}: path {raw!r} is absolute; list paths relative to the list's folder or root"
        )
    if ".." in pure.parts:
        raise ImageSourceError(
            f"{at}: path {raw!r} climbs out with '..'; list paths below the root "
            "(pass root= to start higher)"
        )
    try:
        return check_relative_path(str(pure))
    except ValueError as error:
        raise ImageSourceError(f"{at}: {error}; fix the line") from None


def refuse_duplicates(where: Path, listed: Sequence[ListedImage]) -> None:
    """A path listed twice is an error naming both lines."""
    first_line: dict[str, int] = {}
    for item in listed:
        if item.path in first_line:
            raise ImageSourceError(
                f"file list {where} names {item.path!r} twice (lines {first_line[item.path]} "
                f"and {item.line}); remove the duplicate"
            )
        first_line[item.path] = item.line


def labels_to_targets(
    where: Path, listed: Sequence[ListedImage]
) -> tuple[list[int], tuple[str, ...] | None]:
    """Targets and class names from the label column.

    No labels: targets -1.  All labels integers: those (-1 allowed for
    "unknown").  Otherwise every label is a class name and the targets index
    the sorted unique names.
    """
    labels = [item.label for item in listed]
    if all(label is None for label in labels):
        return [NO_TARGET] * len(listed), None
    unlabelled = next((item for item in listed if item.label is None), None)
    if unlabelled is not None:
        raise ImageSourceError(
            f"file list {where} line {unlabelled.line} has no label but other lines do; "
            "label every line or none"
        )
    names = [str(label) for label in labels]
    if all(re.fullmatch(r"[+-]?\d+", name) for name in names):
        return [integer_label(where, item) for item in listed], None
    class_names = tuple(sorted(set(names)))
    index = {name: i for i, name in enumerate(class_names)}
    return [index[name] for name in names], class_names


def integer_label(where: Path, item: ListedImage) -> int:
    """An integer label in [-1, 2**31 - 1], or an error naming its line."""
    value = int(str(item.label))
    if not NO_TARGET <= value <= INT32_MAX:
        raise ImageSourceError(
            f"file list {where} line {item.line}: label {value} is out of range; use a class "
            f"index in [0, {INT32_MAX}] or -1 for unknown"
        )
    return value


def listed_file_sizes(where: Path, base: Path, listed: Sequence[ListedImage]) -> list[int]:
    """Sizes of the listed files; missing or non-regular files are one error naming a few."""
    sizes: list[int] = []
    missing: list[str] = []
    for item in listed:
        try:
            info = os.stat(base / item.path)
        except OSError:
            missing.append(item.path)
            continue
        if not stat.S_ISREG(info.st_mode):
            missing.append(item.path)
            continue
        sizes.append(info.st_size)
    if missing:
        shown = ", ".join(missing[:SHOWN_NAMES])
        more = f" and {len(missing) - SHOWN_NAMES} more" if len(missing) > SHOWN_NAMES else ""
        raise ImageSourceError(
            f"file list {where} names {len(missing)} file(s) missing under {base}: {shown}{more}; "
            "fix the list or pass the root folder they are under"
        )
    return sizes


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
    digest = hashlib.sha256()
    try:
        with path.open("rb") as stream:
            while chunk := stream.read(HASH_CHUNK_BYTES):
                digest.update(chunk)
    except OSError as error:
        raise ImageSourceError(
            f"cannot read {path} to hash it: {error.strerror or error}; check its permissions"
        ) from error
    return digest.hexdigest()


def extensions_text() -> str:
    """The extensions looked for, for messages: ``.bmp/.gif/...``."""
    return "/".join(sorted(IMAGE_EXTENSIONS))


# --------------------------------------------------------------------------- decoding


def decode_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> NDArray[np.uint8]:
    """The file's pixels as RGB ``uint8`` ``HxWx3`` (C-contiguous, writable).

    Raises ``ImageDecodeError`` with a short reason on any failure; see the
    module docstring for the format, mode, alpha, orientation and cap rules.
    """
    check_max_pixels(max_pixels)
    return decode_image_bytes(read_image_bytes(Path(path)), max_pixels)


def decode_or_reason(
    path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[NDArray[np.uint8] | None, str]:
    """``(pixels, "")`` or ``(None, reason)``: ``decode_image`` without the exception."""
    try:
        return decode_image(path, max_pixels), ""
    except ImageDecodeError as error:
        return None, error.reason


def decode_image_bytes(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> NDArray[np.uint8]:
    """``decode_image`` for a file's bytes already in memory."""
    check_max_pixels(max_pixels)
    if not data:
        raise ImageDecodeError("zero-byte file")
    if SIMPLEJPEG is not None and data.startswith(JPEG_MAGIC):
        pixels = decode_jpeg_with_simplejpeg(data, max_pixels)
        if pixels is not None:
            return pixels
    return decode_with_pil(data, max_pixels)


def check_max_pixels(max_pixels: int) -> None:
    """``max_pixels`` must be a positive integer."""
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise ValueError(f"max_pixels must be a positive integer, got {max_pixels!r}")


def read_image_bytes(path: Path) -> bytes:
    """The whole file, or an ``ImageDecodeError`` saying why it cannot be read."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ImageDecodeError("file missing") from None
    except IsADirectoryError:
        raise ImageDecodeError("not a file (a directory)") from None
    except OSError as error:
        raise ImageDecodeError(f"cannot read file: {error.strerror or error}") from None


def check_pixel_count(width: int, height: int, max_pixels: int) -> None:
    """Refuse an image over the cap, from its header size alone."""
    if width * height > max_pixels:
        raise ImageDecodeError(f"too large: {width}x{height} pixels > cap {max_pixels}")


def load_simplejpeg() -> Any | None:
    """The simplejpeg module, or ``None`` when it is not installed."""
    try:
        import simplejpeg
    except ImportError:  # pragma: no cover - simplejpeg is a dependency here
        return None
    return simplejpeg


SIMPLEJPEG = load_simplejpeg()


def decode_jpeg_with_simplejpeg(data: bytes, max_pixels: int) -> NDArray[np.uint8] | None:
    """A JPEG through libjpeg-turbo, or ``None`` when PIL should decode it instead.

    ``None`` for an unreadable header, CMYK/YCCK colour, an EXIF orientation
    other than 1, or any libjpeg error or warning (strict mode).  An image over
    the cap raises ``ImageDecodeError`` before anything is decoded.
    """
    assert SIMPLEJPEG is not None
    try:
        height, width, colorspace, _ = SIMPLEJPEG.decode_jpeg_header(data)
    except Exception:
        return None
    check_pixel_count(int(width), int(height), max_pixels)
    if colorspace not in SIMPLEJPEG_COLORSPACES or jpeg_exif_orientation(data) != 1:
        return None
    try:
        pixels = SIMPLEJPEG.decode_jpeg(data, colorspace="RGB")
    except Exception:
        return None
    return np.require(pixels, np.uint8, ["C", "W"])


def jpeg_exif_orientation(data: bytes) -> int | None:
    """The EXIF orientation of a JPEG: 1 when it has none, ``None`` when the EXIF is unreadable.

    Walks the marker segments before the first scan and reads tag 0x0112 of
    IFD0 in the first ``Exif`` APP1 segment; it never decodes pixels.
    """
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker in (0xDA, 0xD9):
            return 1
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker == 0xE1 and data[pos + 4 : pos + 10] == b"Exif\x00\x00":
            return tiff_orientation(data[pos + 10 : pos + 2 + length])
        pos += 2 + length
    return 1


def tiff_orientation(tiff: bytes) -> int | None:
    """Orientation (tag 0x0112) in IFD0 of a TIFF/EXIF block: 1 if absent, ``None`` if garbled."""
    if tiff[:2] not in (b"II", b"MM") or len(tiff) < 8:
        return None
    order: Literal["little", "big"] = "little" if tiff[:2] == b"II" else "big"

    def number(start: int, size: int) -> int:
        return int.from_bytes(tiff[start : start + size], order)

    ifd = number(4, 4)
    if number(2, 2) != 42 or ifd + 2 > len(tiff):
        return None
    for entry in range(number(ifd, 2)):
        start = ifd + 2 + 12 * entry
        if start + 12 > len(tiff):
            return None
        if number(start, 2) == EXIF_ORIENTATION_TAG:
            return number(start + 8, 2) if number(start + 2, 2) == 3 else None
    return 1


def decode_with_pil(data: bytes, max_pixels: int) -> NDArray[np.uint8]:
    """Any supported format through PIL; every PIL failure becomes an ``ImageDecodeError``."""
    try:
        with open_with_pil(data) as image:
            check_pixel_count(image.width, image.height, max_pixels)
            image.load()
            return pil_to_rgb_array(apply_exif_orientation(image))
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as error:
        raise ImageDecodeError(bomb_reason(error, max_pixels)) from None
    except UnidentifiedImageError:
        raise ImageDecodeError("not an image (unrecognised format)") from None
    except MemoryError:
        raise ImageDecodeError("out of memory while decoding") from None
    except Exception as error:
        raise ImageDecodeError(pil_failure_reason(error)) from None


def open_with_pil(data: bytes) -> Image.Image:
    """``Image.open`` on the bytes, limited to ``PIL_FORMATS``, bomb warning silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(io.BytesIO(data), formats=PIL_FORMATS)


def bomb_reason(error: Image.DecompressionBombError, max_pixels: int) -> str:
    """The reason for an image PIL's own bomb check refused inside ``Image.open``."""
    numbers = re.findall(r"\d+", str(error))
    if len(numbers) >= 2:
        return f"too large: {numbers[0]} pixels > cap {min(int(numbers[1]), max_pixels)}"
    return f"too large: {error}"


def pil_failure_reason(error: Exception) -> str:
    """A short reason for an exception PIL raised while opening or decoding."""
    detail = str(error) or type(error).__name__
    if "truncat" in detail.lower():
        return f"truncated image: {detail}"
    return f"corrupt image: {detail}"


def apply_exif_orientation(image: Image.Image) -> Image.Image:
    """The image turned upright by its EXIF orientation; unreadable EXIF is ignored."""
    try:
        orientation = image.getexif().get(EXIF_ORIENTATION_TAG, 1)
    except Exception:
        return image
    if orientation not in range(2, 9):
        return image
    return ImageOps.exif_transpose(image)


def pil_to_rgb_array(image: Image.Image) -> NDArray[np.uint8]:
    """A loaded PIL image of any mode as RGB ``uint8`` ``HxWx3``."""
    mode = image.mode
    if mode.startswith("I;16"):
        gray = (np.asarray(image).astype(np.uint16) >> 8).astype(np.uint8)
        return gray_to_rgb(gray)
    if mode == "I":
        gray = (np.clip(np.asarray(image), 0, 65535) >> 8).astype(np.uint8)
        return gray_to_rgb(gray)
    if mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float32), nan=0.0)
        return gray_to_rgb(np.rint(np.clip(values, 0.0, 255.0)).astype(np.uint8))
    if mode == "PA" or (mode == "P" and "transparency" in image.info):
        return np.require(np.asarray(image.convert("RGBA"))[:, :, :3], np.uint8, ["C", "W"])
    rgb = image if mode == "RGB" else image.convert("RGB")
    return np.require(np.asarray(rgb), np.uint8, ["C", "W"])


def gray_to_rgb(gray: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """``HxW`` to ``HxWx3`` with three equal channels."""
    return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))


def short_reason(text: str) -> str:
    """``text`` on one line, cut to ``MAX_REASON_BYTES`` UTF-8 bytes (ending '...' if cut)."""
    line = " ".join(text.split())
    raw = line.encode("utf-8")
    if len(raw) <= MAX_REASON_BYTES:
        return line
    return raw[: MAX_REASON_BYTES - 3].decode("utf-8", errors="ignore") + "..."

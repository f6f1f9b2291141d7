"""EXIF orientation: read from a JPEG's header without decoding, and applied to a PIL image."""

from __future__ import annotations

from typing import Literal

from PIL import Image, ImageOps

EXIF_ORIENTATION_TAG = 0x0112


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


def pil_exif_orientation(image: Image.Image) -> int:
    """A PIL image's EXIF orientation, 1 when it has none or the EXIF is unreadable."""
    try:
        orientation = image.getexif().get(EXIF_ORIENTATION_TAG, 1)
    except Exception:
        return 1
    return orientation if orientation in range(2, 9) else 1


def upright_size(width: int, height: int, orientation: int) -> tuple[int, int]:
    """``(height, width)`` of the image once turned upright (orientations 5-8 swap them)."""
    return (width, height) if orientation in range(5, 9) else (height, width)


def apply_exif_orientation(image: Image.Image) -> Image.Image:
    """The image turned upright by its EXIF orientation; unreadable EXIF is ignored."""
    if pil_exif_orientation(image) == 1:
        return image
    return ImageOps.exif_transpose(image)

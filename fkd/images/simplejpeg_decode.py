"""The fast JPEG path: libjpeg-turbo through simplejpeg, when it is installed.

It gives way to PIL (returns ``None``) for anything it would not decode exactly as
PIL does; see ``fkd.images.decode``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from fkd.images.exif import jpeg_exif_orientation
from fkd.images.limits import check_pixel_count

JPEG_MAGIC = b"\xff\xd8\xff"
SIMPLEJPEG_COLORSPACES = frozenset({"YCbCr", "Gray", "RGB"})


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

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
from fkd.images.reduction import Reduction, reduced_shape

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


def decode_jpeg_with_simplejpeg(
    data: bytes, max_pixels: int, reduction: Reduction | None = None
) -> NDArray[np.uint8] | None:
    """A JPEG through libjpeg-turbo, or ``None`` when PIL should decode it instead.

    ``None`` for an unreadable header, CMYK/YCCK colour, an EXIF orientation
    other than 1, or any libjpeg error or warning (strict mode).  An image over
    the cap raises ``ImageDecodeError`` before anything is decoded.  ``reduction``,
    if given, picks the DCT scaling factor from the header's size (see
    ``fkd.images.reduction``).
    """
    assert SIMPLEJPEG is not None
    try:
        height, width, colorspace, _ = SIMPLEJPEG.decode_jpeg_header(data)
    except Exception:
        return None
    check_pixel_count(int(width), int(height), max_pixels)
    if colorspace not in SIMPLEJPEG_COLORSPACES or jpeg_exif_orientation(data) != 1:
        return None
    factor = 1 if reduction is None else reduction(int(height), int(width))
    shape = reduced_shape(int(height), int(width), factor)
    try:
        # The smallest libjpeg scale whose output is at least ``shape``: 1 / factor.
        pixels = SIMPLEJPEG.decode_jpeg(
            data, colorspace="RGB", min_height=shape[0], min_width=shape[1]
        )
    except Exception:
        return None
    if pixels.shape[:2] != shape:
        return None
    return np.require(pixels, np.uint8, ["C", "W"])

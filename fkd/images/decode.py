"""Decoding: one image file to an RGB ``uint8`` ``HxWx3`` C-contiguous, writable array.

``decode_image`` returns the pixels or raises ``ImageDecodeError`` with a short
reason fit for the label store's per-image error field.

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
- Reduced-size decoding (``decode_for_crops``): a JPEG may be decoded at 1/2, 1/4
  or 1/8 of its size (libjpeg's DCT scaling, through simplejpeg or PIL's
  ``draft``) when every crop box of the visit keeps at least ``margin`` times
  the output size in the smaller image (``fkd.images.reduction``).  Every rule
  above still holds: the cap applies to the full size in the header, EXIF
  orientation is applied after decoding (the factor is chosen on the upright
  size), and the same files are refused.  Other formats decode at full size.
- Truncated files are refused as long as ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES``
  keeps its default ``False``; this package never changes it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from fkd.images.limits import DEFAULT_MAX_PIXELS, ImageDecodeError, check_max_pixels
from fkd.images.pil_decode import decode_with_pil
from fkd.images.reduction import REDUCTION_MARGIN, Reduction, reduction_for
from fkd.images.simplejpeg_decode import JPEG_MAGIC, SIMPLEJPEG, decode_jpeg_with_simplejpeg


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


def decode_image_bytes(
    data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, reduction: Reduction | None = None
) -> NDArray[np.uint8]:
    """``decode_image`` for a file's bytes already in memory.

    ``reduction``, if given, chooses a JPEG's DCT scaling factor (1, 2, 4 or 8) from
    its upright ``(height, width)``; ``decode_for_crops`` passes the safe one.
    """
    check_max_pixels(max_pixels)
    if not data:
        raise ImageDecodeError("zero-byte file")
    if SIMPLEJPEG is not None and data.startswith(JPEG_MAGIC):
        pixels = decode_jpeg_with_simplejpeg(data, max_pixels, reduction)
        if pixels is not None:
            return pixels
    return decode_with_pil(data, max_pixels, reduction)


def decode_for_crops(
    data: bytes,
    fractions: NDArray[np.float64],
    size: int,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    margin: float = REDUCTION_MARGIN,
) -> NDArray[np.uint8]:
    """An image's pixels, decoded as small as its crops allow (``HxWx3`` uint8).

    ``fractions`` are the visit's crop boxes ``[N, 4]`` as fractions of the image (the
    store's form) and ``size`` their output size: a JPEG is decoded at the largest
    reduction (1/2, 1/4, 1/8) that leaves every box at least ``margin * size`` pixels
    high and wide (``fkd.images.reduction.largest_reduction``), anything else in full.
    Cut the crops with the same fractions (``fkd.crops.cut``): they replay on the
    reduced image unchanged.  Raises ``ImageDecodeError`` as ``decode_image_bytes``.
    """
    return decode_image_bytes(data, max_pixels, reduction_for(fractions, size, margin))


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

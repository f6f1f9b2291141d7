"""Decoding through PIL: every format, every mode, to RGB ``uint8``; failures as reasons."""

from __future__ import annotations

import io
import re
import warnings

import numpy as np
from numpy.typing import NDArray
from PIL import Image, UnidentifiedImageError

from fkd.images.exif import apply_exif_orientation, pil_exif_orientation, upright_size
from fkd.images.limits import ImageDecodeError, check_pixel_count
from fkd.images.reduction import Reduction

PIL_FORMATS = ("JPEG", "PNG", "BMP", "DIB", "GIF", "WEBP", "TIFF", "PPM")
"""The PIL decoders ``decode_image`` lets PIL pick from (JPEG includes MPO)."""


def decode_with_pil(
    data: bytes, max_pixels: int, reduction: Reduction | None = None
) -> NDArray[np.uint8]:
    """Any supported format through PIL; every PIL failure becomes an ``ImageDecodeError``.

    ``reduction``, if given, picks a JPEG's DCT scaling factor (``Image.draft``) from
    its upright size; other formats decode at full size whatever it says.
    """
    try:
        with open_with_pil(data) as image:
            check_pixel_count(image.width, image.height, max_pixels)
            if reduction is not None and image.format in ("JPEG", "MPO"):
                draft_reduced(image, reduction)
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


def draft_reduced(image: Image.Image, reduction: Reduction) -> None:
    """Ask PIL's JPEG decoder for ``1 / reduction(upright size)`` of the image (DCT scaling).

    ``draft`` picks the largest power of two ``s <= min(W // w, H // h)``; with
    ``(w, h) = (W // f, H // f)`` that is exactly ``f``, and the image decodes to
    ``ceil(H / f) x ceil(W / f)``, as simplejpeg's scaled decode does.
    """
    height, width = upright_size(image.width, image.height, pil_exif_orientation(image))
    factor = reduction(height, width)
    if factor > 1 and image.width >= factor and image.height >= factor:
        image.draft(None, (image.width // factor, image.height // factor))


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

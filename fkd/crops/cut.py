"""The crop cutter every path shares: fraction (or pixel) boxes of an image to crops."""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import NDArray

from fkd.crops.kernels import as_chw_uint8, fractions_to_pixels
from fkd.crops.resampling import Resampling, resampling_for


def cut(
    pixels: NDArray[np.uint8] | torch.Tensor,
    fractions: NDArray[np.float64],
    flips: NDArray[np.bool_],
    size: int,
    resampling: Resampling,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """The crop cutter of every path: ``[M, 3, size, size]`` float32 in 0..255 on ``device``.

    ``pixels`` is the image as decoded: ``HxWx3`` uint8 numpy, or a ``3xHxW`` uint8
    tensor (decoded on the device).  ``fractions`` are boxes ``[M, 4]`` as fractions of
    its height and width (the store's form), turned into pixels of the image actually
    decoded, so they replay on a resized copy too.
    """
    image = as_chw_uint8(pixels)
    boxes = fractions_to_pixels(fractions, *image.shape[-2:])
    return resampling.kernel(image, boxes, np.asarray(flips, dtype=bool), size, device)


def cut_pixel_boxes(
    pixels: NDArray[np.uint8],
    boxes: NDArray[np.float64],
    flips: NDArray[np.bool_],
    size: int,
    resampling: Resampling,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """``cut`` for boxes already in pixels of ``pixels`` (the teacher's sampled boxes)."""
    image = as_chw_uint8(pixels)
    flags = np.asarray(flips, dtype=bool)
    return resampling.kernel(image, np.asarray(boxes, dtype=np.float64), flags, size, device)


def cut_teacher_crops(
    pixels: NDArray[np.uint8],
    boxes: NDArray[np.float64],
    flips: NDArray[np.bool_],
    size: int,
    interpolation: str,
    device: torch.device | str,
) -> torch.Tensor:
    """Crops of pixel ``boxes`` with the resampling ``resampling_for(device, interpolation)``."""
    resampling = resampling_for(device, interpolation)
    return cut_pixel_boxes(pixels, boxes, flips, size, resampling, device)

"""The crop cutter every path shares: fraction (or pixel) boxes of an image to crops."""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import NDArray

from fkd.crops.kernels import as_chw_uint8, fractions_to_pixels
from fkd.crops.resampling import Resampling, resampling_for


def cut(
    pixels: NDArray[np.uint8] | torch.Tensor,
    boxes: NDArray[np.float64],
    flips: NDArray[np.bool_],
    size: int,
    resampling: Resampling,
    device: torch.device | str = "cpu",
    *,
    in_pixels: bool = False,
) -> torch.Tensor:
    """The crop cutter of every path: ``[M, 3, size, size]`` float32 in 0..255 on ``device``.

    ``pixels`` is the image as decoded: ``HxWx3`` uint8 numpy, or a ``3xHxW`` uint8
    tensor (decoded on the device).  ``boxes`` ``[M, 4]`` (top, left, height, width) are
    fractions of its height and width (the store's form), turned into pixels of the image
    actually decoded, so they replay on a resized copy too; ``in_pixels=True``: already
    pixels of this image (the teacher's freshly sampled boxes).
    """
    image = as_chw_uint8(pixels)
    if not in_pixels:
        boxes = fractions_to_pixels(boxes, *image.shape[-2:])
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
    return cut(pixels, boxes, flips, size, resampling, device, in_pixels=True)

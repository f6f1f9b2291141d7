"""Applying crop boxes to pixels: cut, resize, flip and normalise, batched over crops.

Sampling the boxes is ``fkd.storage_formats.crop_sampler`` (numpy, no torch);
this module only applies them.  Two paths:

- ``cut_crops`` (the fast path): one ``torchvision.ops.roi_align`` call cuts
  and resizes all M crops of an image at once, on CPU or GPU.  With adaptive
  sampling each output pixel averages ceil(box/size)^2 bilinear samples of
  its bin, so downscaling is antialiased.  It supports bilinear resampling.
- ``cut_crops_reference`` (the exact path): torchvision's ``resized_crop`` per
  crop with antialiasing, bilinear or bicubic.  It is what the fidelity check
  compares against, and what bicubic interpolation uses.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from numpy.typing import NDArray
from torchvision.ops import roi_align
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F

INTERPOLATION_MODES = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
}


def image_to_tensor(image: NDArray[np.uint8], device: torch.device | str = "cpu") -> torch.Tensor:
    """An HxWx3 uint8 array to a 3xHxW float32 tensor in [0, 255] on ``device``."""
    tensor = torch.from_numpy(np.ascontiguousarray(image)).to(device, non_blocking=True)
    return tensor.permute(2, 0, 1).float()


def fractions_to_pixels(
    fractions: NDArray[np.float64], height: int, width: int
) -> NDArray[np.float64]:
    """Boxes as fractions (top, left, height, width) to pixels of an image of that size."""
    return np.asarray(fractions, dtype=np.float64) * np.array([height, width, height, width])


def cut_crops(
    image: torch.Tensor,
    boxes: NDArray[np.float64] | torch.Tensor,
    flips: NDArray[np.bool_] | torch.Tensor,
    size: int,
) -> torch.Tensor:
    """All crops of one image at once: ``[M, 3, size, size]`` float32, values as in ``image``.

    ``image`` is ``3xHxW`` float; ``boxes`` are pixel boxes ``[M, 4]`` (top,
    left, height, width) and ``flips`` ``[M]`` booleans.
    """
    device = image.device
    box = torch.as_tensor(np.asarray(boxes), dtype=torch.float32, device=device)
    top, left, height, width = box.unbind(-1)
    rois = torch.stack([torch.zeros_like(top), left, top, left + width, top + height], dim=-1)
    crops = roi_align(
        image[None],
        rois,
        output_size=(size, size),
        spatial_scale=1.0,
        sampling_ratio=-1,
        aligned=True,
    )
    return flip_where(crops, torch.as_tensor(np.asarray(flips), device=device))


def cut_crops_reference(
    image: torch.Tensor,
    boxes: NDArray[np.float64] | Sequence[Sequence[float]],
    flips: NDArray[np.bool_] | Sequence[bool],
    size: int,
    interpolation: str = "bilinear",
) -> torch.Tensor:
    """The exact path: torchvision ``resized_crop`` (antialiased) one crop at a time."""
    mode = interpolation_mode(interpolation)
    crops = []
    for (top, left, height, width), flip in zip(np.asarray(boxes), np.asarray(flips), strict=True):
        crop = F.resized_crop(
            image,
            round(float(top)),
            round(float(left)),
            round(float(height)),
            round(float(width)),
            [size, size],
            interpolation=mode,
            antialias=True,
        )
        crops.append(crop.flip(-1) if flip else crop)
    return torch.stack(crops)


def flip_where(crops: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """Mirror the crops whose flag is set, left to right."""
    mask = flips.to(torch.bool).view(-1, 1, 1, 1)
    return torch.where(mask, crops.flip(-1), crops)


def normalise(crops: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Pixel values in [0, 255] to a teacher's input: (x / 255 - mean) / std, per channel."""
    mean_t = torch.tensor(mean, dtype=crops.dtype, device=crops.device).view(1, -1, 1, 1) * 255
    std_t = torch.tensor(std, dtype=crops.dtype, device=crops.device).view(1, -1, 1, 1) * 255
    return (crops - mean_t) / std_t


def interpolation_mode(name: str) -> InterpolationMode:
    try:
        return INTERPOLATION_MODES[name]
    except KeyError:
        raise ValueError(
            f"unknown interpolation {name!r}; choose one of {sorted(INTERPOLATION_MODES)}"
        ) from None

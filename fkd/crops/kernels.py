"""Crop kernels: cut and resize boxes of one image into crops, batched over crops.

- ``cut_crops``: one ``torchvision.ops.roi_align`` call cuts and resizes all M crops of an
  image at once, on CPU or GPU.  With adaptive sampling each output pixel averages
  ceil(box/size)^2 bilinear samples of its bin, so downscaling is antialiased.
- ``cut_crops_uint8``: torchvision's antialiased bilinear ``resized_crop`` per crop on the
  uint8 image, torch's vectorised uint8 resize: 6-8x cheaper than ``roi_align`` on one CPU
  thread, within one grey level of the reference.
- ``cut_crops_reference``: torchvision's ``resized_crop`` per crop with antialiasing on
  float pixels, bilinear or bicubic: what the fidelity check compares against.

Plus the pixel helpers around them (flip, normalise, boxes from fractions).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeVar

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

T = TypeVar("T")


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


def cut_crops_uint8(
    pixels: NDArray[np.uint8] | torch.Tensor,
    boxes: NDArray[np.float64],
    flips: NDArray[np.bool_],
    size: int,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Crops of an ``HxWx3`` uint8 image as float32 ``[N, 3, size, size]`` in 0..255.

    Each pixel box (rounded to whole pixels, as ``cut_crops_reference`` does)
    goes through torchvision's antialiased bilinear ``resized_crop`` on the uint8 image
    in channels-last layout, torch's vectorised uint8 resize: much cheaper on CPU than
    ``cut_crops`` and within one grey level of the float reference (the result is
    rounded to uint8 before it becomes float).  ``pixels`` may also be a ``3xHxW``
    uint8 tensor (on any device; it is cut on the CPU).  ``dtype=torch.uint8`` returns
    the whole grey levels themselves, a quarter of the bytes; their float32 is exactly
    the float32 result.
    """
    image = as_chw_uint8(pixels).cpu()
    height, width = image.shape[-2:]
    whole = np.rint(np.asarray(boxes, dtype=np.float64)).astype(np.int64)
    top = np.clip(whole[:, 0], 0, height - 1)
    left = np.clip(whole[:, 1], 0, width - 1)
    box_height = np.clip(whole[:, 2], 1, height - top)
    box_width = np.clip(whole[:, 3], 1, width - left)
    out = torch.empty((len(whole), 3, size, size), dtype=dtype)
    for k in range(len(whole)):
        crop = F.resized_crop(
            image,
            int(top[k]),
            int(left[k]),
            int(box_height[k]),
            int(box_width[k]),
            [size, size],
            interpolation=InterpolationMode.BILINEAR,
            antialias=True,
        )
        out[k].copy_(crop.flip(-1) if flips[k] else crop)
    return out


def as_chw_uint8(pixels: NDArray[np.uint8] | torch.Tensor) -> torch.Tensor:
    """An ``HxWx3`` uint8 array as a ``3xHxW`` tensor view (no copy); a tensor as it is."""
    if isinstance(pixels, torch.Tensor):
        return pixels
    return torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)


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
    return choose(INTERPOLATION_MODES, name, "interpolation")


def choose(table: Mapping[str, T], name: str, what: str) -> T:
    """``table[name]``; an unknown name is refused with the list of known ones."""
    try:
        return table[name]
    except KeyError:
        raise ValueError(f"unknown {what} {name!r}; choose one of {list(table)}") from None

"""Applying crop boxes to pixels: cut, resize, flip and normalise, batched over crops.

Sampling the boxes is ``fkd.storage_formats.crop_sampler`` (numpy, no torch);
this module only applies them.  Three paths:

- ``cut_crops`` (the batched path): one ``torchvision.ops.roi_align`` call cuts
  and resizes all M crops of an image at once, on CPU or GPU.  With adaptive
  sampling each output pixel averages ceil(box/size)^2 bilinear samples of
  its bin, so downscaling is antialiased.  It supports bilinear resampling.
- ``cut_crops_uint8`` (the CPU path): torchvision's antialiased bilinear
  ``resized_crop`` per crop on the uint8 image, torch's vectorised uint8
  resize: 6-8x cheaper than ``roi_align`` on one CPU thread, within one grey
  level of the reference.
- ``cut_crops_reference`` (the exact path): torchvision's ``resized_crop`` per
  crop with antialiasing on float pixels, bilinear or bicubic.  It is what the
  fidelity check compares against, and what bicubic interpolation uses.

Which one a crop goes through is a ``Resampling``, named in the registry
``RESAMPLINGS``; ``resampling_for(device, interpolation)`` is the one place that picks
it for a device, for the teacher (``fkd generate`` records its choice in the store as
``teacher.resampling``) and for every student (the FKD loader, hard labels and online
KD all cut through ``cut``, and a training run records its choice in its metrics).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray
from torchvision.ops import roi_align
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F

from fkd.storage_formats.spec import RESAMPLINGS

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


def cut_crops_uint8(
    pixels: NDArray[np.uint8] | torch.Tensor,
    boxes: NDArray[np.float64],
    flips: NDArray[np.bool_],
    size: int,
) -> torch.Tensor:
    """Crops of an ``HxWx3`` uint8 image as float32 ``[N, 3, size, size]`` in 0..255.

    Each pixel box (rounded to whole pixels, as ``cut_crops_reference`` does)
    goes through torchvision's antialiased bilinear ``resized_crop`` on the uint8 image
    in channels-last layout, torch's vectorised uint8 resize: much cheaper on CPU than
    ``cut_crops`` and within one grey level of the float reference (the result is
    rounded to uint8 before it becomes float).  ``pixels`` may also be a ``3xHxW``
    uint8 tensor (on any device; it is cut on the CPU).
    """
    image = as_chw_uint8(pixels).cpu()
    height, width = image.shape[-2:]
    whole = np.rint(np.asarray(boxes, dtype=np.float64)).astype(np.int64)
    top = np.clip(whole[:, 0], 0, height - 1)
    left = np.clip(whole[:, 1], 0, width - 1)
    box_height = np.clip(whole[:, 2], 1, height - top)
    box_width = np.clip(whole[:, 3], 1, width - left)
    out = torch.empty((len(whole), 3, size, size), dtype=torch.float32)
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


Kernel = Callable[
    [torch.Tensor, NDArray[np.float64], NDArray[np.bool_], int, "torch.device | str"],
    torch.Tensor,
]


@dataclass(frozen=True)
class Resampling:
    """One way of cutting and resizing crops, by name (recorded in stores and metrics).

    ``kernel(image, pixel_boxes, flips, size, device)`` takes the ``3xHxW`` uint8
    image tensor (on the CPU, or on ``device`` when decoded there) and returns float32
    ``[M, 3, size, size]`` crops in 0..255 on ``device``; ``whole_pixels`` says whether
    boxes are rounded to whole pixels.
    """

    name: str
    interpolation: str
    whole_pixels: bool
    kernel: Kernel
    description: str


def _uint8_kernel(
    image: torch.Tensor,
    boxes: NDArray[np.float64],
    flips: NDArray[np.bool_],
    size: int,
    device: torch.device | str,
) -> torch.Tensor:
    return cut_crops_uint8(image, boxes, flips, size).to(device)


def _roi_align_kernel(
    image: torch.Tensor,
    boxes: NDArray[np.float64],
    flips: NDArray[np.bool_],
    size: int,
    device: torch.device | str,
) -> torch.Tensor:
    return cut_crops(image.to(device, non_blocking=True).float(), boxes, flips, size)


def _float_kernel(interpolation: str) -> Kernel:
    def kernel(
        image: torch.Tensor,
        boxes: NDArray[np.float64],
        flips: NDArray[np.bool_],
        size: int,
        device: torch.device | str,
    ) -> torch.Tensor:
        tensor = image.to(device, non_blocking=True).float()
        return cut_crops_reference(tensor, boxes, flips, size, interpolation)

    return kernel


_REGISTERED = (
    Resampling(
        "uint8-bilinear",
        "bilinear",
        True,
        _uint8_kernel,
        "torchvision's antialiased bilinear resized_crop on the uint8 image, per crop "
        "(the CPU path: 6-8x cheaper than roi-align on one thread)",
    ),
    Resampling(
        "roi-align-bilinear",
        "bilinear",
        False,
        _roi_align_kernel,
        "one batched torchvision.ops.roi_align call for all crops, sub-pixel boxes, "
        "adaptive sampling (the accelerator path)",
    ),
    Resampling(
        "float-bilinear",
        "bilinear",
        True,
        _float_kernel("bilinear"),
        "torchvision's antialiased bilinear resized_crop on float pixels (the exact reference)",
    ),
    Resampling(
        "float-bicubic",
        "bicubic",
        True,
        _float_kernel("bicubic"),
        "torchvision's antialiased bicubic resized_crop on float pixels (bicubic teachers)",
    ),
)
RESAMPLING_REGISTRY: dict[str, Resampling] = {r.name: r for r in _REGISTERED}
if tuple(RESAMPLING_REGISTRY) != RESAMPLINGS:  # the store's list of names is the registry's
    raise RuntimeError(f"resampling registry {list(RESAMPLING_REGISTRY)} != {RESAMPLINGS}")


def get_resampling(name: str) -> Resampling:
    """The registered resampling ``name``; an unknown name lists the known ones."""
    try:
        return RESAMPLING_REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown resampling {name!r}; choose one of {list(RESAMPLING_REGISTRY)}"
        ) from None


def resampling_for(device: torch.device | str, interpolation: str = "bilinear") -> Resampling:
    """The resampling crops get on ``device``: the one place this choice is made.

    Bicubic takes the exact float path everywhere.  Bilinear takes the cheapest faithful
    path of the device: per-crop uint8 resizing on CPU (teacher decode workers and
    student loader workers alike), one batched ``roi_align`` call on an accelerator.
    """
    interpolation_mode(interpolation)  # refuses an unknown name
    if interpolation != "bilinear":
        return get_resampling(f"float-{interpolation}")
    if torch.device(device).type == "cpu":
        return get_resampling("uint8-bilinear")
    return get_resampling("roi-align-bilinear")


def teacher_resampling(
    recorded: str | None, interpolation: str, device: torch.device | str
) -> Resampling:
    """A store's crop path: the one it records, else (older stores) ``device``'s choice."""
    return resampling_for(device, interpolation) if recorded is None else get_resampling(recorded)


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

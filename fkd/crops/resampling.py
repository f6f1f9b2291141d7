"""Resamplings: the named ways of cutting crops, and the one place that picks one per device.

``RESAMPLING_REGISTRY`` maps each name of ``fkd.storage_formats.spec.RESAMPLINGS`` to its
kernel.  ``resampling_for(device, interpolation)`` is the choice for a device, for the
teacher (``fkd generate`` records it in the store as ``teacher.resampling``, and every
writer of the store uses it: ``teacher_resampling``) and for every student (the crop
datasets' default is the CPU loader worker's).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from fkd.crops.kernels import (
    choose,
    cut_crops,
    cut_crops_reference,
    cut_crops_uint8,
    interpolation_mode,
)
from fkd.storage_formats.spec import RESAMPLINGS

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

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        """Pickled by name (its kernel need not pickle): DataLoader workers look it up."""
        return get_resampling, (self.name,)


def _float_kernel(interpolation: str) -> Kernel:
    return lambda image, boxes, flips, size, device: cut_crops_reference(
        image.to(device, non_blocking=True).float(), boxes, flips, size, interpolation
    )


_REGISTERED = (
    Resampling(
        "uint8-bilinear",
        "bilinear",
        True,
        lambda image, boxes, flips, size, device: cut_crops_uint8(image, boxes, flips, size).to(
            device
        ),
        "torchvision's antialiased bilinear resized_crop on the uint8 image, per crop "
        "(the CPU path: 6-8x cheaper than roi-align on one thread)",
    ),
    Resampling(
        "roi-align-bilinear",
        "bilinear",
        False,
        lambda image, boxes, flips, size, device: cut_crops(
            image.to(device, non_blocking=True).float(), boxes, flips, size
        ),
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
    return choose(RESAMPLING_REGISTRY, name, "resampling")


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

"""How generate cuts an image's crops: its M boxes sampled from the store's ``CropSpec``
(``sample_image_boxes``) and cut, resized and normalised by ``fkd.crops`` on the store's
recorded crop path (``CropCutter``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray

from fkd import crops as crop_ops
from fkd.storage_formats import CropSpec, StoreSpec, sample_boxes


def sample_image_boxes(
    crops: CropSpec, index: int, height: int, width: int
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Pixel boxes ``[M, 4]`` and flips ``[M]`` of image ``index``, from the store's sampler."""
    boxes, flips = sample_boxes(crops, np.array([index]), np.array([height]), np.array([width]))
    return boxes[0].astype(np.float64), flips[0]


@dataclass(frozen=True)
class CropCutter:
    """Samples an image's boxes and cuts its M normalised crops (picklable, for workers)."""

    crops: CropSpec
    size: int
    resampling: str
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def for_store(cls, spec: StoreSpec, device: torch.device | str) -> CropCutter:
        """The store's cutter: its recorded crop path, else (older stores) the device's."""
        info = spec.teacher
        path = crop_ops.teacher_resampling(info.resampling, info.interpolation, device)
        return cls(spec.crops, info.input_size, path.name, info.mean, info.std)

    @property
    def on_cpu(self) -> bool:
        """Whether the cut runs on the CPU whatever the device (decode workers can do it)."""
        return self.resampling == "uint8-bilinear"

    def cut(
        self, index: int, image: NDArray[np.uint8], device: torch.device | str = "cpu"
    ) -> torch.Tensor:
        height, width = image.shape[:2]
        boxes, flips = sample_image_boxes(self.crops, index, height, width)
        return self.cut_boxes(image, boxes, flips, device)

    def cut_boxes(
        self,
        image: NDArray[np.uint8],
        boxes: NDArray[np.float64],
        flips: NDArray[np.bool_],
        device: torch.device | str,
    ) -> torch.Tensor:
        resampling = crop_ops.get_resampling(self.resampling)
        crops = crop_ops.cut(image, boxes, flips, self.size, resampling, device, in_pixels=True)
        return crop_ops.normalise(crops, self.mean, self.std)


__all__ = ["CropCutter", "sample_image_boxes"]

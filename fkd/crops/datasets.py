"""The crop datasets: one family, one cutter, for every student and for the teacher.

Every dataset here decodes an image once and cuts its crops through ``fkd.crops.cut``
with one ``Resampling`` (``fkd.crops.resampling_for`` picks it per device), so on a
given device the crops of a (box, flip) pair are the same pixels whoever asks:

- ``SampledCropDataset``: a folder without a store.  The hard-label and online-KD
  students.  Boxes come from the store's sampler (``fkd-rrc-v1``) for a ``CropSpec``
  of M crops per image, and each visit takes the crops ``crop_schedule`` names: the
  very boxes a store generated with the same ``CropSpec`` holds.
- ``fkd.data.CropLabelDataset``: a folder with a store.  The FKD student: boxes and
  labels are the store's, through the same ``crop_schedule``.
- ``fkd.generate.DecodeDataset``: generate's decode workers cut all M crops of an
  image for the teacher.

Which crops a visit uses is ``fkd.crops.schedule.crop_schedule``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch.utils.data import Dataset

from fkd.crops.cut import cut
from fkd.crops.kernels import as_chw_uint8, cut_crops_uint8, fractions_to_pixels
from fkd.crops.resampling import get_resampling, resampling_for
from fkd.crops.schedule import crop_schedule
from fkd.exceptions import UserInputError
from fkd.images import DEFAULT_MAX_PIXELS, ImageSource, decode_or_reason
from fkd.storage_formats import CropSpec
from fkd.storage_formats.crop_sampler import boxes_to_fractions, sample_boxes

# The resampling whose crops are whole grey levels, so uint8 crops are exact.
UINT8_RESAMPLING = "uint8-bilinear"


class CropDataset:
    """What every crop dataset shares: output size, resampling, transform, the visit.

    ``resampling`` is a name of ``fkd.crops.RESAMPLING_REGISTRY``; None picks the CPU
    worker's (``resampling_for("cpu")``).  ``transform``, if given, is applied to each
    crop (``[3, S, S]`` float in 0..255 in, the same shape out).

    ``uint8_crops=True`` returns the crops as uint8 ``[N, 3, S, S]`` instead of float32:
    a quarter of the bytes through the DataLoader's shared memory, collate and pinning.
    The consumer turns them into float32 (0..255) after moving them to its device
    (``fkd train`` does), which is exact: ``"uint8-bilinear"``, the only resampling it
    accepts, rounds every crop to whole grey levels anyway.  Other resamplings, and a
    ``transform`` (which expects float crops), are refused with it.
    """

    def __init__(
        self,
        input_size: int,
        resampling: str | None = None,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        *,
        uint8_crops: bool = False,
    ) -> None:
        if int(input_size) < 1:
            raise ValueError(f"input_size must be positive, got {input_size}")
        self.input_size = int(input_size)
        self.resampling = (
            resampling_for("cpu") if resampling is None else get_resampling(resampling)
        )
        self.transform = transform
        self.uint8_crops = bool(uint8_crops)
        if self.uint8_crops:
            check_uint8_crops(self.resampling.name, transform)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """The visit used by plain integer indices (``ScheduledIndex`` carries its own)."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    def visit_of(self, index: int) -> int:
        return int(getattr(index, "visit", self.epoch))

    def cut(
        self, pixels: NDArray[np.uint8], fractions: NDArray[np.float64], flips: NDArray[np.bool_]
    ) -> torch.Tensor:
        """The crops ``[N, 3, S, S]`` (float32, or uint8 with ``uint8_crops``; 0..255)
        of fraction boxes of ``pixels``."""
        if self.uint8_crops:
            image = as_chw_uint8(pixels)
            boxes = fractions_to_pixels(fractions, *image.shape[-2:])
            return cut_crops_uint8(image, boxes, flips, self.input_size, dtype=torch.uint8)
        crops = cut(pixels, fractions, flips, self.input_size, self.resampling)
        if self.transform is not None:
            crops = torch.stack([self.transform(crop) for crop in crops])
        return crops


def check_uint8_crops(resampling: str, transform: object) -> None:
    """Refuse uint8 crops that would not be exact, or that a transform would get."""
    if resampling != UINT8_RESAMPLING:
        raise ValueError(
            f"uint8_crops=True needs resampling {UINT8_RESAMPLING!r} (whole grey levels); "
            f"{resampling!r} gives fractional values that uint8 would round: "
            "leave uint8_crops off with it"
        )
    if transform is not None:
        raise ValueError(
            "uint8_crops=True cannot take a transform (it expects float crops in 0..255): "
            "apply it to the batch after converting it to float, or leave uint8_crops off"
        )


class SampledCropDataset(CropDataset, Dataset[dict[str, Any]]):
    """N random-resized crops per visit of every image of a folder, without a store.

    ``crops`` is the ``CropSpec`` the boxes are drawn from (M per image, scale, ratio,
    flip probability and the sampler's seed); visit ``v`` of image ``i`` takes the
    crops ``crop_schedule(seed, i, v, M, N)``.  With the ``CropSpec`` of a store made
    from the same folder and the same ``seed``, these are exactly the FKD student's
    crops (``fkd.data.CropLabelDataset``).  With M = N x visits every crop is fresh.
    Items have ``CropLabelDataset``'s layout (``labels`` empty) and collate with
    ``fkd.data.collate_crops``; ``uint8_crops`` as in ``CropDataset``.
    """

    def __init__(
        self,
        source: ImageSource,
        crops: CropSpec,
        crops_per_visit: int,
        input_size: int,
        seed: int,
        resampling: str | None = None,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        *,
        uint8_crops: bool = False,
    ) -> None:
        super().__init__(input_size, resampling, transform, uint8_crops=uint8_crops)
        if crops.boxes_stored:
            raise ValueError("a SampledCropDataset derives its boxes: give a sampler CropSpec")
        crop_schedule(0, 0, 0, crops.crops_per_image, crops_per_visit)  # refuses N > M
        self.source = source
        self.crops = crops
        self.crops_per_visit = int(crops_per_visit)
        self.seed = int(seed)
        self.targets = source.manifest.targets.astype(np.int64)

    def __len__(self) -> int:
        return len(self.source.manifest)

    def schedule(self, index: int, visit: int) -> NDArray[np.int64]:
        m = self.crops.crops_per_image
        return crop_schedule(self.seed, index, visit, m, self.crops_per_visit)

    def __getitem__(self, i: int) -> dict[str, Any]:
        index = int(i)
        chosen = self.schedule(index, self.visit_of(i))
        path = self.source.path_of(index)
        pixels, reason = decode_or_reason(path, DEFAULT_MAX_PIXELS)
        if pixels is None:
            raise UserInputError(f"{path}: cannot decode ({reason}); remove or fix it")
        height, width = np.array([pixels.shape[0]]), np.array([pixels.shape[1]])
        boxes, flips = sample_boxes(self.crops, np.array([index]), height, width, chosen[None])
        fractions = boxes_to_fractions(boxes, height, width)[0]
        return {
            "images": self.cut(pixels, fractions, flips[0]),
            "labels": {},
            "target": int(self.targets[index]),
            "image_index": index,
            "crops": torch.from_numpy(chosen),
        }

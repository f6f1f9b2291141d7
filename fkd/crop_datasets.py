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

``crop_schedule(seed, image, visit, M, N)`` is which stored crops visit ``visit`` of
``image`` uses.  Visits walk a permutation of the M crops keyed by
``(seed, image, cycle)``, so within one cycle every crop is used once before any
repeats.  It is a pure function: every rank and worker agrees without talking.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch.utils.data import Dataset

from fkd import crops as crop_ops
from fkd.exceptions import UserInputError
from fkd.images import DEFAULT_MAX_PIXELS, ImageSource, decode_or_reason
from fkd.storage_formats import CropSpec
from fkd.storage_formats.crop_sampler import boxes_to_fractions, sample_boxes

# The crop schedule -----------------------------------------------------------------


def crop_schedule(
    seed: int, image: int, visit: int, crops_per_image: int, crops_per_visit: int
) -> NDArray[np.int64]:
    """The stored crops (indices into M) used at visit ``visit`` of image ``image``.

    Visit v takes positions ``v*N .. v*N + N - 1`` of an endless sequence made
    of permutations of the M crops, one permutation per cycle ``c = position // M``,
    each drawn from ``np.random.default_rng(SeedSequence([seed, image, c]))``.
    So every crop is used exactly once per cycle; when M % N != 0 a visit that
    straddles two cycles takes the tail of one permutation and the head of the next.
    """
    m, n = int(crops_per_image), int(crops_per_visit)
    if not 1 <= n <= m:
        raise ValueError(f"crops_per_visit must lie in [1, crops_per_image={m}], got {n}")
    if seed < 0 or image < 0 or visit < 0:
        raise ValueError(f"seed, image and visit must be >= 0, got {seed}, {image}, {visit}")
    start = visit * n
    first = start // m
    out = np.empty(n, dtype=np.int64)
    filled = 0
    for cycle in range(first, (start + n - 1) // m + 1):
        perm = _cycle_permutation(seed, image, cycle, m)
        lo = max(start - cycle * m, 0)
        hi = min(start + n - cycle * m, m)
        out[filled : filled + hi - lo] = perm[lo:hi]
        filled += hi - lo
    return out


def _cycle_permutation(seed: int, image: int, cycle: int, m: int) -> NDArray[np.int64]:
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(image), int(cycle)]))
    return rng.permutation(m).astype(np.int64)


class ScheduledIndex(int):
    """A dataset index that also carries the visit (epoch) it is drawn for.

    ``CropScheduleSampler`` yields these, so the epoch travels with each index
    into persistent DataLoader workers; it is an ``int`` everywhere else.
    """

    visit: int

    def __new__(cls, index: int, visit: int) -> ScheduledIndex:
        value = super().__new__(cls, index)
        value.visit = int(visit)
        return value

    def __reduce__(self) -> tuple[Any, tuple[int, int]]:
        return ScheduledIndex, (int(self), self.visit)

    def __repr__(self) -> str:
        return f"ScheduledIndex({int(self)}, visit={self.visit})"


# The family ------------------------------------------------------------------------


class CropDataset:
    """What every crop dataset shares: output size, resampling, transform, the visit.

    ``resampling`` is a name of ``fkd.crops.RESAMPLING_REGISTRY``; None picks the CPU
    worker's (``resampling_for("cpu")``).  ``transform``, if given, is applied to each
    crop (``[3, S, S]`` float in 0..255 in, the same shape out).
    """

    def __init__(
        self,
        input_size: int,
        resampling: str | None = None,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        if int(input_size) < 1:
            raise ValueError(f"input_size must be positive, got {input_size}")
        self.input_size = int(input_size)
        self.resampling = (
            crop_ops.resampling_for("cpu")
            if resampling is None
            else crop_ops.get_resampling(resampling)
        )
        self.transform = transform
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
        """The crops ``[N, 3, S, S]`` (float32, 0..255) of fraction boxes of ``pixels``."""
        crops = crop_ops.cut(pixels, fractions, flips, self.input_size, self.resampling)
        if self.transform is not None:
            crops = torch.stack([self.transform(crop) for crop in crops])
        return crops


class SampledCropDataset(CropDataset, Dataset[dict[str, Any]]):
    """N random-resized crops per visit of every image of a folder, without a store.

    ``crops`` is the ``CropSpec`` the boxes are drawn from (M per image, scale, ratio,
    flip probability and the sampler's seed); visit ``v`` of image ``i`` takes the
    crops ``crop_schedule(seed, i, v, M, N)``.  With the ``CropSpec`` of a store made
    from the same folder and the same ``seed``, these are exactly the FKD student's
    crops (``fkd.data.CropLabelDataset``).  With M = N x visits every crop is fresh.
    Items have ``CropLabelDataset``'s layout (``labels`` empty) and collate with
    ``fkd.data.collate_crops``.
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
    ) -> None:
        super().__init__(input_size, resampling, transform)
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

"""Crops: applying boxes to pixels (sampling them is ``fkd.storage_formats.crop_sampler``).

- ``kernels``: the three ways to cut and resize (roi_align, uint8 ``resized_crop``, the
  float reference), and pixel helpers (flip, normalise, fractions to pixels);
- ``resampling``: the named resamplings (``RESAMPLING_REGISTRY``) and ``resampling_for``,
  the one place that picks one for a device;
- ``cut``: ``cut``, the cutter every path calls (fraction boxes, or pixel boxes);
- ``schedule``: ``crop_schedule``, which stored crops a visit of an image uses;
- ``datasets``: the crop dataset family (``CropDataset``, ``SampledCropDataset``).
"""

from fkd.crops.cut import cut, cut_teacher_crops
from fkd.crops.kernels import (
    INTERPOLATION_MODES,
    as_chw_uint8,
    cut_crops,
    cut_crops_reference,
    cut_crops_uint8,
    flip_where,
    fractions_to_pixels,
    image_to_tensor,
    interpolation_mode,
    normalise,
)
from fkd.crops.resampling import (
    RESAMPLING_REGISTRY,
    Resampling,
    get_resampling,
    resampling_for,
    teacher_resampling,
)

__all__ = [
    "INTERPOLATION_MODES",
    "RESAMPLING_REGISTRY",
    "Resampling",
    "as_chw_uint8",
    "cut",
    "cut_crops",
    "cut_crops_reference",
    "cut_crops_uint8",
    "cut_teacher_crops",
    "flip_where",
    "fractions_to_pixels",
    "get_resampling",
    "image_to_tensor",
    "interpolation_mode",
    "normalise",
    "resampling_for",
    "teacher_resampling",
]

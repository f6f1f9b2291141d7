"""The preprocessing a model expects: input size, mean, std and resize interpolation.

The ImageNet mean and std are defined here, once, for students, teachers and checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fkd.models.errors import ModelError
from fkd.storage_formats.spec import INTERPOLATIONS

__all__ = [
    "DEFAULT_INPUT_SIZE",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ModelDefaults",
    "interpolation_name",
    "preprocessing_from",
    "square_size",
]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
DEFAULT_INPUT_SIZE = 224


@dataclass(frozen=True)
class ModelDefaults:
    """The preprocessing a model is designed for (the keyword names of ``TeacherInfo``)."""

    input_size: int = DEFAULT_INPUT_SIZE
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bilinear"


def interpolation_name(value: Any, default: str) -> str:
    """``"bilinear"`` / ``"bicubic"`` from a string or torchvision InterpolationMode, else
    ``default``."""
    name = str(getattr(value, "value", value)).lower()
    return name if name in INTERPOLATIONS else default


def square_size(size: Any) -> int:
    """One side length from an int or a (S,), (H, W) or (C, H, W) sequence of equal sides."""
    if isinstance(size, int):
        return size
    sides = [int(side) for side in size][-2:]
    if len(set(sides)) != 1:
        raise ModelError(
            f"the model expects non-square {sides[0]}x{sides[-1]} inputs; fkd needs square inputs"
        )
    return sides[0]


def preprocessing_from(
    input_size: Any = None,
    mean: Any = None,
    std: Any = None,
    interpolation: Any = None,
    *,
    default_interpolation: str = "bilinear",
) -> ModelDefaults:
    """:class:`ModelDefaults` from a library's own values (torchvision transforms, a timm
    config); a value left out (None) takes the default: 224 px, ImageNet's mean and std."""
    return ModelDefaults(
        input_size=square_size(input_size) if input_size else DEFAULT_INPUT_SIZE,
        mean=IMAGENET_MEAN if mean is None else tuple(float(v) for v in mean),
        std=IMAGENET_STD if std is None else tuple(float(v) for v in std),
        interpolation=interpolation_name(interpolation, default_interpolation),
    )

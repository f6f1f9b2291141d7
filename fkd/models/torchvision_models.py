"""torchvision classification models: names, preprocessing and untrained builds.

The preprocessing of an architecture is the one of its ``DEFAULT`` pretrained weights
(``weights.transforms()``: crop size, mean, std, interpolation), else ImageNet's at 224 px.
"""

from __future__ import annotations

import difflib
from typing import Any

from torch import nn

from fkd.models.errors import ModelError
from fkd.models.preprocessing import ModelDefaults, preprocessing_from

__all__ = [
    "build_torchvision",
    "check_torchvision_arch",
    "torchvision_classifiers",
    "torchvision_default_weights",
    "torchvision_preprocessing",
]


def torchvision_classifiers() -> list[str]:
    """The names of torchvision's image classification models."""
    from torchvision import models

    return list(models.list_models(module=models))


def check_torchvision_arch(arch: str) -> str:
    """``arch`` in lower case, refused unless it is a torchvision image classifier."""
    from torchvision import models

    classifiers = torchvision_classifiers()
    name = arch.lower()
    if name in classifiers:
        return name
    if name in models.list_models():
        raise ModelError(f"torchvision model {arch!r} is not an image classifier")
    close = difflib.get_close_matches(name, classifiers, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ModelError(
        f"unknown torchvision architecture {arch!r}{hint} (see torchvision.models.list_models())"
    )


def torchvision_default_weights(arch: str) -> Any:
    """torchvision's DEFAULT weights enum member for ``arch``, or None."""
    from torchvision import models

    try:
        return models.get_model_weights(arch).DEFAULT
    except (ValueError, AttributeError, KeyError):
        return None


def torchvision_preprocessing(weights_enum: Any) -> ModelDefaults:
    """input size, mean, std and interpolation from a weights enum's transforms."""
    if weights_enum is None:
        return ModelDefaults()
    try:
        transforms = weights_enum.transforms()
    except Exception:
        return ModelDefaults()
    return preprocessing_from(
        getattr(transforms, "crop_size", None),
        getattr(transforms, "mean", None),
        getattr(transforms, "std", None),
        getattr(transforms, "interpolation", None),
    )


def build_torchvision(arch: str, num_classes: int | None = None, in_channels: int = 3) -> nn.Module:
    """An untrained ``arch``; ``num_classes=None`` keeps torchvision's default (1000)."""
    from torchvision import models

    if in_channels != 3:
        raise ModelError(f"torchvision model {arch!r} takes 3 input channels, not {in_channels}")
    extra = {} if num_classes is None else {"num_classes": num_classes}
    model: nn.Module = models.get_model(arch, weights=None, **extra)
    return model

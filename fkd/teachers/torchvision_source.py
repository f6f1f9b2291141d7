"""``torchvision:<arch>``: torchvision's pretrained weights, or a local state dict.

Without ``weights`` torchvision's own pretrained weights are fetched (network or torch hub
cache); with ``weights`` the file is loaded into the architecture. The name and the
preprocessing come from the model registry, exactly as for a student of that name.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from fkd.exceptions import short_reason
from fkd.models.registry import resolve_model_name
from fkd.models.torchvision_models import torchvision_default_weights
from fkd.teachers.errors import TeacherError, as_teacher_error
from fkd.teachers.fitting import build_with_weights
from fkd.teachers.source import Resolved, make_info, require_name
from fkd.teachers.weights import load_state_dict_file, sha256_file, sha_if_file

__all__ = ["resolve_torchvision"]


def _cached_file(weights_enum: Any) -> Path:
    """Where torch hub caches the file of a torchvision weights enum member."""
    name = os.path.basename(urlparse(weights_enum.url).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def _pretrained(arch: str, weights_enum: Any, spec: str) -> nn.Module:
    """Build ``arch`` with torchvision's pretrained weights (download or hub cache)."""
    from torchvision import models

    if weights_enum is None:
        raise TeacherError(
            f"torchvision has no pretrained weights for {arch!r}; pass --weights FILE"
        )
    try:
        model: nn.Module = models.get_model(arch, weights=weights_enum)
    except Exception as exc:
        raise TeacherError(
            f"could not fetch torchvision's pretrained weights for {spec!r} "
            f"({short_reason(exc)}); pass --weights FILE with a local state dict instead"
        ) from exc
    return model


def resolve_torchvision(arch: str, spec: str, weights: Path | None) -> Resolved:
    """``torchvision:<arch>``: pretrained from torchvision, or a local state dict."""
    require_name(arch, spec, "torchvision:resnet50")
    with as_teacher_error(spec):
        model_name = resolve_model_name(f"torchvision:{arch}")
        preprocessing = model_name.defaults()
    weights_enum = torchvision_default_weights(model_name.name)
    rebuilt: int | None = None
    if weights is None:
        model = _pretrained(model_name.name, weights_enum, spec)
        sha = sha_if_file(_cached_file(weights_enum))
    else:
        state_dict = load_state_dict_file(weights)
        model, rebuilt = build_with_weights(model_name.build, state_dict, weights, spec)
        sha = sha256_file(weights)
    categories = None if weights_enum is None else weights_enum.meta.get("categories")
    info = make_info(
        spec,
        **asdict(preprocessing),
        weights_sha256=sha,
        class_names=categories if rebuilt is None else None,
    )
    default_classes = len(categories) if weights is None and categories else 1000
    return Resolved(model, info, rebuilt or default_classes)

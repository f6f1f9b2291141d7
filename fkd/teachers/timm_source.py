"""``timm:<name>``: timm's pretrained weights, or a local state dict (``pip install 'fkd[timm]'``).

The name and the preprocessing come from the model registry, exactly as for a student
of that name (``pretrained_cfg``; bicubic where it says nothing, as in timm).
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from torch import nn

from fkd.exceptions import short_reason
from fkd.models.imagenet_classes import imagenet_class_names
from fkd.models.registry import resolve_model_name
from fkd.teachers.errors import TeacherError, as_teacher_error
from fkd.teachers.fitting import build_with_weights
from fkd.teachers.hub_cache import timm_cached_weights
from fkd.teachers.source import Resolved, make_info, require_name
from fkd.teachers.weights import load_state_dict_file, sha_if_file

__all__ = ["resolve_timm"]


def _import_timm() -> Any:
    """The timm module, or a TeacherError saying how to install it."""
    try:
        import timm
    except ImportError as exc:
        raise TeacherError("timm teachers need the timm package: pip install 'fkd[timm]'") from exc
    return timm


def _pretrained(timm: Any, name: str, spec: str) -> nn.Module:
    """``timm.create_model(name, pretrained=True)``, from the local cache when it is there."""
    cached = timm_cached_weights(name, spec)
    overlay = {} if cached is None else {"pretrained_cfg_overlay": {"file": os.fspath(cached)}}
    try:
        model: nn.Module = timm.create_model(name, pretrained=True, **overlay)
    except Exception as exc:
        raise TeacherError(
            f"could not fetch timm's pretrained weights for {spec!r} ({short_reason(exc)}); "
            "pass --weights FILE with a local state dict instead"
        ) from exc
    return model


def resolve_timm(name: str, spec: str, weights: Path | None) -> Resolved:
    """``timm:<name>``: pretrained from timm, or a local state dict."""
    timm = _import_timm()
    require_name(name, spec, "timm:resnet50.a1_in1k")
    with as_teacher_error(spec):
        model_name = resolve_model_name(f"timm:{name}")
        preprocessing = model_name.defaults()
    rebuilt: int | None = None
    if weights is None:
        model = _pretrained(timm, name, spec)
    else:
        state_dict = load_state_dict_file(weights)
        model, rebuilt = build_with_weights(model_name.build, state_dict, weights, spec)
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    imagenet = rebuilt is None and cfg.get("num_classes") == 1000
    info = make_info(
        spec,
        **asdict(preprocessing),
        weights_sha256=sha_if_file(weights),
        class_names=imagenet_class_names() if imagenet else None,
    )
    return Resolved(model, info, getattr(model, "num_classes", None))

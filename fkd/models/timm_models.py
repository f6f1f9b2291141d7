"""timm models (``pip install timm``): names, preprocessing and untrained builds.

The preprocessing of a model is its ``pretrained_cfg``; what that leaves out takes
timm's own defaults: 224 px, the ImageNet mean and std, and bicubic interpolation.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from torch import nn

from fkd.models.errors import ModelError
from fkd.models.preprocessing import ModelDefaults, preprocessing_from

__all__ = [
    "TIMM_INTERPOLATION",
    "build_timm",
    "check_timm_name",
    "import_timm",
    "timm_preprocessing",
]

TIMM_INTERPOLATION = "bicubic"
"""timm's default interpolation (``PretrainedCfg`` and ``resolve_data_config``)."""


def import_timm() -> Any:
    """The timm module, or a ModelError saying how to install it."""
    try:
        import timm
    except ImportError as exc:
        raise ModelError("timm: models need the timm package: pip install timm") from exc
    return timm


def check_timm_name(name: str) -> str:
    """``name``, refused unless timm knows it (a pretrained tag such as ``.a1_in1k`` is fine)."""
    timm = import_timm()
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ModelError(f"unknown timm model {name!r}{hint} (see timm.list_models())")
    return name


def _pretrained_cfg(name: str) -> Mapping[str, Any]:
    """timm's pretrained config of ``name`` as a dict (empty when it has none)."""
    timm = import_timm()
    try:
        cfg = timm.get_pretrained_cfg(name)
    except Exception:  # an unknown pretrained tag: no config
        cfg = None
    if cfg is None:
        return {}
    return dict(cfg.to_dict() if hasattr(cfg, "to_dict") else cfg)


def timm_preprocessing(name: str) -> ModelDefaults:
    """input size, mean, std and interpolation of ``name`` (timm's defaults where unset)."""
    cfg = _pretrained_cfg(name)
    return preprocessing_from(
        cfg.get("input_size"),
        cfg.get("mean"),
        cfg.get("std"),
        cfg.get("interpolation"),
        default_interpolation=TIMM_INTERPOLATION,
    )


def build_timm(name: str, num_classes: int | None = None, in_channels: int = 3) -> nn.Module:
    """An untrained ``name``; ``num_classes=None`` keeps the model's default."""
    timm = import_timm()
    extra = {} if num_classes is None else {"num_classes": num_classes}
    try:
        model: nn.Module = timm.create_model(name, pretrained=False, in_chans=in_channels, **extra)
    except RuntimeError as exc:  # e.g. an invalid pretrained tag
        raise ModelError(f"timm cannot build {name!r}: {exc}") from exc
    return model

"""``fkd:<arch>``: a checkpoint written by ``fkd train``, passed as ``weights``.

The file is a dict with ``"model"`` (state dict), ``"arch"``, ``"num_classes"`` and
optional ``"input_size"``, ``"mean"``, ``"std"``, ``"interpolation"``, ``"class_names"``
(see :mod:`fkd.checkpoints`). The arch is built by ``fkd.models.build_model``, as for
the student that wrote it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from fkd.models.registry import build_model
from fkd.teachers.errors import TeacherError
from fkd.teachers.fitting import build_with_weights
from fkd.teachers.source import Resolved, info_from, require_name
from fkd.teachers.weights import extract_state_dict, read_weights_file, sha256_file

__all__ = ["resolve_fkd_checkpoint"]


def _checkpoint_entry(checkpoint: Mapping[str, Any], key: str, kind: type, source: Path) -> Any:
    """``checkpoint[key]``, which must exist and be a ``kind``."""
    value = checkpoint.get(key)
    if not isinstance(value, kind):
        raise TeacherError(
            f"checkpoint {os.fspath(source)!r} is not an fkd checkpoint: {key!r} must be a "
            f"{kind.__name__}, got {type(value).__name__}; pass a file written by fkd train"
        )
    return value


def _build_fkd_arch(arch: str, num_classes: int, spec: str) -> nn.Module:
    """Build ``arch`` with the model registry, as ``fkd train`` did."""
    try:
        return build_model(arch, num_classes)
    except (KeyError, ValueError) as exc:  # a ModelError, or the arch's own complaint
        raise TeacherError(f"fkd cannot build arch {arch!r} of {spec!r}: {exc}") from exc


def resolve_fkd_checkpoint(arch: str, spec: str, weights: Path | None) -> Resolved:
    """``fkd:<arch>``: a checkpoint written by ``fkd train`` (weights required)."""
    require_name(arch, spec, "fkd:resnet18")
    if weights is None:
        raise TeacherError(f"teacher {spec!r} needs --weights CKPT, a checkpoint from fkd train")
    checkpoint = read_weights_file(weights)
    if not isinstance(checkpoint, Mapping):
        raise TeacherError(
            f"checkpoint {os.fspath(weights)!r} is not an fkd checkpoint (a dict); "
            "pass a file written by fkd train"
        )
    saved_arch = _checkpoint_entry(checkpoint, "arch", str, weights)
    num_classes = _checkpoint_entry(checkpoint, "num_classes", int, weights)
    if saved_arch != arch:
        raise TeacherError(
            f"checkpoint {os.fspath(weights)!r} holds arch {saved_arch!r}, not {arch!r}; "
            f"use the spec fkd:{saved_arch}"
        )
    state_dict = extract_state_dict(
        _checkpoint_entry(checkpoint, "model", Mapping, weights), weights
    )
    model, _ = build_with_weights(
        lambda _: _build_fkd_arch(arch, num_classes, spec), state_dict, weights, spec
    )
    return Resolved(model, info_from(spec, checkpoint, sha256_file(weights)), num_classes)

"""``load_teacher``: a spec (and weights file) to a teacher on a device, frozen, measured.

A teacher spec is one of ``efficientnet_lite0``, ``torchvision:<arch>``, ``timm:<name>``,
``fkd:<arch>`` (with ``weights``) or ``<module>:<callable>``; see :mod:`fkd.teachers`.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor, nn

from fkd.exceptions import short_reason
from fkd.storage_formats.spec import TeacherInfo
from fkd.teachers.errors import TeacherError, as_teacher_error
from fkd.teachers.module import LoadedTeacher, TeacherModule
from fkd.teachers.source import Resolved
from fkd.teachers.spec import find_resolver
from fkd.teachers.weights import existing_file

__all__ = ["load_teacher"]


def _parse_device(device: str | torch.device) -> torch.device:
    """``torch.device(device)``, or a TeacherError naming the bad device."""
    try:
        return torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise TeacherError(
            f"unknown device {device!r} ({short_reason(exc)}); use e.g. 'cpu' or 'cuda:0'"
        ) from exc


def _move(model: nn.Module, device: torch.device, spec: str) -> nn.Module:
    """``model.to(device)`` with a one-line error when the device is not usable."""
    try:
        return model.to(device)
    except (RuntimeError, AssertionError) as exc:
        raise TeacherError(
            f"cannot put teacher {spec!r} on device {str(device)!r} ({short_reason(exc)})"
        ) from exc


def _probe_num_classes(model: nn.Module, info: TeacherInfo, device: torch.device) -> int:
    """Run one zero image through ``model`` and return its number of logits."""
    size = info.input_size
    probe = torch.zeros(1, 3, size, size, device=device)
    try:
        with torch.inference_mode():
            logits = model(probe)
    except Exception as exc:
        raise TeacherError(
            f"teacher {info.spec!r} failed on a (1, 3, {size}, {size}) input "
            f"({short_reason(exc)}); check its input_size"
        ) from exc
    if not isinstance(logits, Tensor) or logits.ndim != 2 or logits.shape[0] != 1:
        got = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise TeacherError(
            f"teacher {info.spec!r} must return (batch, classes) logits, got {got} for one image"
        )
    return int(logits.shape[1])


def _check_class_names(info: TeacherInfo, num_classes: int) -> None:
    """Refuse class names whose count differs from the number of logits."""
    if info.class_names is not None and len(info.class_names) != num_classes:
        raise TeacherError(
            f"teacher {info.spec!r} gives {len(info.class_names)} class names "
            f"but has {num_classes} outputs"
        )


def _finish(resolved: Resolved, device: torch.device) -> LoadedTeacher:
    """Move to ``device`` (channels_last on CUDA), freeze, find the class count, wrap."""
    model = _move(resolved.model, device, resolved.info.spec).eval().requires_grad_(False)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    num_classes = resolved.num_classes or _probe_num_classes(model, resolved.info, device)
    _check_class_names(resolved.info, num_classes)
    return LoadedTeacher(TeacherModule([model]).eval(), resolved.info, num_classes)


def load_teacher(
    spec: str,
    weights: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
) -> LoadedTeacher:
    """Load the teacher named by ``spec`` (see :mod:`fkd.teachers` for the forms).

    ``weights`` is a local weights file used instead of the spec's pretrained weights
    (required for ``fkd:<arch>``). The module is on ``device``, in eval mode, without
    gradients. ``num_classes`` comes from the architecture where fkd builds the classifier,
    else (``<module>:<callable>``) from running one image through the model.
    """
    spec = spec.strip()
    target = _parse_device(device)
    path = None if weights is None else existing_file(weights)
    resolver, name = find_resolver(spec)
    with as_teacher_error(spec):  # a model-registry error while building
        resolved = resolver(name, spec, path)
    return _finish(resolved, target)

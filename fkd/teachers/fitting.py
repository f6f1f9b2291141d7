"""Fitting a state dict into an architecture: meta-device skeletons, class-count rebuilds.

A weights file replaces every parameter, so the architecture is first built on the meta
device (no memory, no random initialisation); when the file's classifier has another
number of classes than the architecture's default, the model is rebuilt with that number.
A file that does not fit is refused with one line naming the file and the teacher.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from fkd.exceptions import UserInputError
from fkd.teachers.errors import TeacherError

__all__ = ["Builder", "build_with_weights", "check_fits", "load_exact"]


def _mismatch(model: nn.Module, state_dict: Mapping[str, Tensor]) -> str | None:
    """Why ``state_dict`` does not fit ``model`` exactly, or None when it does."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    wrong = [
        f"{key} {tuple(state_dict[key].shape)} vs {tuple(value.shape)}"
        for key, value in expected.items()
        if key in state_dict and state_dict[key].shape != value.shape
    ]
    parts = [
        f"{len(items)} {label} (e.g. {', '.join(items[:3])})"
        for label, items in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches file vs model", wrong),
        )
        if items
    ]
    return "; ".join(parts) or None


def _infer_num_classes(model: nn.Module, state_dict: Mapping[str, Tensor]) -> int | None:
    """The class count the file's classifier implies, when only dim 0 of some tensors differs."""
    sizes = set()
    for key, value in model.state_dict().items():
        got = state_dict.get(key)
        if got is None or got.shape == value.shape:
            continue
        if got.ndim != value.ndim or got.shape[1:] != value.shape[1:]:
            return None
        sizes.add(int(got.shape[0]))
    return sizes.pop() if len(sizes) == 1 else None


def check_fits(model: nn.Module, state_dict: Mapping[str, Tensor], source: Path, spec: str) -> None:
    """A one-line error naming file and teacher when ``state_dict`` does not fit ``model``."""
    problem = _mismatch(model, state_dict)
    if problem is not None:
        raise TeacherError(
            f"weights file {os.fspath(source)!r} does not fit teacher {spec!r}: {problem}; "
            "check the file was saved from this architecture"
        )


def load_exact(model: nn.Module, state_dict: Mapping[str, Tensor], source: Path, spec: str) -> None:
    """``load_state_dict(strict=True)`` after :func:`check_fits`."""
    check_fits(model, state_dict, source, spec)
    model.load_state_dict(state_dict, strict=True)


Builder = Callable[[int | None], nn.Module]
"""``build(None)`` makes an architecture's default model, ``build(n)`` one with n classes."""


def _has_meta_tensors(model: nn.Module) -> bool:
    return any(t.is_meta for t in itertools.chain(model.parameters(), model.buffers()))


def _skeleton(build: Builder, num_classes: int | None) -> nn.Module:
    """``build(num_classes)`` on the meta device (no memory, no random init) when it allows."""
    try:
        with torch.device("meta"):
            return build(num_classes)
    except UserInputError:  # the user's mistake, not the meta device's
        raise
    except Exception:  # a constructor that computes with tensors: build it for real
        return build(num_classes)


def _fill(
    skeleton: nn.Module, build: Builder, num_classes: int | None, state: Mapping[str, Tensor]
) -> nn.Module:
    """Give ``skeleton`` the tensors of ``state`` (which fits it), in the model's dtypes."""
    if not _has_meta_tensors(skeleton):
        skeleton.load_state_dict(state, strict=True)
        return skeleton
    dtypes = {key: value.dtype for key, value in skeleton.state_dict().items()}
    skeleton.load_state_dict(
        {key: value.to(dtypes[key]) for key, value in state.items()}, strict=True, assign=True
    )
    if not _has_meta_tensors(skeleton):
        return skeleton
    model = build(num_classes)  # buffers no state dict holds (persistent=False)
    model.load_state_dict(state, strict=True)
    return model


def build_with_weights(
    build: Builder, state_dict: Mapping[str, Tensor], source: Path, spec: str
) -> tuple[nn.Module, int | None]:
    """Build a model (default classes, else the file's) holding ``state_dict``.

    Returns the model and the class count it was rebuilt with (None when the default
    fitted). The architecture is first built without initialising its weights, which the
    file replaces anyway.
    """
    model = _skeleton(build, None)
    rebuilt: int | None = None
    if _mismatch(model, state_dict) is not None:
        num_classes = _infer_num_classes(model, state_dict)
        if num_classes is not None:
            candidate = _skeleton(build, num_classes)
            if _mismatch(candidate, state_dict) is None:
                model, rebuilt = candidate, num_classes
    check_fits(model, state_dict, source, spec)
    return _fill(model, build, rebuilt, state_dict), rebuilt

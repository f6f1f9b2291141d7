"""Weights files, read without running pickled code: the one safe ``torch.load`` of fkd.

``.safetensors`` files are read with safetensors; anything else written by ``torch.save``
with ``torch.load(weights_only=True)``, which rebuilds only tensors and plain containers:
a file that needs arbitrary unpickling is refused, never executed. Teacher weights,
training checkpoints and the EfficientNet-Lite0 weights are all read here.

A state dict may be nested under ``"state_dict"`` or ``"model"`` and may carry the
``module.`` prefix of DDP (or ``_orig_mod.`` of ``torch.compile``); :func:`extract_state_dict`
finds the ``name -> tensor`` mapping inside.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from fkd.exceptions import UserInputError, short_reason

__all__ = [
    "WeightsFileError",
    "extract_state_dict",
    "load_state_dict_file",
    "load_weights_only",
    "read_weights_file",
]

_NESTED_STATE_DICT_KEYS = ("state_dict", "model")
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


class WeightsFileError(UserInputError):
    """A weights or checkpoint file that cannot be read safely; ``reason`` says why in a line."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def load_weights_only(path: str | os.PathLike[str], allowed: Sequence[Any] = ()) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``: tensors and plain containers.

    ``allowed`` adds reconstruction functions to the allowlist for this one load (the
    legacy FKD files need numpy's), leaving torch's global allowlist as it was.  Any
    failure (a pickled object, a corrupt or unreadable file) is a
    :class:`WeightsFileError` naming the file.
    """
    try:
        with torch.serialization.safe_globals(list(allowed)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = short_reason(exc)
        raise WeightsFileError(
            f"refusing to load weights file {os.fspath(path)!r}: it is not a plain tensor "
            f"checkpoint ({reason}); re-save it with "
            "torch.save(model.state_dict(), path) or as .safetensors",
            reason,
        ) from exc


def _read_safetensors(path: Path) -> dict[str, Tensor]:
    """Read a ``.safetensors`` file, naming the file when it is not one."""
    from safetensors.torch import load_file

    try:
        return load_file(os.fspath(path), device="cpu")
    except Exception as exc:
        reason = short_reason(exc)
        raise WeightsFileError(
            f"weights file {os.fspath(path)!r} is not a valid .safetensors file ({reason})",
            reason,
        ) from exc


def read_weights_file(path: str | os.PathLike[str]) -> Any:
    """Read a weights file: ``.safetensors`` with safetensors, anything else weights-only."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    return load_weights_only(path)


def _unwrap_nested(obj: Any) -> Any:
    """Follow ``"state_dict"`` / ``"model"`` keys down to the innermost mapping."""
    while isinstance(obj, Mapping):
        nested = next(
            (obj[key] for key in _NESTED_STATE_DICT_KEYS if isinstance(obj.get(key), Mapping)),
            None,
        )
        if nested is None:
            return obj
        obj = nested
    return obj


def _strip_wrapper_prefixes(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Drop a ``module.`` (DDP) or ``_orig_mod.`` (torch.compile) prefix shared by all keys."""
    stripped = True
    while stripped and state_dict:
        stripped = False
        for prefix in _WRAPPER_PREFIXES:
            if all(key.startswith(prefix) for key in state_dict):
                state_dict = {key[len(prefix) :]: value for key, value in state_dict.items()}
                stripped = True
    return state_dict


def extract_state_dict(obj: Any, source: str | os.PathLike[str]) -> dict[str, Tensor]:
    """The ``name -> tensor`` state dict inside a loaded checkpoint ``obj``.

    Accepts a bare state dict or one nested under ``"state_dict"`` or ``"model"``; strips a
    ``module.`` prefix. ``source`` names the file in errors.
    """
    inner = _unwrap_nested(obj)
    if not isinstance(inner, Mapping) or not inner:
        reason = f"it holds no state dict (got {type(inner).__name__})"
        raise WeightsFileError(
            f"weights file {os.fspath(source)!r} holds no state dict (got "
            f"{type(inner).__name__}); save model.state_dict() instead",
            reason,
        )
    bad = [str(key) for key, value in inner.items() if not isinstance(value, Tensor)]
    if bad or not all(isinstance(key, str) for key in inner):
        reason = f"non-tensor entries: {', '.join(bad[:5])}"
        raise WeightsFileError(
            f"weights file {os.fspath(source)!r} is not a state dict of name -> tensor "
            f"({reason}); save model.state_dict() instead",
            reason,
        )
    return _strip_wrapper_prefixes(dict(inner))


def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Read ``path`` safely and return the state dict inside it."""
    return extract_state_dict(read_weights_file(path), path)

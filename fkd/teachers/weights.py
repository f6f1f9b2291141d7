"""Teacher weights files: found, read without running pickled code, and hashed.

The reading itself is :mod:`fkd.weights` (safetensors, or ``torch.load(weights_only=True)``);
here its errors become :class:`TeacherError`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import Tensor

from fkd import weights as safe
from fkd.hashing import sha256_file
from fkd.teachers.errors import TeacherError, as_teacher_error

__all__ = [
    "existing_file",
    "extract_state_dict",
    "load_state_dict_file",
    "read_weights_file",
    "sha256_file",
    "sha_if_file",
]


def existing_file(weights: str | os.PathLike[str]) -> Path:
    """``weights`` as a Path, or a TeacherError when it is not a readable file."""
    path = Path(weights).expanduser()
    if not path.is_file():
        raise TeacherError(f"weights file {os.fspath(path)!r} does not exist or is not a file")
    return path


def read_weights_file(path: str | os.PathLike[str]) -> Any:
    """Read a weights file without unpickling code.

    ``.safetensors`` files are read with ``safetensors.torch.load_file``; anything else with
    ``torch.load(weights_only=True)``, which only rebuilds tensors and plain containers.
    """
    source = existing_file(path)
    with as_teacher_error():
        return safe.read_weights_file(source)


def extract_state_dict(obj: Any, source: str | os.PathLike[str]) -> dict[str, Tensor]:
    """The ``name -> tensor`` state dict inside a loaded checkpoint ``obj``.

    Accepts a bare state dict or one nested under ``"state_dict"`` or ``"model"``; strips a
    ``module.`` prefix. ``source`` names the file in errors.
    """
    with as_teacher_error():
        return safe.extract_state_dict(obj, source)


def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Read ``path`` safely and return the state dict inside it."""
    return extract_state_dict(read_weights_file(path), path)


def sha_if_file(path: Path | None) -> str | None:
    """sha256 of ``path`` when it names an existing file."""
    return sha256_file(path) if path is not None and path.is_file() else None

"""Devices: which one ``--device`` names, and mixed precision on it.

``resolve_device`` turns ``auto``/``cpu``/``cuda``/``cuda:N`` into a ``torch.device``
(``auto``: CUDA when present); ``amp_dtype`` picks the autocast dtype of an ``--amp``
mode; ``autocast`` enters it (a no-op context where the dtype is None).  Generation,
training, evaluation and planning all use these.
"""

from __future__ import annotations

from typing import Any

import torch

from fkd.exceptions import OptionError, UserInputError

AMP_MODES = ("auto", "bf16", "fp16", "off")


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise OptionError("--device", f"{name!r}: use auto, cpu, cuda or cuda:N") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserInputError(f"--device {name}: CUDA is not available here; use --device cpu")
    return device


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: bf16/fp16 on CUDA (``auto``: bf16 where supported), none on CPU."""
    if device.type != "cuda" or mode == "off":
        return None
    if mode == "fp16":
        return torch.float16
    if mode == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def autocast(device: torch.device, dtype: torch.dtype | None) -> Any:
    """``torch.autocast`` with ``dtype`` on ``device``; disabled when ``dtype`` is None."""
    if dtype is None:
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=dtype)


def device_autocast(device: torch.device) -> Any:
    """Inference autocast: the ``auto`` AMP dtype of ``device`` (bf16 where supported)."""
    return autocast(device, amp_dtype("auto", device))

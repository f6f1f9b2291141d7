"""The loaded teacher: a module whose ``forward(x, temperature)`` gives class probabilities.

Every loaded teacher, single or ensemble, is a :class:`TeacherModule`; an ensemble
averages the members' softmax probabilities (as MEAL V2 does). :class:`LoadedTeacher`
holds it with its :class:`~fkd.storage_formats.spec.TeacherInfo` and class count.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fkd.storage_formats.spec import TeacherInfo
from fkd.teachers.errors import TeacherError

__all__ = ["Ensemble", "LoadedTeacher", "TeacherModule", "preprocess_constants"]


def preprocess_constants(
    info: TeacherInfo, device: str | torch.device | None = None, dtype: torch.dtype = torch.float32
) -> tuple[Tensor, Tensor]:
    """The teacher's ``(mean, std)`` as ``(1, 3, 1, 1)`` tensors, for ``(x - mean) / std``."""
    mean = torch.tensor(info.mean, device=device, dtype=dtype).view(1, 3, 1, 1)
    std = torch.tensor(info.std, device=device, dtype=dtype).view(1, 3, 1, 1)
    return mean, std


def _check_temperature(temperature: float) -> None:
    """Refuse a temperature that is not a positive finite number."""
    if not (isinstance(temperature, int | float) and 0 < temperature < math.inf):
        raise TeacherError(f"temperature must be a positive finite number, got {temperature!r}")


def _member_logits(member: nn.Module, x: Tensor) -> Tensor:
    """``member(x)``, checked to be ``(B, C)`` logits."""
    logits = member(x)
    if not isinstance(logits, Tensor) or logits.ndim != 2:
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise TeacherError(f"a teacher must return (batch, classes) logits, got {shape}")
    return logits


class TeacherModule(nn.Module):
    """One teacher or an ensemble: ``forward(x, temperature)`` gives class probabilities.

    ``x`` is a normalised ``(B, 3, S, S)`` batch. The result is ``(B, C)`` float32: the
    softmax of ``logits / temperature`` for one member, the mean of the members' softmaxes
    for several.
    """

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise TeacherError("a teacher module needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, x: Tensor, temperature: float = 1.0) -> Tensor:
        """Average over members of ``softmax(member(x) / temperature)``, in float32."""
        _check_temperature(temperature)
        total: Tensor | None = None
        for member in self.members:
            probs = F.softmax(_member_logits(member, x).float() / temperature, dim=-1)
            total = probs if total is None else total + probs
        assert total is not None
        return total / len(self.members)


Ensemble = TeacherModule
"""An ensemble is a TeacherModule with several members."""


@dataclass(frozen=True)
class LoadedTeacher:
    """A teacher ready to label crops: its module (eval mode, no grad), info and class count."""

    module: TeacherModule
    info: TeacherInfo
    num_classes: int

    def probabilities(self, x: Tensor, temperature: float = 1.0) -> Tensor:
        """``(B, num_classes)`` float32 probabilities for the normalised batch ``x``."""
        with torch.inference_mode():
            probs: Tensor = self.module(x, temperature)
        return probs

"""What the student learns from at each step: stored soft labels, a live teacher, hard labels.

- a store (``labels``): the stored labels of the step's crops, **rebuilt as dense
  distributions on the device** by ``fkd.label_codecs_torch.decode_torch``, re-tempered
  from the store's temperature when ``temperature`` differs from it;
- ``online_teacher``: a live teacher labels the very crops the student sees (normalised
  with the teacher's mean/std, resized to its input size): classical online KD with the
  same crop budget and schedule;
- neither (or after ``kd_stop_epoch``, or mixed in by ``alpha``): hard labels,
  cross-entropy with ``label_smoothing``.

Targets are ``softmax(teacher / T)``; ``kl`` and ``dist`` also divide the student's
logits by T (see ``fkd.losses``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from fkd import crops as crop_ops
from fkd.devices import autocast
from fkd.losses import retemper, with_hard_labels
from fkd.storage_formats import CodecSpec
from fkd.train.config import TrainConfig


@dataclass(frozen=True)
class SoftTargets:
    """The soft targets of a step's crops, at ``temperature``: a live ``teacher``'s, else
    the store's labels (``codec``, stored at ``store_temperature``)."""

    device: torch.device
    amp_dtype: torch.dtype | None
    temperature: float
    codec: CodecSpec | None = None
    store_temperature: float = 1.0
    teacher: Any = None

    def __call__(self, batch: Mapping[str, Any], images: Tensor, keep: Tensor | None) -> Tensor:
        """Targets ``[B, C]`` for ``images`` (the kept crops of ``batch``, on the device)."""
        if self.teacher is not None:
            return self.from_teacher(images)
        return self.from_store(batch, keep)

    def from_teacher(self, images: Tensor) -> Tensor:
        """The live teacher's ``softmax(z / T)`` for the crops (0..255 pixels)."""
        info = self.teacher.info
        x = images
        if x.shape[-1] != info.input_size:
            x = F.interpolate(
                x,
                size=(info.input_size, info.input_size),
                mode="bilinear",
                antialias=True,
                align_corners=False,
            )
        x = crop_ops.normalise(x, info.mean, info.std)
        with torch.inference_mode(), autocast(self.device, self.amp_dtype):
            probs = self.teacher.probabilities(x, self.temperature)
        return probs.float().clone()

    def from_store(self, batch: Mapping[str, Any], keep: Tensor | None) -> Tensor:
        """The stored labels of the kept crops, dense on the device (``decode_torch``)."""
        from fkd.label_codecs_torch import decode_torch

        assert self.codec is not None
        labels = batch["labels"]
        if keep is not None:
            labels = {name: value[keep] for name, value in labels.items()}
        soft = decode_torch(labels, self.codec, self.device)
        if self.temperature != self.store_temperature:
            soft = retemper(soft, self.store_temperature, self.temperature).float()
        return soft


def hard_loss(logits: Tensor, hard: Tensor, label_smoothing: float) -> Tensor:
    """Cross-entropy on hard (or mixed one-hot) targets alone."""
    return with_hard_labels(logits.new_zeros(()).float(), logits, hard, 1.0, label_smoothing)


def load_online_teacher(config: TrainConfig, device: torch.device) -> Any:
    """The live teacher(s) of ``--online-teacher`` on ``device``; None without one."""
    if not config.online_teacher:
        return None
    from fkd.teachers import load_teachers

    weights: list[str | None] = list(config.online_teacher_weights) or [None] * len(
        config.online_teacher
    )
    return load_teachers(config.online_teacher, weights, device)

"""Batch-level Mixup and CutMix that mix images and dense soft labels alike.

Sampling and applying are separate: :func:`sample_mix` draws a
:class:`MixParams` (what to do) from an explicit ``torch.Generator``, and
:func:`apply_mix` does it to ``images [B, C, H, W]`` and ``targets [B, K]``.
:func:`mix_targets` applies the same params to any other label tensor (for
instance one-hot hard labels for the hard-label loss term).

Both mix each sample ``i`` with sample ``permutation[i]`` of the same batch:

- Mixup: ``x = λ·x + (1 − λ)·x[perm]`` and ``t = λ·t + (1 − λ)·t[perm]``.
- CutMix: a box of ``x[perm]`` is pasted into ``x``; the box has area fraction
  about ``1 − λ``, a uniformly drawn centre, and is clipped to the image, so λ
  is then corrected to the exact kept area, ``λ = 1 − box_h·box_w / (H·W)``,
  and ``t = λ·t + (1 − λ)·t[perm]``.

Mixed targets stay convex combinations of rows that sum to 1, so they sum to 1.

Randomness comes only from the ``generator`` argument, never torch's or
numpy's global state.  Every call draws the same things in the same order
(apply?, CutMix-or-Mixup?, a seed for λ, the box centre, the permutation)
whatever the outcome, so a generator's stream advances identically each call.
λ ~ Beta(α, α) is drawn by numpy (``np.random.default_rng(seed).beta``), seeded
with a 63-bit integer drawn from the torch generator: torch's own Beta
sampler takes no generator, and numpy's handles small α robustly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from fkd import config_dicts

MIX_KINDS = ("none", "mixup", "cutmix")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass(frozen=True)
class MixConfig:
    """How batches are mixed.

    ``mixup_alpha`` / ``cutmix_alpha`` are the Beta(α, α) concentrations (0
    turns that kind off); ``prob`` is the chance a batch is mixed at all;
    ``switch_prob`` is the chance of CutMix rather than Mixup when both are on.
    """

    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    prob: float = 1.0
    switch_prob: float = 0.5

    def __post_init__(self) -> None:
        for name in ("mixup_alpha", "cutmix_alpha", "prob", "switch_prob"):
            object.__setattr__(self, name, float(getattr(self, name)))
        for name in ("mixup_alpha", "cutmix_alpha"):
            value = getattr(self, name)
            _require(
                math.isfinite(value) and value >= 0,
                f"{name} must be a finite number >= 0, got {value!r}",
            )
        for name in ("prob", "switch_prob"):
            value = getattr(self, name)
            _require(0 <= value <= 1, f"{name} must lie in [0, 1], got {value!r}")

    @property
    def enabled(self) -> bool:
        return self.prob > 0 and (self.mixup_alpha > 0 or self.cutmix_alpha > 0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MixConfig:
        return config_dicts.from_dict(cls, data)


@dataclass(frozen=True, eq=False)
class MixParams:
    """One sampled mix: ``kind``, weight ``lam`` of each sample's own content,
    the CutMix ``box`` (top, left, height, width) in pixels (``None`` otherwise)
    and the partner ``permutation`` (LongTensor ``[B]``; identity for ``none``).
    """

    kind: str
    lam: float
    box: tuple[int, int, int, int] | None
    permutation: torch.Tensor

    def __post_init__(self) -> None:
        _require(
            self.kind in MIX_KINDS, f"kind must be one of {list(MIX_KINDS)}, got {self.kind!r}"
        )
        _require(0 <= self.lam <= 1, f"lam must lie in [0, 1], got {self.lam!r}")
        _require(
            (self.box is not None) == (self.kind == "cutmix"),
            f"a box is needed for cutmix and only for cutmix (kind={self.kind!r}, box={self.box})",
        )
        _require(
            self.permutation.dim() == 1 and self.permutation.dtype == torch.long,
            "permutation must be a 1-D LongTensor",
        )

    @property
    def batch_size(self) -> int:
        return int(self.permutation.numel())


def no_mix(batch_size: int, device: torch.device | str = "cpu") -> MixParams:
    """Params that leave a batch unchanged."""
    return MixParams("none", 1.0, None, torch.arange(batch_size, device=device))


def draw_seed(generator: torch.Generator) -> int:
    """A 63-bit integer drawn from ``generator`` (seeds the numpy Beta draw)."""
    return int(torch.randint(0, 2**63 - 1, (1,), generator=generator, device=generator.device))


def beta_from_seed(alpha: float, seed: int) -> float:
    """λ ~ Beta(α, α), a deterministic function of ``seed`` (numpy's PCG64 + beta)."""
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def sample_beta(alpha: float, generator: torch.Generator) -> float:
    """λ ~ Beta(α, α) by numpy, seeded with a 63-bit draw from ``generator``."""
    return beta_from_seed(alpha, draw_seed(generator))


def cutmix_box(
    lam: float, height: int, width: int, centre_y: int, centre_x: int
) -> tuple[int, int, int, int]:
    """A box of area fraction about ``1 − lam`` centred at (centre_y, centre_x), clipped.

    Sides are ``round(H·√(1 − lam))`` and ``round(W·√(1 − lam))``; returns
    (top, left, height, width) within the image (possibly empty).
    """
    side = math.sqrt(1.0 - lam)
    top, bottom = _clipped_span(centre_y, round(height * side), height)
    left, right = _clipped_span(centre_x, round(width * side), width)
    return top, left, bottom - top, right - left


def _clipped_span(centre: int, length: int, size: int) -> tuple[int, int]:
    start = centre - length // 2
    return min(max(start, 0), size), min(max(start + length, 0), size)


def sample_mix(
    config: MixConfig, batch_size: int, height: int, width: int, generator: torch.Generator
) -> MixParams:
    """Draw one batch's mix from ``generator`` (see the module docstring for the order)."""
    _require(
        isinstance(generator, torch.Generator),
        f"generator must be a torch.Generator, got {type(generator).__name__}",
    )
    _require(batch_size >= 1, f"batch_size must be >= 1, got {batch_size}")
    _require(height >= 1 and width >= 1, f"image size must be >= 1, got {height}x{width}")
    device = generator.device
    apply_u, switch_u = torch.rand(2, generator=generator, dtype=torch.float64, device=device)
    use_cutmix = _choose_cutmix(config, float(switch_u))
    alpha = config.cutmix_alpha if use_cutmix else config.mixup_alpha
    seed = draw_seed(generator)
    lam = beta_from_seed(alpha, seed) if alpha > 0 else 1.0
    centre_y = int(torch.randint(height, (1,), generator=generator, device=device))
    centre_x = int(torch.randint(width, (1,), generator=generator, device=device))
    permutation = torch.randperm(batch_size, generator=generator, device=device)
    if not (config.enabled and float(apply_u) < config.prob):
        return no_mix(batch_size, device)
    if not use_cutmix:
        return MixParams("mixup", lam, None, permutation)
    box = cutmix_box(lam, height, width, centre_y, centre_x)
    exact_lam = 1.0 - box[2] * box[3] / (height * width)
    return MixParams("cutmix", exact_lam, box, permutation)


def _choose_cutmix(config: MixConfig, switch_u: float) -> bool:
    """CutMix when it alone is on, or when both are and ``switch_u < switch_prob``."""
    if config.cutmix_alpha > 0 and config.mixup_alpha > 0:
        return switch_u < config.switch_prob
    return config.cutmix_alpha > 0


def mix_targets(targets: torch.Tensor, params: MixParams) -> torch.Tensor:
    """``λ·t + (1 − λ)·t[perm]`` along the batch dim (``t`` unchanged for ``none``)."""
    _require(
        targets.dim() >= 1 and targets.shape[0] == params.batch_size,
        f"targets must have batch size {params.batch_size}, got shape {tuple(targets.shape)}",
    )
    _require(targets.is_floating_point(), f"targets must be floating point, got {targets.dtype}")
    if params.kind == "none":
        return targets
    partner = targets[params.permutation.to(targets.device)]
    return params.lam * targets + (1.0 - params.lam) * partner


def mix_images(images: torch.Tensor, params: MixParams) -> torch.Tensor:
    """Mixup blends whole images; CutMix pastes the partner's box (a new tensor)."""
    _require(
        images.dim() == 4 and images.shape[0] == params.batch_size,
        f"images must be [B={params.batch_size}, C, H, W], got {tuple(images.shape)}",
    )
    if params.kind == "none":
        return images
    permutation = params.permutation.to(images.device)
    if params.kind == "mixup":
        _require(
            images.is_floating_point(), f"mixup needs floating-point images, got {images.dtype}"
        )
        return params.lam * images + (1.0 - params.lam) * images[permutation]
    assert params.box is not None
    top, left, box_h, box_w = params.box
    height, width = images.shape[-2:]
    _require(
        top + box_h <= height and left + box_w <= width,
        f"cutmix box {params.box} does not fit images of size {height}x{width}",
    )
    mixed = images.clone()
    rows, cols = slice(top, top + box_h), slice(left, left + box_w)
    mixed[:, :, rows, cols] = images[permutation][:, :, rows, cols]
    return mixed


def apply_mix(
    images: torch.Tensor, targets: torch.Tensor, params: MixParams
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix ``images [B, C, H, W]`` and ``targets [B, K]`` the same way."""
    _require(targets.dim() == 2, f"targets must be [B, K], got {tuple(targets.shape)}")
    return mix_images(images, params), mix_targets(targets, params)


def mix_batch(
    images: torch.Tensor, targets: torch.Tensor, config: MixConfig, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample a mix for this batch from ``generator`` and apply it."""
    _require(images.dim() == 4, f"images must be [B, C, H, W], got {tuple(images.shape)}")
    batch_size, _, height, width = images.shape
    params = sample_mix(config, batch_size, height, width, generator)
    return apply_mix(images, targets, params)

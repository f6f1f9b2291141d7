"""Counter-based RandomResizedCrop sampler ``fkd-rrc-v1``, and the 16-bit box grid.

Boxes are a pure function of (seed, image index, crop index, image height,
image width): they never depend on worker count, batch size or resume point,
and a store need not keep them at all.  Sampling (this module) is separate from
applying a box to pixels (``fkd.crops``).

The sampler uses only integer arithmetic and IEEE-754 operations that are
correctly rounded everywhere (+, -, *, /, sqrt, round-half-even, floor, frexp,
ldexp), so another language reproduces it bit for bit; ``docs/format.md``
specifies it step by step.  ``exp`` and ``log`` are computed by the fixed series
below instead of the platform's libm, whose last bit differs across machines.

It follows torchvision's ``RandomResizedCrop.get_params``: up to ten attempts,
each drawing a target area uniform in ``scale`` times the image area and an
aspect ratio log-uniform in ``ratio``; the first box that fits is kept, and
otherwise a centre crop clamped to the ratio range is used.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from fkd.storage_formats.spec import CropSpec

SAMPLER_NAME = "fkd-rrc-v1"
ATTEMPTS = 10
DRAWS_PER_ATTEMPT = 4
FLIP_DRAW = ATTEMPTS * DRAWS_PER_ATTEMPT  # draw 40
GRID = 65_535  # stored boxes: fractions on a 1/65535 grid

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_LN2 = 0.6931471805599453  # the float64 nearest ln(2)
_EXP_TERMS = 20
_LOG_TERMS = 12


def mix64(z: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """The SplitMix64 finaliser (wrapping uint64 arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def draw_u64(seed: int, image: Any, crop: Any, draw: Any) -> NDArray[np.uint64]:
    """64 random bits for each (image, crop, draw), broadcast together.

    h = mix64(seed + G); then h = mix64((h XOR x) + G) for x = image, crop, draw.
    """
    with np.errstate(over="ignore"):
        h = mix64(np.asarray(seed, dtype=np.uint64) + _GAMMA)
        for counter in (image, crop, draw):
            h = mix64((h ^ np.asarray(counter, dtype=np.uint64)) + _GAMMA)
    return h


def draw_uniform(seed: int, image: Any, crop: Any, draw: Any) -> NDArray[np.float64]:
    """Uniform doubles in [0, 1): the top 53 bits of ``draw_u64`` times 2**-53."""
    bits = draw_u64(seed, image, crop, draw) >> np.uint64(11)
    return bits.astype(np.float64) * 2.0**-53


def exp_v1(x: NDArray[np.float64]) -> NDArray[np.float64]:
    """exp(x) by range reduction to |r| <= ln2/2 and a 20-term Horner series."""
    n = np.rint(x / _LN2)
    r = x - n * _LN2
    acc = np.ones_like(r)
    for i in range(_EXP_TERMS, 0, -1):
        acc = 1.0 + acc * r / float(i)
    return np.ldexp(acc, n.astype(np.int32))


def log_v1(x: NDArray[np.float64] | float) -> NDArray[np.float64]:
    """log(x) for x > 0: x = m 2**e with m in [sqrt(1/2), sqrt(2)), then an atanh series."""
    mantissa, exponent = np.frexp(np.asarray(x, dtype=np.float64))
    low = mantissa < 0.7071067811865476
    mantissa = np.where(low, mantissa * 2.0, mantissa)
    exponent = np.where(low, exponent - 1, exponent)
    y = (mantissa - 1.0) / (mantissa + 1.0)
    y2 = y * y
    acc = np.full_like(y, 1.0 / (2 * _LOG_TERMS + 1))
    for j in range(_LOG_TERMS - 1, -1, -1):
        acc = 1.0 / (2 * j + 1) + y2 * acc
    return exponent.astype(np.float64) * _LN2 + 2.0 * (y * acc)


def sample_boxes(
    spec: CropSpec,
    image_index: NDArray[Any],
    height: NDArray[Any],
    width: NDArray[Any],
    crops: NDArray[Any] | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    """Pixel boxes ``[n, M, 4]`` as (top, left, height, width) and flips ``[n, M]``.

    ``image_index``, ``height`` and ``width`` have shape ``[n]``.  An image with
    a zero height or width (one that failed to decode) gets all-zero boxes.
    ``crops`` (``[k]`` or ``[n, k]`` crop numbers in ``0..M-1``) samples only those
    crops, ``[n, k, 4]``: the same boxes as the full draw (every crop is keyed by its
    number), at the cost of k crops rather than M.
    """
    image = np.asarray(image_index, dtype=np.uint64)[:, None, None]
    H = np.asarray(height, dtype=np.float64)[:, None]
    W = np.asarray(width, dtype=np.float64)[:, None]
    if crops is None:
        crops = np.arange(spec.crops_per_image, dtype=np.uint64)[None, :, None]
    else:
        chosen = np.asarray(crops, dtype=np.int64)
        if chosen.size and (chosen.min() < 0 or chosen.max() >= spec.crops_per_image):
            raise ValueError(f"crop numbers must lie in [0, {spec.crops_per_image})")
        crops = np.atleast_2d(chosen).astype(np.uint64)[..., None]
    draws = np.arange(FLIP_DRAW + 1, dtype=np.uint64)[None, None, :]
    u = draw_uniform(spec.seed, image, crops, draws)  # [n, M, 41]

    h, w, found = _attempt_sizes(spec, u, H, W)
    top = np.floor(_pick(u[..., 2:FLIP_DRAW:4], found) * (H - h + 1.0))
    left = np.floor(_pick(u[..., 3:FLIP_DRAW:4], found) * (W - w + 1.0))
    h, w, top, left = _fallback_where_missing(spec, found >= 0, H, W, h, w, top, left)

    boxes = np.stack([top, left, h, w], axis=-1).astype(np.int64)
    boxes[((H <= 0) | (W <= 0))[:, 0]] = 0
    flips = u[..., FLIP_DRAW] < spec.flip_prob
    return boxes, flips


def _attempt_sizes(
    spec: CropSpec, u: NDArray[np.float64], H: NDArray[np.float64], W: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.intp]]:
    """Heights and widths of the first fitting attempt, and its number (-1 if none fits)."""
    area = (H * W)[..., None]
    s0, s1 = spec.scale
    lr0, lr1 = log_v1(spec.ratio[0]), log_v1(spec.ratio[1])
    target_area = area * (s0 + (s1 - s0) * u[..., 0:FLIP_DRAW:4])
    aspect = exp_v1(lr0 + (lr1 - lr0) * u[..., 1:FLIP_DRAW:4])
    w = np.rint(np.sqrt(target_area * aspect))
    h = np.rint(np.sqrt(target_area / aspect))
    fits = (w > 0) & (w <= W[..., None]) & (h > 0) & (h <= H[..., None])
    found = np.where(fits.any(axis=-1), np.argmax(fits, axis=-1), -1)
    return _pick(h, found), _pick(w, found), found


def _pick(values: NDArray[Any], attempt: NDArray[np.intp]) -> NDArray[Any]:
    """values[..., attempt] per crop (attempt -1 picks attempt 0; masked later)."""
    index = np.maximum(attempt, 0)[..., None]
    return np.take_along_axis(values, index, axis=-1)[..., 0]


def _fallback_where_missing(
    spec: CropSpec,
    found: NDArray[np.bool_],
    H: NDArray[np.float64],
    W: NDArray[np.float64],
    h: NDArray[np.float64],
    w: NDArray[np.float64],
    top: NDArray[np.float64],
    left: NDArray[np.float64],
) -> tuple[NDArray[np.float64], ...]:
    """torchvision's fallback: a centre crop, clamped to the ratio range."""
    r_min, r_max = min(spec.ratio), max(spec.ratio)
    with np.errstate(divide="ignore", invalid="ignore"):
        in_ratio = W / H
    too_tall = in_ratio < r_min
    too_wide = in_ratio > r_max
    fb_w = np.where(too_tall, W, np.where(too_wide, np.rint(H * r_max), W))
    fb_h = np.where(too_tall, np.rint(W / r_min), H)
    fb_w, fb_h = np.broadcast_to(fb_w, h.shape), np.broadcast_to(fb_h, h.shape)
    fb_top = np.floor((H - fb_h) / 2.0)
    fb_left = np.floor((W - fb_w) / 2.0)
    return (
        np.where(found, h, fb_h),
        np.where(found, w, fb_w),
        np.where(found, top, fb_top),
        np.where(found, left, fb_left),
    )


def boxes_to_fractions(
    boxes: NDArray[Any], height: NDArray[Any], width: NDArray[Any]
) -> NDArray[np.float64]:
    """Pixel boxes ``[n, M, 4]`` to fractions of the image height and width."""
    H = np.asarray(height, dtype=np.float64)[:, None]
    W = np.asarray(width, dtype=np.float64)[:, None]
    scale = np.stack([H, W, H, W], axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        fractions = np.where(scale > 0, boxes / scale, 0.0)
    return fractions.astype(np.float64)


def fractions_to_grid(fractions: NDArray[Any]) -> NDArray[np.uint16]:
    """Fractions in [0, 1] to the stored 16-bit grid: round(f * 65535)."""
    clipped = np.clip(np.asarray(fractions, dtype=np.float64), 0.0, 1.0)
    return np.rint(clipped * GRID).astype(np.uint16)


def grid_to_fractions(grid: NDArray[Any]) -> NDArray[np.float64]:
    return np.asarray(grid, dtype=np.float64) / GRID

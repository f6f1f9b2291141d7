"""The counter-based RandomResizedCrop sampler fkd-rrc-v1."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision.transforms import RandomResizedCrop

from fkd.storage_formats import CropSpec, sample_boxes
from fkd.storage_formats.crop_sampler import (
    boxes_to_fractions,
    draw_u64,
    exp_v1,
    fractions_to_grid,
    grid_to_fractions,
    log_v1,
)


def boxes_for(spec: CropSpec, height: int, width: int, image: int = 0):
    boxes, flips = sample_boxes(spec, np.array([image]), np.array([height]), np.array([width]))
    return boxes[0], flips[0]


@settings(max_examples=200, deadline=None)
@given(
    height=st.integers(1, 5000),
    width=st.integers(1, 5000),
    seed=st.integers(0, 2**64 - 1),
    image=st.integers(0, 2**31 - 1),
    scale_low=st.floats(0.01, 1.0),
    ratio_high=st.floats(1.0, 4.0),
)
def test_boxes_lie_inside_the_image_with_area_and_aspect_in_range(
    height, width, seed, image, scale_low, ratio_high
) -> None:
    spec = CropSpec(
        crops_per_image=16, scale=(scale_low, 1.0), ratio=(1 / ratio_high, ratio_high), seed=seed
    )
    boxes, flips = boxes_for(spec, height, width, image)
    top, left, h, w = boxes.T
    assert (h >= 1).all() and (w >= 1).all()
    assert (top >= 0).all() and (left >= 0).all()
    assert (top + h <= height).all() and (left + w <= width).all()
    assert flips.dtype == bool
    # Boxes from a fitting attempt respect scale and ratio up to rounding to whole pixels.
    area = h * w / (height * width)
    aspect = w / h
    rounding = (h + 1) * (w + 1) / (height * width)
    fitted = (area >= scale_low - rounding) & (aspect >= 1 / ratio_high * (1 - 2 / h) - 1e-9)
    fallback = (h == height) | (w == width)
    assert (fitted | fallback).all()


def test_a_subset_of_crops_samples_the_same_boxes_as_the_full_draw() -> None:
    spec = CropSpec(crops_per_image=64, seed=3)
    heights, widths = np.array([300, 480]), np.array([400, 640])
    full, full_flips = sample_boxes(spec, np.array([4, 9]), heights, widths)
    chosen = np.array([[63, 0, 17], [5, 5, 40]])
    some, some_flips = sample_boxes(spec, np.array([4, 9]), heights, widths, chosen)
    np.testing.assert_array_equal(some, np.take_along_axis(full, chosen[..., None], axis=1))
    np.testing.assert_array_equal(some_flips, np.take_along_axis(full_flips, chosen, axis=1))
    one_list, _ = sample_boxes(spec, np.array([4]), heights[:1], widths[:1], np.array([2, 1]))
    np.testing.assert_array_equal(one_list[0], full[0, [2, 1]])
    with pytest.raises(ValueError, match="crop numbers"):
        sample_boxes(spec, np.array([4]), heights[:1], widths[:1], np.array([64]))


def test_boxes_depend_on_seed_image_and_crop_only() -> None:
    spec = CropSpec(crops_per_image=50, seed=11)
    heights, widths = np.array([300, 480, 333]), np.array([400, 640, 500])
    together, flips_together = sample_boxes(spec, np.array([5, 6, 7]), heights, widths)
    for row, image in enumerate([5, 6, 7]):
        alone, flips_alone = boxes_for(spec, heights[row], widths[row], image)
        np.testing.assert_array_equal(alone, together[row])
        np.testing.assert_array_equal(flips_alone, flips_together[row])
    fewer = CropSpec(crops_per_image=20, seed=11)
    np.testing.assert_array_equal(boxes_for(fewer, 300, 400, 5)[0], together[0, :20])
    other_seed = CropSpec(crops_per_image=50, seed=12)
    assert not np.array_equal(boxes_for(other_seed, 300, 400, 5)[0], together[0])


def test_sampler_output_is_pinned() -> None:
    """fkd-rrc-v1 is part of the store format: these values must never change."""
    assert int(draw_u64(0, 0, 0, 0)) == 0x2130748AAAC80268
    spec = CropSpec(crops_per_image=6, seed=123)
    boxes, flips = boxes_for(spec, 375, 500, image=42)
    assert boxes.tolist() == PINNED_BOXES
    assert flips.tolist() == PINNED_FLIPS


PINNED_BOXES = [
    [72, 240, 288, 255],
    [106, 253, 220, 245],
    [51, 184, 322, 303],
    [93, 45, 253, 266],
    [0, 81, 318, 283],
    [68, 102, 123, 127],
]
PINNED_FLIPS = [False, False, False, True, True, False]


def test_distribution_matches_torchvision() -> None:
    spec = CropSpec(crops_per_image=20_000, seed=3)
    boxes, flips = boxes_for(spec, 375, 500)
    torch.manual_seed(0)
    reference = np.array(
        [
            RandomResizedCrop.get_params(torch.empty(3, 375, 500), [0.08, 1.0], [3 / 4, 4 / 3])
            for _ in range(20_000)
        ]
    )
    for column in range(4):
        ours, theirs = boxes[:, column], reference[:, column]
        assert abs(ours.mean() - theirs.mean()) < 0.03 * theirs.std() + 1.0
        assert abs(ours.std() - theirs.std()) < 0.03 * theirs.std() + 1.0
    assert abs(flips.mean() - 0.5) < 0.02


def test_fallback_is_torchvisions_centre_crop() -> None:
    # A 1 x 1000 image never fits a 3/4..4/3 box: the fallback clamps the ratio.
    spec = CropSpec(crops_per_image=4)
    boxes, _ = boxes_for(spec, 1, 1000)
    np.testing.assert_array_equal(boxes, [[0, 499, 1, 1]] * 4)


def test_exp_and_log_series_match_libm() -> None:
    x = np.linspace(-3, 3, 100_001)
    np.testing.assert_allclose(exp_v1(x), np.exp(x), rtol=4e-16)
    y = np.geomspace(1e-3, 1e3, 100_001)
    np.testing.assert_allclose(log_v1(y), np.log(y), rtol=0, atol=1e-15)
    assert float(log_v1(1.0)) == 0.0 and math.isclose(float(log_v1(4 / 3)), math.log(4 / 3))


def test_grid_boxes_replay_within_a_quarter_pixel_at_4096() -> None:
    rng = np.random.default_rng(0)
    fractions = rng.random((100, 50, 4))
    replayed = grid_to_fractions(fractions_to_grid(fractions))
    assert np.abs(replayed - fractions).max() * 4096 <= 0.25


def test_fractions_of_failed_images_are_zero() -> None:
    boxes, _ = sample_boxes(
        CropSpec(crops_per_image=2), np.array([0, 1]), np.array([0, 10]), np.array([0, 10])
    )
    assert (boxes[0] == 0).all() and (boxes[1, :, 2] > 0).all()
    fractions = boxes_to_fractions(boxes, np.array([0, 10]), np.array([0, 10]))
    assert (fractions[0] == 0).all() and (fractions[1] <= 1).all()


@pytest.mark.parametrize(
    "bad",
    [
        dict(scale=(0.5, 0.1)),
        dict(ratio=(0.0, 1.0)),
        dict(flip_prob=1.5),
        dict(seed=-1),
        dict(crops_per_image=0),
        dict(sampler="torch"),
    ],
)
def test_crop_spec_refuses_bad_values(bad) -> None:
    with pytest.raises(ValueError):
        CropSpec(**bad)


# An independent scalar implementation written from docs/format.md, in plain Python
# integers and floats, as another language would write it.
M64 = 2**64 - 1


def _mix(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def _uniform(seed: int, image: int, crop: int, draw: int) -> float:
    h = _mix((seed + 0x9E3779B97F4A7C15) & M64)
    for counter in (image, crop, draw):
        h = _mix(((h ^ counter) + 0x9E3779B97F4A7C15) & M64)
    return (h >> 11) * 2.0**-53


def _exp(x: float) -> float:
    n = round(x / 0.6931471805599453)
    r = x - n * 0.6931471805599453
    acc = 1.0
    for i in range(20, 0, -1):
        acc = 1.0 + acc * r / float(i)
    return math.ldexp(acc, n)


def _log(x: float) -> float:
    m, e = math.frexp(x)
    if m < 0.7071067811865476:
        m, e = m * 2.0, e - 1
    y = (m - 1.0) / (m + 1.0)
    acc = 1.0 / 25
    for j in range(11, -1, -1):
        acc = 1.0 / (2 * j + 1) + (y * y) * acc
    return e * 0.6931471805599453 + 2.0 * (y * acc)


def scalar_box(spec: CropSpec, image: int, crop: int, height: int, width: int):
    area = float(height * width)
    lr0, lr1 = _log(spec.ratio[0]), _log(spec.ratio[1])
    for attempt in range(10):
        u = [_uniform(spec.seed, image, crop, 4 * attempt + d) for d in range(4)]
        target = area * (spec.scale[0] + (spec.scale[1] - spec.scale[0]) * u[0])
        aspect = _exp(lr0 + (lr1 - lr0) * u[1])
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = math.floor(u[2] * (height - h + 1))
            left = math.floor(u[3] * (width - w + 1))
            break
    else:
        in_ratio = width / height
        if in_ratio < min(spec.ratio):
            w, h = width, round(width / min(spec.ratio))
        elif in_ratio > max(spec.ratio):
            h, w = height, round(height * max(spec.ratio))
        else:
            w, h = width, height
        top, left = (height - h) // 2, (width - w) // 2
    flip = _uniform(spec.seed, image, crop, 40) < spec.flip_prob
    return [top, left, h, w], flip


def test_vectorised_sampler_matches_the_scalar_reference_from_the_spec() -> None:
    rng = np.random.default_rng(5)
    spec = CropSpec(crops_per_image=25, seed=2**63 + 12345, scale=(0.08, 1.0))
    images = rng.integers(0, 2**31, size=12)
    heights = rng.integers(1, 4000, size=12)
    widths = rng.integers(1, 4000, size=12)
    heights[0], widths[0] = 1, 3000  # forces the fallback
    boxes, flips = sample_boxes(spec, images, heights, widths)
    for row in range(12):
        for crop in range(spec.crops_per_image):
            box, flip = scalar_box(
                spec, int(images[row]), crop, int(heights[row]), int(widths[row])
            )
            assert boxes[row, crop].tolist() == box
            assert bool(flips[row, crop]) == flip

"""Batch Mixup/CutMix: labels stay distributions, CutMix's λ is the exact kept area,
sampling is a function of the generator alone."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from fkd.mixing import (
    MixConfig,
    MixParams,
    apply_mix,
    cutmix_box,
    mix_batch,
    mix_targets,
    no_mix,
    sample_mix,
)

FAST = settings(max_examples=15, deadline=None)

seeds = st.integers(0, 2**63 - 1)
alphas = st.floats(0.1, 4.0)
sizes = st.tuples(st.integers(2, 6), st.integers(1, 12), st.integers(1, 12))

CUTMIX = MixConfig(cutmix_alpha=1.0)
MIXUP = MixConfig(mixup_alpha=0.4)
BOTH = MixConfig(mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5)


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def soft_targets(batch: int, classes: int, seed: int) -> torch.Tensor:
    logits = torch.randn(batch, classes, generator=generator(seed))
    return F.softmax(logits, dim=-1)


def labelled_images(batch: int, height: int, width: int) -> torch.Tensor:
    """Image i is the constant i + 1 in every channel: every sample is distinguishable."""
    values = torch.arange(1, batch + 1, dtype=torch.float32)
    return values.view(batch, 1, 1, 1).expand(batch, 3, height, width).contiguous()


def derangement(batch: int) -> torch.Tensor:
    """A permutation with no fixed point, so every pasted pixel changes."""
    return torch.roll(torch.arange(batch), 1)


@FAST
@given(seeds, sizes, alphas, alphas)
def test_mixed_targets_still_sum_to_one(seed, size, mixup_alpha, cutmix_alpha):
    batch, height, width = size
    config = MixConfig(mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha)
    images = torch.rand(batch, 3, height, width, generator=generator(seed))
    targets = soft_targets(batch, 5, seed)
    mixed_images, mixed_targets = mix_batch(images, targets, config, generator(seed))
    assert mixed_images.shape == images.shape
    torch.testing.assert_close(mixed_targets.sum(-1), torch.ones(batch))
    assert (mixed_targets >= 0).all()


@FAST
@given(seeds, sizes, alphas)
def test_cutmix_lam_is_the_exact_kept_area(seed, size, alpha):
    batch, height, width = size
    params = sample_mix(MixConfig(cutmix_alpha=alpha), batch, height, width, generator(seed))
    assert params.kind == "cutmix" and params.box is not None
    top, left, box_h, box_w = params.box
    assert top >= 0 and top + box_h <= height and left >= 0 and left + box_w <= width

    params = dataclasses.replace(params, permutation=derangement(batch))
    images = labelled_images(batch, height, width)
    one_hot = torch.eye(batch)  # sample i is class i
    mixed_images, mixed_targets = apply_mix(images, one_hot, params)
    changed = (mixed_images != images).all(dim=1)  # [B, H, W]: pixel came from the partner
    kept_fraction = 1 - changed.sum(dim=(1, 2)).double() / (height * width)
    torch.testing.assert_close(kept_fraction, torch.full((batch,), params.lam, dtype=torch.float64))
    # own class gets λ, the partner's class 1 − λ
    torch.testing.assert_close(mixed_targets.diagonal(), torch.full((batch,), params.lam))
    partner = mixed_targets[torch.arange(batch), params.permutation]
    torch.testing.assert_close(partner, torch.full((batch,), 1 - params.lam))


def test_cutmix_box_is_clipped_to_the_image():
    assert cutmix_box(0.75, 8, 8, 0, 0) == (0, 0, 2, 2)  # 4x4 box centred on a corner
    assert cutmix_box(0.75, 8, 8, 7, 7) == (5, 5, 3, 3)
    assert cutmix_box(0.0, 8, 6, 4, 3) == (0, 0, 8, 6)  # whole image
    assert cutmix_box(1.0, 8, 6, 4, 3)[2:] == (0, 0)  # empty box


@FAST
@given(seeds, sizes, alphas)
def test_mixup_blends_images_and_targets_with_the_same_lam(seed, size, alpha):
    batch, height, width = size
    params = sample_mix(MixConfig(mixup_alpha=alpha), batch, height, width, generator(seed))
    assert params.kind == "mixup" and params.box is None and 0 <= params.lam <= 1
    images = torch.rand(batch, 3, height, width, generator=generator(seed))
    targets = soft_targets(batch, 4, seed)
    mixed_images, mixed_targets = apply_mix(images, targets, params)
    perm, lam = params.permutation, params.lam
    torch.testing.assert_close(mixed_images, lam * images + (1 - lam) * images[perm])
    torch.testing.assert_close(mixed_targets, lam * targets + (1 - lam) * targets[perm])


@FAST
@given(seeds)
def test_same_seed_gives_same_params(seed):
    first = sample_mix(BOTH, 8, 16, 16, generator(seed))
    second = sample_mix(BOTH, 8, 16, 16, generator(seed))
    assert (first.kind, first.lam, first.box) == (second.kind, second.lam, second.box)
    assert torch.equal(first.permutation, second.permutation)


def test_different_seeds_give_different_params():
    params = [sample_mix(BOTH, 8, 16, 16, generator(seed)) for seed in range(20)]
    assert {p.kind for p in params} == {"mixup", "cutmix"}
    assert len({p.lam for p in params}) == 20


def test_sampling_leaves_global_rngs_alone():
    torch.manual_seed(0)
    torch_state = torch.get_rng_state()
    np.random.seed(0)
    numpy_state = np.random.get_state()[1].copy()
    sample_mix(BOTH, 4, 8, 8, generator(1))
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert (np.random.get_state()[1] == numpy_state).all()


def test_generator_advances_the_same_whatever_the_outcome():
    """Each call draws the same things, so the next call's draws do not depend on the kind."""
    states = []
    for config in (MixConfig(), MIXUP, CUTMIX, BOTH, MixConfig(cutmix_alpha=1.0, prob=0.0)):
        g = generator(7)
        sample_mix(config, 4, 8, 8, g)
        states.append(g.get_state())
    assert all(torch.equal(state, states[0]) for state in states)


@pytest.mark.parametrize(
    "config",
    [MixConfig(), MixConfig(mixup_alpha=1.0, cutmix_alpha=1.0, prob=0.0)],
    ids=["no-alpha", "prob-0"],
)
def test_disabled_configs_leave_the_batch_unchanged(config):
    images = torch.rand(4, 3, 8, 8, generator=generator(0))
    targets = soft_targets(4, 5, 0)
    for seed in range(5):
        params = sample_mix(config, 4, 8, 8, generator(seed))
        assert params.kind == "none" and params.lam == 1.0
        assert torch.equal(params.permutation, torch.arange(4))
        mixed_images, mixed_targets = mix_batch(images, targets, config, generator(seed))
        assert torch.equal(mixed_images, images) and torch.equal(mixed_targets, targets)


@pytest.mark.parametrize(("switch_prob", "kind"), [(0.0, "mixup"), (1.0, "cutmix")])
def test_switch_prob_picks_the_kind(switch_prob, kind):
    config = MixConfig(mixup_alpha=1.0, cutmix_alpha=1.0, switch_prob=switch_prob)
    assert {sample_mix(config, 4, 8, 8, generator(s)).kind for s in range(10)} == {kind}


def test_prob_is_the_chance_of_mixing():
    config = MixConfig(mixup_alpha=1.0, prob=0.5)
    kinds = [sample_mix(config, 2, 4, 4, generator(s)).kind for s in range(400)]
    assert 150 < kinds.count("mixup") < 250


def test_mix_targets_mixes_extra_labels_with_the_same_params():
    params = sample_mix(MIXUP, 4, 8, 8, generator(3))
    hard = F.one_hot(torch.tensor([0, 1, 2, 3]), 4).float()
    mixed = mix_targets(hard, params)
    torch.testing.assert_close(mixed.sum(-1), torch.ones(4))
    assert mix_targets(hard, no_mix(4)) is hard


def test_cutmix_works_on_uint8_images_and_mixup_refuses_them():
    images = labelled_images(4, 8, 8).to(torch.uint8)
    targets = soft_targets(4, 3, 0)
    cut = MixParams("cutmix", 0.75, (0, 0, 4, 4), derangement(4))
    mixed, _ = apply_mix(images, targets, cut)
    assert mixed.dtype == torch.uint8 and (mixed != images).sum() == 4 * 3 * 16
    with pytest.raises(ValueError, match="mixup needs floating-point images"):
        apply_mix(images, targets, MixParams("mixup", 0.5, None, derangement(4)))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"mixup_alpha": -1.0}, "mixup_alpha must be a finite number >= 0"),
        ({"cutmix_alpha": float("inf")}, "cutmix_alpha must be a finite number >= 0"),
        ({"prob": 1.5}, r"prob must lie in \[0, 1\]"),
        ({"switch_prob": -0.1}, r"switch_prob must lie in \[0, 1\]"),
        ({"alpha": 1.0}, r"unknown keys \['alpha'\]"),
    ],
)
def test_mix_config_errors(data, message):
    with pytest.raises(ValueError, match=message):
        MixConfig.from_dict(data)


def test_mix_config_round_trips():
    assert MixConfig.from_dict(BOTH.to_dict()) == BOTH


def test_params_and_shape_errors():
    with pytest.raises(ValueError, match="kind must be one of"):
        MixParams("blend", 0.5, None, torch.arange(2))
    with pytest.raises(ValueError, match="a box is needed for cutmix"):
        MixParams("cutmix", 0.5, None, torch.arange(2))
    with pytest.raises(ValueError, match="does not fit"):
        apply_mix(
            torch.zeros(2, 3, 4, 4),
            torch.eye(2),
            MixParams("cutmix", 0.5, (2, 0, 4, 4), torch.arange(2)),
        )
    with pytest.raises(ValueError, match="batch size 3"):
        mix_targets(torch.eye(2), no_mix(3))
    with pytest.raises(ValueError, match="generator must be a torch.Generator"):
        sample_mix(BOTH, 2, 4, 4, None)  # type: ignore[arg-type]

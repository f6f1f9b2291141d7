"""Student losses against dense soft targets: values, invariances, registry, AMP."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from fkd.losses import (
    LOSSES,
    LossConfig,
    dist_loss,
    inter_class_relation,
    intra_class_relation,
    kl_divergence,
    make_loss,
    pearson_correlation,
    retemper,
    soft_cross_entropy,
    temper,
    with_hard_labels,
)

FAST = settings(max_examples=15, deadline=None)

shapes = st.tuples(st.integers(2, 6), st.integers(2, 8))
seeds = st.integers(0, 2**31 - 1)
temperatures = st.floats(0.25, 8.0)


def randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def rand(*shape: int, seed: int) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def random_probs(batch: int, classes: int, seed: int) -> torch.Tensor:
    return F.softmax(2 * randn(batch, classes, seed=seed), dim=-1)


def top_k_renorm(probs: torch.Tensor, k: int) -> torch.Tensor:
    """Like the marginal_renorm codec: keep the top-k per row, renormalise, zeros elsewhere."""
    values, indices = probs.topk(k, dim=-1)
    kept = torch.zeros_like(probs).scatter(-1, indices, values)
    return kept / kept.sum(dim=-1, keepdim=True)


def dist_reference(z_s: torch.Tensor, p_t: torch.Tensor, beta, gamma, tau) -> torch.Tensor:
    """DIST as in the authors' released code, with exact Pearson (their eps set to 0)."""

    def pearson(a, b, eps=0.0):
        a = a - a.mean(1, keepdim=True)
        b = b - b.mean(1, keepdim=True)
        return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + eps)

    y_s = (z_s / tau).softmax(dim=1)
    inter = 1 - pearson(y_s, p_t).mean()
    intra = 1 - pearson(y_s.T, p_t.T).mean()
    return tau**2 * (beta * inter + gamma * intra)


# --- soft cross entropy -------------------------------------------------------------------


@FAST
@given(shapes, seeds)
def test_soft_ce_equals_cross_entropy_for_one_hot_targets(shape, seed):
    batch, classes = shape
    logits = randn(batch, classes, seed=seed)
    hard = torch.randint(classes, (batch,), generator=torch.Generator().manual_seed(seed))
    one_hot = F.one_hot(hard, classes).double()
    torch.testing.assert_close(soft_cross_entropy(logits, one_hot), F.cross_entropy(logits, hard))


def test_soft_ce_equals_cross_entropy_with_probability_targets():
    logits, targets = randn(4, 7, seed=1), random_probs(4, 7, seed=2)
    expected = F.cross_entropy(logits, targets)
    torch.testing.assert_close(soft_cross_entropy(logits, targets), expected)


def test_losses_reject_mismatched_shapes():
    with pytest.raises(ValueError, match=r"\[B, C\]"):
        soft_cross_entropy(torch.zeros(2, 3), torch.zeros(2, 4))


# --- KL -----------------------------------------------------------------------------------


@FAST
@given(shapes, seeds, temperatures)
def test_kl_is_zero_when_student_matches_targets(shape, seed, temperature):
    targets = random_probs(*shape, seed=seed)
    logits = temperature * targets.log()  # softmax(logits / T) == targets
    loss = kl_divergence(logits, targets, temperature)
    assert abs(loss.item()) < 1e-5


@FAST
@given(shapes, seeds, temperatures)
def test_kl_is_positive_otherwise_and_matches_torch_kl_div(shape, seed, temperature):
    targets = random_probs(*shape, seed=seed)
    logits = randn(*shape, seed=seed + 1)
    loss = kl_divergence(logits, targets, temperature)
    log_q = F.log_softmax(logits / temperature, dim=-1)
    expected = temperature**2 * F.kl_div(log_q, targets, reduction="batchmean")
    torch.testing.assert_close(loss, expected)
    assert loss.item() > 0


def test_kl_with_zero_targets_equals_cross_entropy_minus_entropy():
    targets = top_k_renorm(random_probs(3, 6, seed=3), k=2).float()
    logits = randn(3, 6, seed=4).float()
    entropy = -(targets[targets > 0] * targets[targets > 0].log()).sum() / 3
    torch.testing.assert_close(
        kl_divergence(logits, targets), soft_cross_entropy(logits, targets) - entropy
    )


def test_kl_rejects_bad_temperature():
    with pytest.raises(ValueError, match="temperature must be a positive"):
        kl_divergence(torch.zeros(2, 3), torch.full((2, 3), 1 / 3), temperature=0.0)


# --- temper -------------------------------------------------------------------------------


@FAST
@given(shapes, seeds, st.floats(0.5, 4.0), st.floats(0.25, 4.0))
def test_temper_matches_softmax_at_product_temperature(shape, seed, store_t, t):
    logits = randn(*shape, seed=seed)
    stored = F.softmax(logits / store_t, dim=-1)
    expected = F.softmax(logits / (store_t * t), dim=-1)
    torch.testing.assert_close(temper(stored, t), expected)
    torch.testing.assert_close(retemper(stored, store_t, store_t * t), expected)


def test_temper_keeps_zeros_and_rows_summing_to_one():
    targets = top_k_renorm(random_probs(4, 9, seed=5), k=3)
    sharpened = temper(targets, 0.3)
    assert torch.equal(sharpened == 0, targets == 0)
    torch.testing.assert_close(sharpened.sum(-1), torch.ones(4, dtype=torch.float64))
    assert torch.equal(temper(targets, 1.0), targets)


# --- DIST ---------------------------------------------------------------------------------


@FAST
@given(shapes, seeds, temperatures, st.floats(0, 3), st.floats(0, 3))
def test_dist_matches_reference_implementation(shape, seed, temperature, beta, gamma):
    logits, targets = randn(*shape, seed=seed), random_probs(*shape, seed=seed + 1)
    expected = dist_reference(logits, targets, beta, gamma, temperature)
    torch.testing.assert_close(
        dist_loss(logits, targets, beta, gamma, temperature), expected, atol=1e-6, rtol=1e-6
    )


@FAST
@given(shapes, seeds, seeds)
def test_relations_are_invariant_to_positive_affine_maps_of_probabilities(shape, seed, seed2):
    """Pearson correlation is invariant to a·p + b (a > 0) of either argument, applied per
    row for the inter-class relation and per column for the intra-class relation."""
    batch, classes = shape
    student, teacher = random_probs(batch, classes, seed), random_probs(batch, classes, seed2)
    scale_rows = 0.1 + 5 * rand(batch, 1, seed=seed)
    shift_rows = randn(batch, 1, seed=seed2)
    scale_cols = 0.1 + 5 * rand(1, classes, seed=seed + 1)
    shift_cols = randn(1, classes, seed=seed2 + 1)

    inter = inter_class_relation(student, teacher)
    torch.testing.assert_close(
        inter_class_relation(scale_rows * student + shift_rows, teacher), inter
    )
    torch.testing.assert_close(
        inter_class_relation(student, scale_rows * teacher + shift_rows), inter
    )
    intra = intra_class_relation(student, teacher)
    torch.testing.assert_close(
        intra_class_relation(scale_cols * student + shift_cols, teacher), intra
    )
    torch.testing.assert_close(
        intra_class_relation(student, scale_cols * teacher + shift_cols), intra
    )


@FAST
@given(shapes, seeds, temperatures)
def test_dist_is_invariant_to_per_row_logit_shifts(shape, seed, temperature):
    """softmax ignores z + b per row, so DIST does too (unlike a·z, which changes p_s)."""
    logits, targets = randn(*shape, seed=seed), random_probs(*shape, seed=seed + 1)
    shift = 10 * randn(shape[0], 1, seed=seed + 2)
    torch.testing.assert_close(
        dist_loss(logits + shift, targets, temperature=temperature),
        dist_loss(logits, targets, temperature=temperature),
    )


@FAST
@given(shapes, seeds, temperatures)
def test_dist_is_zero_when_student_matches_targets(shape, seed, temperature):
    targets = random_probs(*shape, seed=seed)
    loss = dist_loss(temperature * targets.log(), targets, temperature=temperature)
    assert abs(loss.item()) < 1e-4


def test_pearson_of_constant_vector_is_zero_with_finite_gradient():
    a = torch.full((1, 5), 0.2, requires_grad=True)
    r = pearson_correlation(a, rand(1, 5, seed=0).float())
    r.sum().backward()
    assert r.item() == 0
    assert a.grad is not None and torch.isfinite(a.grad).all()


# --- hard labels --------------------------------------------------------------------------


def test_with_hard_labels_is_a_convex_combination():
    logits, targets = randn(4, 5, seed=6).float(), random_probs(4, 5, seed=7).float()
    hard = torch.tensor([0, 3, 1, 4])
    soft = soft_cross_entropy(logits, targets)
    ce = F.cross_entropy(logits, hard, label_smoothing=0.1)
    assert with_hard_labels(soft, logits, None, alpha=0.0) is soft
    torch.testing.assert_close(with_hard_labels(soft, logits, hard, 1.0, 0.1), ce)
    torch.testing.assert_close(
        with_hard_labels(soft, logits, hard, 0.3, 0.1), 0.7 * soft + 0.3 * ce
    )
    dense = F.one_hot(hard, 5).float()  # mixed hard labels arrive dense
    torch.testing.assert_close(with_hard_labels(soft, logits, dense, 1.0, 0.1), ce)


def test_with_hard_labels_errors():
    loss, logits = torch.tensor(1.0), torch.zeros(2, 3)
    with pytest.raises(ValueError, match="hard_targets are needed"):
        with_hard_labels(loss, logits, None, alpha=0.5)
    with pytest.raises(ValueError, match=r"alpha must lie in \[0, 1\]"):
        with_hard_labels(loss, logits, torch.tensor([0, 1]), alpha=1.5)
    with pytest.raises(ValueError, match=r"label_smoothing must lie in \[0, 1\)"):
        with_hard_labels(loss, logits, torch.tensor([0, 1]), alpha=0.5, label_smoothing=1.0)


# --- registry and config ------------------------------------------------------------------


def test_make_loss_binds_options():
    logits, targets = randn(3, 4, seed=8), random_probs(3, 4, seed=9)
    torch.testing.assert_close(
        make_loss("kl", temperature=4.0)(logits, targets), kl_divergence(logits, targets, 4.0)
    )
    torch.testing.assert_close(
        make_loss("dist", beta=2.0, gamma=0.5)(logits, targets),
        dist_loss(logits, targets, beta=2.0, gamma=0.5),
    )
    assert set(LOSSES) == {"soft_ce", "kl", "dist"}


def test_make_loss_errors_list_valid_values():
    with pytest.raises(ValueError, match=r"unknown loss 'mse'; valid names are \['dist', 'kl', "):
        make_loss("mse")
    with pytest.raises(ValueError, match=r"'soft_ce' takes no option \['temperature'\]"):
        make_loss("soft_ce", temperature=2.0)


def test_loss_config_round_trips_and_builds():
    config = LossConfig(
        "dist", temperature=2.0, beta=1.5, gamma=0.5, alpha=0.2, label_smoothing=0.1
    )
    assert LossConfig.from_dict(config.to_dict()) == config
    logits, targets = randn(3, 4, seed=10).float(), random_probs(3, 4, seed=11).float()
    hard = targets.argmax(-1)
    soft = dist_loss(logits, targets, 1.5, 0.5, 2.0)
    expected = 0.8 * soft + 0.2 * F.cross_entropy(logits, hard, label_smoothing=0.1)
    torch.testing.assert_close(config.build()(logits, targets, hard), expected)
    torch.testing.assert_close(
        LossConfig().build()(logits, targets), soft_cross_entropy(logits, targets)
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "mse"}, "unknown loss 'mse'"),
        ({"name": "soft_ce", "temperature": 4.0}, "'soft_ce' takes no option 'temperature'"),
        ({"name": "kl", "beta": 2.0}, "'kl' takes no option 'beta'"),
        ({"name": "kl", "temperature": -1.0}, "temperature must be a positive"),
        ({"name": "dist", "gamma": -1.0}, "beta and gamma must be >= 0"),
        ({"alpha": 2.0}, r"alpha must lie in \[0, 1\]"),
        ({"label_smoothing": 1.0}, r"label_smoothing must lie in \[0, 1\)"),
        ({"temp": 1.0}, r"unknown keys \['temp'\]"),
    ],
)
def test_loss_config_errors(data, message):
    with pytest.raises(ValueError, match=message):
        LossConfig.from_dict(data)


# --- mixed precision ----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("batch", [1, 6])
def test_gradients_are_finite_under_bf16_autocast_with_zero_targets(name, batch):
    torch.manual_seed(0)
    model = torch.nn.Linear(16, 10)
    inputs = torch.randn(batch, 16)
    # top-2 of 10 classes: exact zeros in every row and whole all-zero class columns
    targets = top_k_renorm(random_probs(batch, 10, seed=12), k=2).float()
    assert (targets == 0).all(dim=0).any()
    config = LossConfig(name, alpha=0.25, label_smoothing=0.1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(inputs)
        assert logits.dtype == torch.bfloat16
        loss = config.build()(logits, targets, targets.argmax(-1))
    assert loss.dtype == torch.float32
    assert torch.isfinite(loss)
    loss.backward()
    for parameter in model.parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all()


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_under_autocast_equals_float32_loss_on_the_same_logits(name):
    logits = randn(4, 7, seed=13).to(torch.bfloat16)
    targets = random_probs(4, 7, seed=14).float()
    loss = make_loss(name)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = loss(logits, targets)
    assert inside.dtype == torch.float32
    torch.testing.assert_close(inside, loss(logits.float(), targets))

"""Student losses against dense teacher soft labels.

Every loss takes student ``logits`` ``[B, C]`` and dense ``targets`` ``[B, C]``
whose rows sum to 1 (decoded from the store, possibly Mixup/CutMix-mixed) and
returns a scalar.  Targets may hold exact zeros (``marginal_renorm`` keeps only
the top-K classes); every term guards ``0 · log 0 = 0`` so values and
gradients stay finite.

Temperatures.  The store's labels are already ``softmax(teacher / T_store)``:
the teacher's logits are gone.  ``kl`` and ``dist`` therefore apply their
``temperature`` to the student only and take the targets as they are, which is
right when ``temperature`` equals the store's recorded temperature.  To use
another temperature, re-temper the targets first with
``retemper(targets, store_temperature, temperature)``.

Mixed precision.  Losses are computed in float32 (float64 for float64 logits)
with autocast turned off for the loss itself, so they can be called inside
``torch.autocast`` on bfloat16/float16 logits and return a float32 scalar.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F

from fkd import config_dicts

SoftLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

_PEARSON_EPS = 1e-8


@contextlib.contextmanager
def _float32_region(tensor: torch.Tensor) -> Iterator[None]:
    """Autocast off on ``tensor``'s device, so float32 inputs stay float32."""
    if torch.amp.is_autocast_available(tensor.device.type):
        with torch.autocast(device_type=tensor.device.type, enabled=False):
            yield
    else:
        yield


def _compute_dtype(tensor: torch.Tensor) -> torch.dtype:
    """float32, or float64 for float64 inputs: never below float32."""
    return torch.promote_types(tensor.dtype, torch.float32)


def _upcast(tensor: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return tensor.to(_compute_dtype(like))


def _check_pair(logits: torch.Tensor, targets: torch.Tensor) -> None:
    if logits.dim() != 2 or logits.shape != targets.shape:
        raise ValueError(
            f"logits and targets must both be [B, C] of the same shape, "
            f"got {tuple(logits.shape)} and {tuple(targets.shape)}"
        )


def _check_temperature(temperature: float) -> None:
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a positive finite number, got {temperature!r}")


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """FKD's loss: ``mean_b  -Σ_c targets[b, c] · log_softmax(logits[b])[c]``.

    Equals ``F.cross_entropy(logits, hard)`` when ``targets`` is one-hot.  Zero
    targets contribute exactly 0 (the log-softmax is always finite).
    """
    _check_pair(logits, targets)
    with _float32_region(logits):
        log_q = F.log_softmax(_upcast(logits, logits), dim=-1)
        return -(_upcast(targets, logits) * log_q).sum(dim=-1).mean()


def kl_divergence(
    logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """``T² · mean_b KL(p_b ‖ q_b)`` with ``q = softmax(logits / T)`` and ``p = targets``.

    ``KL(p ‖ q) = Σ_c p_c (log p_c − log q_c)``, with ``p_c log p_c = 0`` where
    ``p_c = 0`` (``torch.xlogy``).  The ``T²`` factor keeps gradient magnitudes
    comparable across temperatures (Hinton et al. 2015): ``∂KL/∂z = (q − p)/T``
    and, for soft distributions, ``q − p`` itself shrinks as ``1/T``, so the
    gradients scale as ``1/T²``; ``T²`` restores the scale.

    ``targets`` are taken as already tempered: the store records
    ``softmax(teacher / T_store)``, so pass ``temperature = T_store`` (or
    re-temper the targets with :func:`retemper`).
    """
    _check_pair(logits, targets)
    _check_temperature(temperature)
    with _float32_region(logits):
        log_q = F.log_softmax(_upcast(logits, logits) / temperature, dim=-1)
        p = _upcast(targets, logits)
        kl_rows = (torch.xlogy(p, p) - p * log_q).sum(dim=-1)
        return temperature**2 * kl_rows.mean()


def temper(probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """Re-temper probabilities along the last dim: ``p^(1/T) / Σ p^(1/T)``.

    Computed as ``softmax(log p / T)`` (stable for small T; zeros stay zero).
    If ``p = softmax(z / T0)`` then ``temper(p, T) = softmax(z / (T0 · T))``:
    ``T < 1`` sharpens, ``T > 1`` softens, ``T = 1`` is the identity.
    """
    _check_temperature(temperature)
    probs = _upcast(probs, probs)
    if temperature == 1.0:
        return probs
    return F.softmax(torch.log(probs) / temperature, dim=-1)


def retemper(probs: torch.Tensor, store_temperature: float, temperature: float) -> torch.Tensor:
    """Stored ``softmax(z / T_store)`` to ``softmax(z / T)``: ``temper(p, T / T_store)``."""
    _check_temperature(store_temperature)
    _check_temperature(temperature)
    return temper(probs, temperature / store_temperature)


def pearson_correlation(a: torch.Tensor, b: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Pearson correlation of ``a`` and ``b`` along ``dim``.

    ``r = <a − ā, b − b̄> / (max(‖a − ā‖, ε) · max(‖b − b̄‖, ε))`` with ε = 1e-8.
    A constant vector (zero spread: a class no row of the batch keeps, or a
    batch of one) gives ``r = 0`` with finite gradients instead of 0/0.
    Invariant to positive affine maps ``a·x + b`` (``a > 0``) of either input.
    """
    a_centred = a - a.mean(dim=dim, keepdim=True)
    b_centred = b - b.mean(dim=dim, keepdim=True)
    a_norm = a_centred.square().sum(dim=dim).clamp_min(_PEARSON_EPS**2).sqrt()
    b_norm = b_centred.square().sum(dim=dim).clamp_min(_PEARSON_EPS**2).sqrt()
    return (a_centred * b_centred).sum(dim=dim) / (a_norm * b_norm)


def inter_class_relation(student_probs: torch.Tensor, teacher_probs: torch.Tensor) -> torch.Tensor:
    """DIST's inter-class term: ``1 − mean_b pearson(p_s[b, :], p_t[b, :])`` (rows)."""
    return 1 - pearson_correlation(student_probs, teacher_probs, dim=1).mean()


def intra_class_relation(student_probs: torch.Tensor, teacher_probs: torch.Tensor) -> torch.Tensor:
    """DIST's intra-class term: ``1 − mean_c pearson(p_s[:, c], p_t[:, c])`` (columns)."""
    return 1 - pearson_correlation(student_probs, teacher_probs, dim=0).mean()


def dist_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    beta: float = 1.0,
    gamma: float = 1.0,
    temperature: float = 1.0,
) -> torch.Tensor:
    """DIST (Huang et al., NeurIPS 2022): ``T² · (β · inter + γ · intra)``.

    ``p_s = softmax(logits / T)`` and ``p_t = targets`` (already tempered, as for
    :func:`kl_divergence`); ``inter = 1 − mean_b pearson(p_s[b], p_t[b])`` and
    ``intra = 1 − mean_c pearson(p_s[:, c], p_t[:, c])``.  The intra-class term
    compares each class's scores across the batch, so it needs ``B ≥ 2`` to say
    anything (with ``B = 1`` it is the constant 1).
    """
    _check_pair(logits, targets)
    _check_temperature(temperature)
    if not (beta >= 0 and gamma >= 0):
        raise ValueError(f"beta and gamma must be >= 0, got beta={beta!r}, gamma={gamma!r}")
    with _float32_region(logits):
        student = F.softmax(_upcast(logits, logits) / temperature, dim=-1)
        teacher = _upcast(targets, logits)
        inter = inter_class_relation(student, teacher)
        intra = intra_class_relation(student, teacher)
        return temperature**2 * (beta * inter + gamma * intra)


def with_hard_labels(
    loss: torch.Tensor,
    logits: torch.Tensor,
    hard_targets: torch.Tensor | None,
    alpha: float,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """``(1 − α) · loss + α · CE(logits, hard_targets, label_smoothing)``.

    ``loss`` is the soft loss already computed; ``hard_targets`` are class
    indices ``[B]`` or dense (e.g. one-hot, then mixed) ``[B, C]``.  ``α = 0``
    returns ``loss`` unchanged and needs no hard targets.
    """
    _check_alpha(alpha)
    _check_label_smoothing(label_smoothing)
    if alpha == 0:
        return loss
    if hard_targets is None:
        raise ValueError(f"alpha={alpha} mixes in a hard-label term: hard_targets are needed")
    with _float32_region(logits):
        logits = _upcast(logits, logits)
        target = (
            _upcast(hard_targets, logits)
            if hard_targets.is_floating_point()
            else hard_targets.long()
        )
        hard = F.cross_entropy(logits, target, label_smoothing=label_smoothing)
        return (1 - alpha) * loss + alpha * hard


def _check_alpha(alpha: float) -> None:
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha!r}")


def _check_label_smoothing(label_smoothing: float) -> None:
    if not 0 <= label_smoothing < 1:
        raise ValueError(f"label_smoothing must lie in [0, 1), got {label_smoothing!r}")


LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "soft_ce": soft_cross_entropy,
    "kl": kl_divergence,
    "dist": dist_loss,
}


def loss_names() -> list[str]:
    return sorted(LOSSES)


def loss_options(name: str) -> list[str]:
    """The keyword options a registered loss takes (beyond logits and targets)."""
    parameters = list(inspect.signature(_loss_function(name)).parameters)
    return parameters[2:]


def _loss_function(name: str) -> Callable[..., torch.Tensor]:
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; valid names are {loss_names()}")
    return LOSSES[name]


def make_loss(name: str, **options: float) -> SoftLoss:
    """The registered loss ``name`` with its options bound: ``loss(logits, targets)``."""
    valid = loss_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"loss {name!r} takes no option {unknown}; its options are {valid}")
    return functools.partial(_loss_function(name), **options)


@dataclass(frozen=True)
class LossConfig:
    """Which loss a student trains with.

    ``temperature`` applies to ``kl`` and ``dist``; ``beta``/``gamma`` weight
    DIST's inter-/intra-class terms; ``alpha`` mixes in hard-label cross
    entropy with ``label_smoothing`` (``alpha = 0``: soft labels only).  An
    option the named loss does not take must keep its default.
    """

    name: str = "soft_ce"
    temperature: float = 1.0
    beta: float = 1.0
    gamma: float = 1.0
    alpha: float = 0.0
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        for option in ("temperature", "beta", "gamma", "alpha", "label_smoothing"):
            object.__setattr__(self, option, float(getattr(self, option)))
        _check_temperature(self.temperature)
        if not (self.beta >= 0 and self.gamma >= 0):
            raise ValueError(f"beta and gamma must be >= 0, got {self.beta!r}, {self.gamma!r}")
        _check_alpha(self.alpha)
        _check_label_smoothing(self.label_smoothing)
        valid = loss_options(self.name)
        defaults = {f.name: f.default for f in fields(self)}
        for option in ("temperature", "beta", "gamma"):
            if option not in valid and getattr(self, option) != defaults[option]:
                raise ValueError(
                    f"loss {self.name!r} takes no option {option!r}; its options are {valid}"
                )

    def soft_loss(self) -> SoftLoss:
        """The soft-label loss alone, ``loss(logits, targets)``."""
        options = {name: getattr(self, name) for name in loss_options(self.name)}
        return make_loss(self.name, **options)

    def build(self) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]:
        """``loss(logits, targets, hard_targets)``: soft loss mixed with hard labels by alpha."""
        soft = self.soft_loss()

        def loss(
            logits: torch.Tensor, targets: torch.Tensor, hard_targets: torch.Tensor | None = None
        ) -> torch.Tensor:
            return with_hard_labels(
                soft(logits, targets), logits, hard_targets, self.alpha, self.label_smoothing
            )

        return loss

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LossConfig:
        return config_dicts.from_dict(cls, data)

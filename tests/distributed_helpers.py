"""Teachers and data for the dask runner tests (importable by dask worker processes).

The teachers are ``module:factory`` specs (``distributed_helpers:make`` ...): a tiny
seeded conv net with 10 classes at 32 px, one thread, so a block of two 28 px images
takes milliseconds; ``make_slow`` sleeps per forward pass so that a run can be
killed mid-way, ``make_nan`` gives NaN on flat crops (a "poison" image) and
``make_crash`` kills its own process on them (a poison that takes the worker down).
"""

from __future__ import annotations

import os
import signal
import time

import torch
from torch import nn

INFO = {
    "input_size": 32,
    "mean": (0.5, 0.5, 0.5),
    "std": (0.25, 0.25, 0.25),
    "interpolation": "bilinear",
}
SLOW_SECONDS = 0.4


def _net(seed: int) -> nn.Module:
    """The net with weights drawn from its own generator, not torch's global one.

    Two runners in one process load it at the same time (a thread and a dask
    client); re-seeding the global generator there let one's ``manual_seed`` land
    in the middle of the other's initialisation, giving it other weights.
    """
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    )  # fmt: skip
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in net:
            if isinstance(layer, nn.Conv2d | nn.Linear):
                bound = layer.weight[0].numel() ** -0.5  # PyTorch's default init range
                layer.weight.uniform_(-bound, bound, generator=generator)
                layer.bias.uniform_(-bound, bound, generator=generator)
    return net


class Wrapper(nn.Module):
    """A teacher that wraps the net: ``forward`` decides what it does with ``inner``."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner


class Slow(Wrapper):
    """Sleeps ``SLOW_SECONDS`` per forward pass: a block takes long enough to be killed in."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(SLOW_SECONDS)
        return self.inner(x)


class NaNOnFlat(Wrapper):
    """NaN logits for crops without any contrast (a flat image), real logits otherwise."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.inner(x)
        flat = (x.amax(dim=(1, 2, 3)) - x.amin(dim=(1, 2, 3))) < 1e-3
        return torch.where(flat[:, None], torch.full_like(logits, float("nan")), logits)


class CrashOnFlat(Wrapper):
    """Kills its own process (SIGKILL: no exception, no cleanup) on a flat white crop.

    White only: the all-zero probe that loading a teacher runs must not trigger it.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = (x.amax(dim=(1, 2, 3)) - x.amin(dim=(1, 2, 3))) < 1e-3
        if bool((flat & (x.amin(dim=(1, 2, 3)) > 1.5)).any()):
            os.kill(os.getpid(), signal.SIGKILL)
        return self.inner(x)


def make() -> tuple[nn.Module, dict[str, object]]:
    torch.set_num_threads(1)
    return _net(0), dict(INFO)


def make_slow() -> tuple[nn.Module, dict[str, object]]:
    """The same weights as ``make``: a slow run's store equals a fast run's."""
    torch.set_num_threads(1)
    return Slow(_net(0)), dict(INFO)


def make_nan() -> tuple[nn.Module, dict[str, object]]:
    torch.set_num_threads(1)
    return NaNOnFlat(_net(0)), dict(INFO)


def make_crash() -> tuple[nn.Module, dict[str, object]]:
    """Only ever for dask workers: it kills the process that runs it on a flat image."""
    torch.set_num_threads(1)
    return CrashOnFlat(_net(0)), dict(INFO)

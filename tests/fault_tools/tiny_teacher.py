"""The tiny seeded teacher of the fault runs, as a ``module:factory`` spec.

Its source is written into a folder that the ``fkd`` subprocess gets on ``PYTHONPATH``
(``generate_command.fkd_env``); ``FAULT_TEACHER_DELAY`` and ``FAULT_TEACHER_HOLD`` in
that process's environment slow it down or hold it in the middle of a run.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

TEACHER_MODULE = "fault_tiny_teacher"
TEACHER_SPEC = f"{TEACHER_MODULE}:make"
TEACHER_SOURCE = textwrap.dedent(
    '''
    """A tiny seeded teacher for the fault tests (10 classes, 32 px, bilinear).

    FAULT_TEACHER_DELAY (seconds, default 0) is slept per forward pass, so that a run
    lasts long enough to be killed in the middle of its blocks; while the file named by
    FAULT_TEACHER_HOLD exists, forward passes wait (a run held in the middle).
    """
    import os
    import time

    import torch
    from torch import nn

    INFO = {
        "input_size": 32,
        "mean": (0.5, 0.5, 0.5),
        "std": (0.25, 0.25, 0.25),
        "interpolation": "bilinear",
        "class_names": ["t-shirt", "trouser", "pullover", "dress", "coat",
                        "sandal", "shirt", "sneaker", "bag", "boot"],
    }


    class Delayed(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            time.sleep(float(os.environ.get("FAULT_TEACHER_DELAY", "0")))
            hold = os.environ.get("FAULT_TEACHER_HOLD")
            while hold and os.path.exists(hold):
                time.sleep(0.01)
            return self.inner(x)


    def make():
        torch.manual_seed(0)
        net = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
        )
        return Delayed(net), dict(INFO)
    '''
)


def write_teacher(folder: Path) -> Path:
    """The tiny teacher module, written into ``folder`` (put it on ``PYTHONPATH``)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{TEACHER_MODULE}.py").write_text(TEACHER_SOURCE)
    return folder

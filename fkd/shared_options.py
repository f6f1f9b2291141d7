"""Options several commands declare alike: the teacher, the device, evaluation batches.

Each function returns a whole dataclass field (default and option), so a config
declares it in one line: ``device: str = shared_options.device()``.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any

from fkd.options import option


def teachers() -> Any:
    """``--teacher SPEC`` (repeatable: an ensemble)."""
    return field(
        default=("efficientnet_lite0",),
        metadata=option(
            "--teacher",
            metavar="SPEC",
            help="Teacher: efficientnet_lite0 (built in, ImageNet), torchvision:<arch>, "
            "timm:<name>, fkd:<arch> (an fkd train checkpoint via --weights), or "
            "package.module:factory. Repeat for an ensemble (probabilities averaged).",
        ),
    )


def weights() -> Any:
    """``--weights FILE`` (repeatable, one per ``--teacher``)."""
    return field(
        default=(),
        metadata=option(
            "--weights",
            metavar="FILE",
            help="Weights for the teacher at the same position (a state dict read with "
            "weights_only=True, or .safetensors). Repeat once per --teacher; omit to use the "
            "teacher's own pretrained weights.",
        ),
    )


def device() -> Any:
    return field(
        default="auto",
        metadata=option(
            "--device", help="auto (CUDA when present, else CPU), cpu, cuda or cuda:N."
        ),
    )


def decode_workers() -> Any:
    return field(
        default=2,
        metadata=option(
            "--workers",
            low=0,
            help="Image decode processes running ahead of the teacher (0: decode inline).",
        ),
    )


def eval_batch_size(default: int) -> Any:
    return field(
        default=default, metadata=option("--batch-size", low=1, help="Images per forward pass.")
    )


def crop_pct() -> Any:
    return field(
        default=0.875,
        metadata=option(
            "--crop-pct",
            low=0.1,
            high=1.0,
            help="Resize the short side to input_size / crop_pct, then centre-crop.",
        ),
    )


def result_as_json() -> Any:
    return field(default=False, metadata=option("--json", help="Print the result as JSON."))


__all__ = [
    "crop_pct",
    "decode_workers",
    "device",
    "eval_batch_size",
    "result_as_json",
    "teachers",
    "weights",
]

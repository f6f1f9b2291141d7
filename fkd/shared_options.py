"""Options several commands declare alike: the teacher, the device, evaluation batches,
the crops' area and aspect-ratio ranges.

Each function returns a whole dataclass field (default and option), so a config
declares it in one line: ``device: str = shared_options.device()``.
"""

from __future__ import annotations

from typing import Any

from fkd.options import argument, format_pair, option, parse_pair


def store() -> Any:
    """``STORE``: a label store's path, zip or fsspec URL (the store commands' argument)."""
    return argument("STORE", store=True)


def teachers() -> Any:
    """``--teacher SPEC`` (repeatable: an ensemble)."""
    return option(
        "--teacher",
        default=("efficientnet_lite0",),
        metavar="SPEC",
        help="Teacher: efficientnet_lite0 (built in, ImageNet), torchvision:<arch>, "
        "timm:<name>, fkd:<arch> (an fkd train checkpoint via --weights), or "
        "package.module:factory. Repeat for an ensemble (probabilities averaged).",
    )


def weights() -> Any:
    """``--weights FILE`` (repeatable, one per ``--teacher``)."""
    return option(
        "--weights",
        default=(),
        metavar="FILE",
        help="Weights for the teacher at the same position (a state dict read with "
        "weights_only=True, or .safetensors). Repeat once per --teacher; omit to use the "
        "teacher's own pretrained weights.",
    )


def device() -> Any:
    return option(
        "--device", default="auto", help="auto (CUDA when present, else CPU), cpu, cuda or cuda:N."
    )


def decode_workers() -> Any:
    return option(
        "--workers",
        default=2,
        low=0,
        help="Image decode processes running ahead of the teacher (0: decode inline).",
    )


def eval_batch_size(default: int) -> Any:
    return option("--batch-size", default=default, low=1, help="Images per forward pass.")


def crop_pct() -> Any:
    return option(
        "--crop-pct",
        default=0.875,
        low=0.1,
        high=1.0,
        help="Resize the short side to input_size / crop_pct, then centre-crop.",
    )


def crop_scale(help: str) -> Any:
    """``--scale 0.08,1.0``: the RandomResizedCrop area range (``help``: what it is for)."""
    return option("--scale", default=(0.08, 1.0), parse=parse_pair, format=format_pair, help=help)


def crop_ratio(help: str) -> Any:
    """``--ratio 0.75,1.33``: the RandomResizedCrop aspect-ratio range."""
    return option(
        "--ratio", default=(3.0 / 4.0, 4.0 / 3.0), parse=parse_pair, format=format_pair, help=help
    )


def result_as_json() -> Any:
    return option("--json", default=False, help="Print the result as JSON.")


__all__ = [
    "crop_pct",
    "crop_ratio",
    "crop_scale",
    "decode_workers",
    "device",
    "eval_batch_size",
    "result_as_json",
    "teachers",
    "weights",
]

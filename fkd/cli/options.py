"""Options and error handling shared by several ``fkd`` subcommands."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def teacher_options(func: F) -> F:
    """--teacher (repeatable: an ensemble), --weights (repeatable, in the same order)."""
    func = click.option(
        "--weights",
        "weights",
        multiple=True,
        metavar="FILE",
        help="Weights for the teacher at the same position (a state dict read with "
        "weights_only=True, or .safetensors). Repeat once per --teacher; omit to use the "
        "teacher's own pretrained weights.",
    )(func)
    return click.option(
        "--teacher",
        "teachers",
        multiple=True,
        default=("efficientnet_lite0",),
        show_default=True,
        metavar="SPEC",
        help="Teacher: efficientnet_lite0 (built in, ImageNet), torchvision:<arch>, "
        "timm:<name>, fkd:<arch> (an fkd train checkpoint via --weights), or "
        "package.module:factory. Repeat for an ensemble (probabilities averaged).",
    )(func)


def device_options(func: F) -> F:
    func = click.option(
        "--workers",
        type=click.IntRange(min=0),
        default=2,
        show_default=True,
        help="Image decode processes running ahead of the teacher (0: decode inline).",
    )(func)
    return click.option(
        "--device",
        default="auto",
        show_default=True,
        help="auto (CUDA when present, else CPU), cpu, cuda or cuda:N.",
    )(func)


def evaluation_options(batch_size: int) -> Callable[[F], F]:
    """--batch-size (images per forward) and --crop-pct, shared by the evaluation commands."""

    def decorate(func: F) -> F:
        func = click.option(
            "--crop-pct",
            type=click.FloatRange(0.1, 1.0),
            default=0.875,
            show_default=True,
            help="Resize the short side to input_size / crop_pct, then centre-crop.",
        )(func)
        return click.option(
            "--batch-size",
            type=click.IntRange(min=1),
            default=batch_size,
            show_default=True,
            help="Images per forward pass.",
        )(func)

    return decorate


def library_errors(func: F) -> F:
    """Turn library errors a user can cause into one-line click errors (exit status 1)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from fkd.errors import user_message

        try:
            return func(*args, **kwargs)
        except click.ClickException:
            raise
        except Exception as exc:
            message = user_message(exc)
            if message is None:
                raise
            raise click.ClickException(message) from exc

    return wrapper  # type: ignore[return-value]


def parse_pair(text: str, name: str) -> tuple[float, float]:
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise click.BadParameter(
            f"expected two numbers like 0.08,1.0, got {text!r}", param_hint=name
        ) from None
    return low, high


def parse_shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise click.BadParameter(
            f"expected i/n like 0/4, got {text!r}", param_hint="--shard"
        ) from None
    if not (count >= 1 and 0 <= index < count):
        raise click.BadParameter(f"expected 0 <= i < n, got {text!r}", param_hint="--shard")
    return index, count

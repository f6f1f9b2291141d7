"""Options and error handling shared by several ``fkd`` subcommands."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])
DEBUG_ENV = "FKD_DEBUG"


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
    """Answer the errors a user can fix (``FkdError``) with one ``Error:`` line.

    Exit status 1, or 2 (a usage error naming the flag) for an ``OptionError``.
    Any other exception is a bug and keeps its traceback; ``fkd --debug`` keeps
    the traceback of user errors too.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except click.ClickException:
            raise
        except Exception as exc:
            from fkd.errors import OptionError, user_message

            context = click.get_current_context(silent=True)
            message = user_message(exc, context.info_name if context else None)
            if message is None or debug_requested():
                raise
            if isinstance(exc, OptionError):
                raise click.BadParameter(message, param_hint=exc.option) from exc
            raise click.ClickException(message) from exc

    return wrapper  # type: ignore[return-value]


def debug_requested() -> bool:
    """Whether ``fkd --debug`` (or FKD_DEBUG=1) asked for tracebacks of user errors too."""
    context = click.get_current_context(silent=True)
    if context is not None and context.find_root().params.get("debug"):
        return True
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def check_option(option: str, check: Callable[[], object]) -> None:
    """Run the library's own validator of one option's value, before torch is imported.

    Its ``ValueError`` becomes a usage error naming ``option`` (exit status 2), so a
    bad value is refused in a fraction of a second, in the library's words.
    """
    try:
        check()
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


class RegistryChoice(click.Choice):
    """A ``click.Choice`` over a library registry's names, read when first needed.

    The registry is imported only when the option is used or its help shown, so
    ``fkd --help`` stays fast and the names are never restated here.
    """

    def __init__(self, names: Callable[[], Sequence[str]]) -> None:
        self._names = names
        self._choices: tuple[str, ...] | None = None
        self.case_sensitive = True

    @property
    def choices(self) -> tuple[str, ...]:
        if self._choices is None:
            self._choices = tuple(self._names())
        return self._choices

    @choices.setter
    def choices(self, value: Sequence[str]) -> None:
        self._choices = tuple(value)


def store_location(context: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Click callback for a store argument: a URL's file system must be installed.

    ``s3://...`` without s3fs is refused here, naming the package (exit status 1),
    instead of an ``ImportError`` from deep inside fsspec.
    """
    if value is None:
        return value
    from fkd.errors import MissingPackageError, UserInputError, require_url_support

    try:
        require_url_support(value)
    except MissingPackageError as exc:
        raise click.ClickException(str(exc)) from exc
    except UserInputError as exc:
        raise click.BadParameter(str(exc), context, param) from exc
    return value


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

"""How a command is built: click options from config dataclasses, and one-line errors.

``command(name, *configs)`` makes a click command whose options are the option fields
of ``configs`` (``fkd.options``): the command function receives one built, hence
checked, instance of each.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from fkd.cli.stopping import stops_cleanly
from fkd.exceptions import OptionError
from fkd.options import OptionField, option_fields

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")
DEBUG_ENV = "FKD_DEBUG"


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
            from fkd.cli.error_messages import user_message

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
    from fkd.cli.error_messages import MissingPackageError, UserInputError, require_url_support

    try:
        require_url_support(value)
    except MissingPackageError as exc:
        raise click.ClickException(str(exc)) from exc
    except UserInputError as exc:
        raise click.BadParameter(str(exc), context, param) from exc
    return value


# Click options built from config dataclasses (fkd.options) ----------------------


def command(
    name: str, *configs: type, stops: str | None = None
) -> Callable[[Callable[..., Any]], click.Command]:
    """A click command with the options of ``configs`` (``options_from``) that answers
    user errors in one line (``library_errors``), a config's own refusals included;
    ``stops``: what is kept when SIGTERM or Ctrl-C stops it (``stops_cleanly``)."""

    def decorate(func: Callable[..., Any]) -> click.Command:
        body = func if stops is None else stops_cleanly(stops)(func)
        return click.command(name)(library_errors(options_from(*configs)(body)))

    return decorate


def options_from(*configs: type) -> Callable[[F], F]:
    """Give the command a click parameter for every option field of ``configs``.

    In field order, each spelled, typed, ranged and helped as its field declares. The
    command is called with one instance of each config (built, hence validated, by the
    class itself: its ``OptionError`` is a usage error naming the flag), followed by
    the values of any click options declared apart. Put this decorator below
    ``@click.command`` and any such click options.
    """

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def command(**values: Any) -> Any:
            built: list[Any] = [build_config(config, values) for config in configs]
            return func(*built, **values)

        for config in reversed(configs):
            for item in reversed(option_fields(config)):
                command = click_parameter(item)(command)
        return command  # type: ignore[return-value]

    return decorate


def build_config(config: type[T], values: dict[str, Any]) -> T:
    """``config`` from its fields' click values (removed from ``values``); ``None`` from
    click (not given, no click default) leaves the field's own default, and so does an
    option with a ``cli_default`` that was not given."""
    given = {}
    context = click.get_current_context(silent=True)
    for item in option_fields(config):
        value = values.pop(item.name)
        if item.spec.cli_default is not None and not _given(context, item.name):
            continue  # the field keeps None: its __post_init__ derives the value
        if value is not None or item.required:
            given[item.name] = value
    try:
        return config(**given)
    except OptionError as exc:
        raise click.BadParameter(str(exc), param_hint=exc.option) from None


def _given(context: click.Context | None, name: str) -> bool:
    """Whether parameter ``name`` was given (command line, environment), not defaulted."""
    if context is None:
        return True
    return context.get_parameter_source(name) not in (None, ParameterSource.DEFAULT)


def click_parameter(item: OptionField) -> Callable[[F], F]:
    """The click option (or argument) that ``item`` declares."""
    spec = item.spec
    callback = _callback(item) if spec.parse or spec.store else None
    if spec.argument:
        return click.argument(item.name, type=click_type(item), callback=callback)
    names = [spec.flag, *([spec.short] if spec.short else []), item.name]
    if spec.flag_value is not None:  # the value may be left out: ``--resume`` alone
        return click.option(
            *names, is_flag=False, flag_value=spec.flag_value, metavar=spec.metavar, help=spec.help
        )
    if item.kind is bool:  # a flag; a field defaulting to True is turned off by its flag
        off: dict[str, Any] = {"default": True, "flag_value": False} if item.default else {}
        return click.option(*names, is_flag=True, help=spec.help, **off)
    default = None if item.required or item.default == () else item.default
    if spec.cli_default is not None:
        default = spec.cli_default
    if spec.parse is not None:
        default = spec.format(default) if spec.format and default is not None else None
    return click.option(
        *names,
        type=click_type(item),
        multiple=item.multiple,
        required=item.required,
        default=default,
        show_default=True if default is not None else None,
        metavar=spec.metavar,
        callback=callback,
        help=spec.help,
    )


def click_type(item: OptionField) -> click.ParamType | None:
    spec = item.spec
    if spec.parse is not None:
        return None
    if spec.choices is not None:
        if callable(spec.choices):
            return RegistryChoice(spec.choices)
        return click.Choice(list(spec.choices))
    if item.kind is Path or spec.path:
        path_type = Path if item.kind is Path else str
        return click.Path(path_type=path_type, file_okay=spec.file_okay, dir_okay=spec.dir_okay)
    if item.kind in (int, float) and (spec.low is not None or spec.high is not None):
        ranged = click.IntRange if item.kind is int else click.FloatRange
        low: Any = spec.low  # an int for an int field
        high: Any = spec.high
        return ranged(low, high, min_open=spec.low_open, max_open=spec.high_open)
    return click.types.convert_type(item.kind) if item.kind in (int, float) else None


def _callback(item: OptionField) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """Check a store location, then parse the text (its ``ValueError``: a usage error)."""
    spec = item.spec

    def callback(context: click.Context, param: click.Parameter, value: Any) -> Any:
        if spec.store:
            value = store_location(context, param, value)
        if spec.parse is None or value is None:
            return value
        try:
            return spec.parse(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint=spec.flag) from None

    return callback

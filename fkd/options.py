"""Options defined once: a config dataclass field carries its command-line option.

A field declares its default, flag, help text, range and choices in one place; the
option's description is kept in the field's metadata (an ``OptionSpec``)::

    @dataclass(frozen=True)
    class Config:
        data: Path = argument("DATA")
        topk: int = option("--topk", default=5, low=1, help="K: classes kept per crop.")
        label_type: str = option(
            "--label-type",
            default="hard",
            choices=names_from("fkd.storage_formats.label_codecs", "codec_names"),
            help="Label codec.",
        )

        def __post_init__(self) -> None:
            check_options(self)  # range and choices of every option, then cross-field checks

``fkd.cli.options.options_from(Config)`` builds the click options from these fields,
so a command never restates them. ``check_options`` validates the same declaration for
library callers, raising ``OptionError`` naming the flag (a usage error on the command
line). Torch-free and light: choices given as a function (a registry) are read only
when a value is checked or the help shown.
"""

from __future__ import annotations

import dataclasses
import importlib
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fkd.exceptions import OptionError

OPTION_KEY = "fkd.option"  # the field-metadata key holding its OptionSpec
Choices = Sequence[str] | Callable[[], Sequence[str]]


@dataclass(frozen=True)
class OptionSpec:
    """How one config field appears on the command line, and the values it accepts.

    ``low``/``high``: an inclusive range (``low_open``/``high_open``: that end excluded).
    ``choices``: the valid names, or a function returning them (a registry).
    ``parse``: command-line text -> the field's value (raises ``ValueError``), for
    values that are not one number or name (``--scale 0.08,1.0``); ``format`` writes
    the default back as text for ``--help``. ``argument``: a positional argument.
    ``store``: a store location (a path or an fsspec URL, checked by the command line).
    ``file_okay``/``dir_okay``: for a ``Path`` field, what the path may name; ``path``:
    a ``str`` field checked as such a path on the command line, kept as text.
    ``flag_value``: an option whose value may be left out (``--resume`` alone), taking
    this value then.
    ``cli_default``: for a field whose default is ``None`` because ``__post_init__``
    derives it from other fields, the value the command line shows and means when the
    option is not given; the field is then left ``None``, so the derivation still runs
    and an explicit value can be told from an absent one (``-m``: 200 unless
    ``--for-epochs`` sizes it).
    """

    flag: str
    help: str = ""
    short: str | None = None
    metavar: str | None = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: Choices | None = None
    parse: Callable[[str], Any] | None = None
    format: Callable[[Any], str] | None = None
    argument: bool = False
    store: bool = False
    file_okay: bool = True
    dir_okay: bool = True
    path: bool = False
    flag_value: str | None = None
    cli_default: Any = None

    def choice_names(self) -> tuple[str, ...] | None:
        if self.choices is None:
            return None
        names = self.choices() if callable(self.choices) else self.choices
        return tuple(names)

    def describe_range(self) -> str:
        """The range as click words it: ``1<=x<=65536``, ``x>=1``, ``x>0``, ``0<=x<1``."""
        low = f"{self.low}{'<' if self.low_open else '<='}" if self.low is not None else ""
        if self.high is None:
            return f"x{'>' if self.low_open else '>='}{self.low}"
        return f"{low}x{'<' if self.high_open else '<='}{self.high}"


def option(
    flag: str,
    short: str | None = None,
    *,
    default: Any = dataclasses.MISSING,
    default_factory: Any = dataclasses.MISSING,
    **spec: Any,
) -> Any:
    """A dataclass field that is a command-line option: its default (none: required) and,
    in its metadata, its ``OptionSpec`` (``spec``: the spec's other fields)."""
    return dataclasses.field(
        default=default,
        default_factory=default_factory,
        metadata={OPTION_KEY: OptionSpec(flag, short=short, **spec)},
    )


def probability(flag: str, default: float, help: str, **spec: Any) -> Any:
    """An option whose value is a probability or weight in [0, 1] (``spec``: e.g.
    ``high_open=True``)."""
    return option(flag, default=default, low=0, high=1, help=help, **spec)


def argument(name: str, **spec: Any) -> Any:
    """A dataclass field that is a positional argument (``name`` as shown, e.g. ``DATA``)."""
    return dataclasses.field(metadata={OPTION_KEY: OptionSpec(name, argument=True, **spec)})


@dataclass(frozen=True)
class OptionField:
    """A config field that declares an option, with what its type says about it.

    ``kind``: bool, int, float, str, Path, or the declared type for a parsed value;
    ``multiple``: a ``tuple[X, ...]`` field (a repeatable option); ``default``:
    ``dataclasses.MISSING`` for a required one.
    """

    name: str
    spec: OptionSpec
    kind: Any
    multiple: bool
    default: Any

    @property
    def required(self) -> bool:
        return self.default is dataclasses.MISSING


_FIELDS: dict[type, tuple[OptionField, ...]] = {}


def option_fields(cls: type) -> tuple[OptionField, ...]:
    """The fields of dataclass ``cls`` that declare an option, in field order."""
    if cls not in _FIELDS:
        _FIELDS[cls] = _option_fields(cls)
    return _FIELDS[cls]


def _option_fields(cls: type) -> tuple[OptionField, ...]:
    hints = typing.get_type_hints(cls)
    found = []
    for item in dataclasses.fields(cls):
        spec = item.metadata.get(OPTION_KEY)
        if spec is None:
            continue
        kind, multiple = _kind(hints[item.name])
        if spec.parse is not None:  # one text parsed whole (``3,5,7-9``), not repeated
            kind, multiple = hints[item.name], False
        default = item.default
        if default is dataclasses.MISSING and item.default_factory is not dataclasses.MISSING:
            default = item.default_factory()
        found.append(OptionField(item.name, spec, kind, multiple, default))
    return tuple(found)


def _kind(hint: Any) -> tuple[Any, bool]:
    """(the value's type, repeatable) for ``X``, ``X | None`` and ``tuple[X, ...]``."""
    hint = _without_none(hint)
    args = typing.get_args(hint)
    if typing.get_origin(hint) is tuple and len(args) == 2 and args[1] is Ellipsis:
        return _without_none(args[0]), True
    return hint, False


def _without_none(hint: Any) -> Any:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        kept = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(kept) == 1:
            return kept[0]
    return hint


def check_options(config: object) -> None:
    """Check every declared option's value against its range and choices.

    Raises ``OptionError`` naming the flag, its message naming the field (the keyword a
    library caller gave); ``None`` (an unset optional value) passes.
    """
    for item in option_fields(type(config)):
        value = getattr(config, item.name)
        for one in value if item.multiple else (value,):
            if one is not None:
                check_value(item, one)


def check_value(item: OptionField, value: Any) -> None:
    spec = item.spec
    if item.kind in (int, float) and not isinstance(value, bool):
        below = spec.low is not None and (value <= spec.low if spec.low_open else value < spec.low)
        above = spec.high is not None and (
            value >= spec.high if spec.high_open else value > spec.high
        )
        if below or above:
            raise OptionError(
                spec.flag, f"{item.name}: {value} is not in the range {spec.describe_range()}"
            )
    names = spec.choice_names()
    if names is not None and value not in names:
        raise OptionError(
            spec.flag,
            f"{item.name}: {value!r} is not one of {', '.join(repr(name) for name in names)}",
        )


def option_check(flag: str, check: Callable[[], object]) -> None:
    """Run a library validator (a spec's constructor...); its ``ValueError`` becomes an
    ``OptionError`` naming ``flag``, in the validator's own words."""
    try:
        check()
    except OptionError:
        raise
    except ValueError as exc:
        raise OptionError(flag, str(exc)) from None


def names_from(module: str, attribute: str) -> Callable[[], tuple[str, ...]]:
    """Choices read from a registry when first needed: ``module.attribute`` (called if a
    function), so declaring an option imports nothing heavy."""

    def names() -> tuple[str, ...]:
        found = getattr(importlib.import_module(module), attribute)
        return tuple(found() if callable(found) else found)

    return names


def parse_two(text: str, sep: str, convert: Callable[[str], Any], example: str) -> Any:
    """Two values written ``A<sep>B`` (``0.08,1.0``, ``0/4``); ``ValueError`` naming
    ``example`` otherwise."""
    try:
        first, second = (convert(part) for part in text.split(sep))
    except ValueError:
        raise ValueError(f"expected {example}, got {text!r}") from None
    return first, second


def parse_pair(text: str) -> tuple[float, float]:
    """``0.08,1.0`` -> (0.08, 1.0)."""
    return parse_two(text, ",", float, "two numbers like 0.08,1.0")


def format_pair(pair: tuple[float, float]) -> str:
    return ",".join(str(value) for value in pair)


__all__ = [
    "OPTION_KEY",
    "OptionField",
    "OptionSpec",
    "argument",
    "check_options",
    "format_pair",
    "names_from",
    "option",
    "option_check",
    "option_fields",
    "parse_pair",
    "parse_two",
]

"""The label codec registry: each codec class under its name, duplicates refused.

It imports nothing of the store, so both sides can use it without a circle:
``CodecSpec`` (``spec.py``) checks its codec name and K here, and the codecs
(``label_codecs.py``, which take a ``CodecSpec``) register here when that module is
imported, which ``import fkd.storage_formats`` always does.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol, TypeVar


class NamedCodec(Protocol):
    """What the registry reads of a codec class: its name."""

    name: ClassVar[str]


C = TypeVar("C", bound=type[NamedCodec])
_REGISTRY: dict[str, type[Any]] = {}


def register_codec(cls: C) -> C:
    """Class decorator: register a codec under ``cls.name``; duplicates are refused."""
    if cls.name in _REGISTRY:
        raise ValueError(f"label codec {cls.name!r} is already registered")
    _REGISTRY[cls.name] = cls
    return cls


def codec_names() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def codec_class(name: str) -> type[Any]:
    """The codec class registered as ``name`` (a ``label_codecs.LabelCodec`` subclass)."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown label codec {name!r}; known codecs are {list(codec_names())}"
        ) from None

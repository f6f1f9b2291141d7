"""Plain-dict round trips of the small frozen option dataclasses (``LossConfig``, ``MixConfig``).

``to_dict`` is ``dataclasses.asdict``; ``from_dict`` refuses keys the class does not
know, naming the ones it does, so a typo in a saved config fails loudly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


def from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
    """``cls(**data)``, refusing (``ValueError``) keys that are not fields of ``cls``."""
    known = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown keys {unknown}; known keys are {known}")
    return cls(**data)

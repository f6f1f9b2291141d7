"""A package's public names imported from their modules on first use (PEP 562).

``fkd.train`` and ``fkd.generate`` re-export names from modules that import torch; a
package that declares ``__getattr__, __dir__ = lazy_exports(__name__, HOMES)`` loads
none of them at import, so a command checks its options before heavy imports.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, homes: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module ``__getattr__`` and ``__dir__`` of ``package``, whose public name
    ``name`` lives in module ``homes[name]``; a name, once imported, is kept."""

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(homes))

    return __getattr__, __dir__


__all__ = ["lazy_exports"]

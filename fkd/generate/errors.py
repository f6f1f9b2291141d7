"""``GenerateError``: why a generation run cannot go on."""

from __future__ import annotations

from fkd.exceptions import FkdError


class GenerateError(FkdError, RuntimeError):
    """A generation run cannot go on; the message says why and what to do."""


__all__ = ["GenerateError"]

"""The error of the model registry (its own module, so every models module may raise it)."""

from __future__ import annotations

from fkd.exceptions import UserInputError

__all__ = ["ModelError"]


class ModelError(UserInputError):
    """An architecture name or option the user has to fix."""

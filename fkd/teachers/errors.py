"""The teacher error, and turning the errors of the layers below into it."""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from fkd.exceptions import UserInputError
from fkd.models.errors import ModelError
from fkd.weights import WeightsFileError

__all__ = ["TeacherError", "as_teacher_error", "close_matches"]


class TeacherError(UserInputError):
    """A teacher spec, weights file or ensemble that the user has to fix."""


@contextmanager
def as_teacher_error(spec: str | None = None) -> Iterator[None]:
    """Raise a weights-file or model-registry error as a TeacherError (naming ``spec``)."""
    try:
        yield
    except (ModelError, WeightsFileError) as exc:
        prefix = "" if spec is None else f"teacher {spec!r}: "
        raise TeacherError(f"{prefix}{exc}") from exc


def close_matches(name: str, candidates: Sequence[str]) -> str:
    """``"; did you mean a, b?"`` for the candidates close to ``name``, else ``""``."""
    close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.6)
    return f"; did you mean {', '.join(close)}?" if close else ""

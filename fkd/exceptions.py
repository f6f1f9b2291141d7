"""The root of fkd's errors a user can fix (imports nothing, so every layer may use it).

The command line answers an ``FkdError`` with its message on one ``Error:`` line
(exit status 1; 2 for an ``OptionError``, a usage error). Any other exception is a
bug and keeps its traceback. ``fkd --debug`` shows the traceback of user errors too.
"""

from __future__ import annotations


class FkdError(Exception):
    """Something the user can fix; ``str(error)`` is the whole answer: what, where, what to do."""


class UserInputError(FkdError, ValueError):
    """A value the user gave is not valid (still a ``ValueError`` for library callers)."""


class OptionError(UserInputError):
    """A command-line option's value is not valid; ``option`` names the flag (e.g. ``--topk``).

    For checks only the run can make (``--topk`` against the teacher's class count):
    the command line answers it as a usage error, exit status 2.
    """

    def __init__(self, option: str, message: str) -> None:
        super().__init__(message)
        self.option = option


def short_reason(exc: BaseException) -> str:
    """One line saying why ``exc`` happened: ``"TypeName: first line"``.

    Library messages often span many lines; for ``torch.load(weights_only=True)`` the
    line after ``WeightsUnpickler error:`` is the reason, up to its first sentence.
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    marker = "WeightsUnpickler error:"
    for line in lines:
        if marker in line:
            return f"{type(exc).__name__}: {line.split(marker, 1)[1].strip().split('. ', 1)[0]}"
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


__all__ = ["FkdError", "OptionError", "UserInputError", "short_reason"]

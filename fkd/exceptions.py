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


__all__ = ["FkdError", "OptionError", "UserInputError"]

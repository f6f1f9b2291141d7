"""The errors a user can cause, gathered for the command line's error mapping."""

from __future__ import annotations

from fkd.storage_formats.errors import WRITE_ERRNOS


def user_errors() -> tuple[type[BaseException], ...]:
    """Exception types whose message is a complete one-line answer for the user.

    Imported lazily so that ``fkd --help`` does not import torch.
    """
    from fkd.generate import GenerateError
    from fkd.images import ImageSourceError
    from fkd.legacy import LegacyFormatError
    from fkd.storage_formats.errors import StoreError
    from fkd.teachers import TeacherError

    return (
        StoreError,
        GenerateError,
        ImageSourceError,
        TeacherError,
        LegacyFormatError,
        ValueError,
        FileNotFoundError,
    )


def user_message(exc: BaseException) -> str | None:
    """The one-line message for an error the user can fix, or ``None`` for a bug.

    Besides ``user_errors()``, a file-system refusal to write (disk full, quota,
    file-size limit, I/O error, read-only file system) raised outside the store
    layer (which words its own) is answered with what to fix and that re-running
    the same command resumes: a label store never reads an uncommitted block.
    """
    if isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS:
        what, fix = WRITE_ERRNOS[exc.errno]
        where = exc.filename or "a file"
        fix = fix.format(store="it")
        return (
            f"writing {where} failed: {what}; {fix}, then re-run the same command "
            "(`fkd generate` resumes from its committed blocks)"
        )
    from fkd.storage_formats.errors import StoreError

    if isinstance(exc, StoreError):  # answered without importing torch (fkd inspect, verify)
        return " ".join(str(exc).split())
    if isinstance(exc, user_errors()):
        return " ".join(str(exc).split()) or type(exc).__name__
    return None

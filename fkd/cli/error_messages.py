"""How the command line answers an error: one line for what the user can fix, else a bug.

User errors are ``fkd.exceptions.FkdError`` (store, teacher, image-source, generate,
train... errors all derive from it), plus a file system refusing a write. Anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

from fkd.exceptions import FkdError, OptionError, UserInputError
from fkd.storage_formats.errors import WRITE_ERRNOS

RESUMING_COMMANDS = ("generate",)  # re-running them continues from the committed blocks


class MissingPackageError(FkdError):
    """An optional package a requested feature needs is not installed."""


def user_message(exc: BaseException, command: str | None = None) -> str | None:
    """The one-line message for an error the user can fix, or ``None`` for a bug.

    A file-system refusal to write (disk full, quota, file-size limit, I/O error,
    read-only file system) raised outside the store layer (which words its own) is
    answered with what to fix; for ``fkd generate`` also that re-running the same
    command resumes (a label store never reads an uncommitted block).
    """
    if isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS:
        what, fix = WRITE_ERRNOS[exc.errno]
        where = exc.filename or "a file"
        fix = fix.format(store="it")
        resumes = (
            " (`fkd generate` resumes from its committed blocks)"
            if command in RESUMING_COMMANDS
            else ""
        )
        return f"writing {where} failed: {what}; {fix}, then re-run the same command{resumes}"
    if isinstance(exc, FkdError):
        return " ".join(str(exc).split()) or type(exc).__name__
    return None


def require_url_support(location: str) -> None:
    """Refuse, naming the package to install, an fsspec URL whose file system is missing.

    ``fkd inspect s3://bucket/x`` without s3fs would otherwise fail deep inside
    fsspec with an ``ImportError``. Local paths and known protocols pass untouched.
    """
    protocol, sep, _ = location.partition("://")
    if not sep or not protocol or protocol == "file":
        return
    import fsspec
    from fsspec.registry import known_implementations

    try:
        fsspec.get_filesystem_class(protocol)
    except ImportError as exc:
        known = known_implementations.get(protocol, {})
        package = str(known.get("class", "")).split(".", 1)[0]
        if package and package != "fsspec":
            how = f"{package}, which is not installed: pip install {package}"
        else:  # fsspec's own file systems name their requirements in "err"
            how = f"packages that are not installed ({known.get('err') or exc})"
        raise MissingPackageError(f"{location}: reading {protocol}:// URLs needs {how}") from exc
    except ValueError as exc:  # fsspec: "Protocol not known"
        raise UserInputError(
            f"{location}: unknown URL protocol {protocol!r} (fsspec knows "
            f"{', '.join(sorted(known_implementations)[:12])}, ...)"
        ) from exc


__all__ = [
    "FkdError",
    "MissingPackageError",
    "OptionError",
    "UserInputError",
    "require_url_support",
    "user_message",
]

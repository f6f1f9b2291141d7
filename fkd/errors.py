"""The errors a user can cause, gathered for the command line's error mapping."""

from __future__ import annotations


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

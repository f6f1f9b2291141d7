"""Exceptions raised by the torch-free store layer.

Every message names the thing at fault (store, array, block, image) and, where
there is one, the fix.
"""

from __future__ import annotations

import errno

from fkd.exceptions import FkdError


class StoreError(FkdError):
    """Base class for every problem with a label store."""


class StoreFormatError(StoreError):
    """The store's metadata is not a valid fkd store (or is one we refuse to read)."""


class UncommittedBlockError(StoreError):
    """A read touched a block whose commit marker is missing."""


class CorruptChunkError(StoreError):
    """A chunk failed its checksum or could not be decoded.

    ``what`` says what is wrong; the message adds how to repair it (``repair_advice``),
    which ``fkd verify`` leaves out of its own list of problems.
    """

    def __init__(self, what: str, advice: str = "") -> None:
        self.what = what
        super().__init__(f"{what}; {advice}" if advice else what)


def repair_advice(writer: str, blocks: list[int]) -> str:
    """How to repair damage to an array written by ``writer`` in ``blocks``."""
    if writer == "create":
        return (
            "the image list is written once, with the store: make the store again with "
            "the `fkd generate` command that made it plus --overwrite"
        )
    shown = ",".join(str(b) for b in blocks[:10])
    return (
        "run `fkd verify` to list every damaged block, then re-label them with the "
        f"`fkd generate` command that made the store plus --redo-blocks {shown}"
    )


class StoreExistsError(StoreError):
    """Creating a store where one already exists, without ``overwrite``."""


class StoreWriteError(StoreError):
    """The file system refused a write (disk full, file-size limit, I/O error).

    Committed blocks are untouched and uncommitted ones are never read, so the
    store stays resumable: the message says what to fix, then re-run.
    """


class UnsafePathError(StoreFormatError):
    """A chunk file of a local store is a link leading outside the store's folder."""


# errno -> (what happened, what to do); ``{store}`` is the store's location.
WRITE_ERRNOS: dict[int, tuple[str, str]] = {
    errno.ENOSPC: ("no space left on the device", "free space on the disk holding {store}"),
    errno.EDQUOT: ("disk quota exceeded", "free space or raise the quota for {store}"),
    errno.EFBIG: ("file too large for a file-size limit", "raise the limit (ulimit -f)"),
    errno.EIO: ("an I/O error", "check the disk holding {store}"),
    errno.EROFS: ("a read-only file system", "make {store} writable"),
}


def write_failure(exc: BaseException, store: str) -> StoreWriteError | None:
    """A one-line ``StoreWriteError`` for an ``OSError`` of ``WRITE_ERRNOS``, else ``None``."""
    if not isinstance(exc, OSError) or exc.errno not in WRITE_ERRNOS:
        return None
    what, fix = WRITE_ERRNOS[exc.errno]
    where = f" ({exc.filename})" if exc.filename else ""
    return StoreWriteError(
        f"{store}: a write failed: {what}{where}; committed blocks are intact and "
        f"uncommitted ones are never read: {fix.format(store=store)}, then re-run the "
        "same command to resume"
    )

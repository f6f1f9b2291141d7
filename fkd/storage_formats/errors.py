"""Exceptions raised by the torch-free store layer.

Every message names the thing at fault (store, array, block, image) and, where
there is one, the fix.
"""


class StoreError(Exception):
    """Base class for every problem with a label store."""


class StoreFormatError(StoreError):
    """The store's metadata is not a valid fkd store (or is one we refuse to read)."""


class UncommittedBlockError(StoreError):
    """A read touched a block whose commit marker is missing."""


class CorruptChunkError(StoreError):
    """A chunk failed its checksum or could not be decoded."""


class StoreExistsError(StoreError):
    """Creating a store where one already exists, without ``overwrite``."""

"""A local zarr store that never reads or writes outside its folder."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

from zarr.storage import LocalStore

from fkd.storage_formats.errors import UnsafePathError


class ContainedLocalStore(LocalStore):
    """A ``LocalStore`` that never reads or writes outside its folder.

    A store copied from elsewhere may hold a symlink (a chunk file, or a folder
    such as ``label_index/c``) leading out of the store, e.g. to a private key;
    following it would read (or, on resume, write) a file the store does not own.
    Every key's real path must lie under the store's real path, for reads, writes,
    deletes, existence checks and listings alike (a resume deletes an uncommitted
    block's shards before rewriting them); links inside the store are allowed.  The
    check costs one ``realpath`` per key.
    """

    def contained(self, key: str) -> str:
        root = os.path.realpath(self.root)
        real = os.path.realpath(self.root / key)
        if real != root and not real.startswith(root + os.sep):
            raise UnsafePathError(
                f"{self.root}: {key} leads outside the store (to {real}); refused: "
                "replace the link with the file itself or regenerate the store"
            )
        return key

    def get_sync(self, key: str, **kwargs: Any) -> Any:
        return super().get_sync(self.contained(key), **kwargs)

    async def delete(self, key: str) -> None:
        await super().delete(self.contained(key))

    async def delete_dir(self, prefix: str) -> None:
        await super().delete_dir(self.contained(prefix))

    async def exists(self, key: str) -> bool:
        return await super().exists(self.contained(key))

    async def list_dir(self, prefix: str) -> AsyncIterator[str]:
        async for name in super().list_dir(self.contained(prefix)):
            yield name

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        async for key in super().list_prefix(self.contained(prefix)):
            yield self.contained(key)

    def set_sync(self, key: str, value: Any) -> None:
        super().set_sync(self.contained(key), value)

    async def get(self, key: str, prototype: Any = None, byte_range: Any = None) -> Any:
        return await super().get(self.contained(key), prototype, byte_range)

    async def get_partial_values(self, prototype: Any, key_ranges: Any) -> Any:
        checked = [(self.contained(key), byte_range) for key, byte_range in key_ranges]
        return await super().get_partial_values(prototype, checked)

    async def _set(self, key: str, value: Any, exclusive: bool = False) -> None:
        await super()._set(self.contained(key), value, exclusive)

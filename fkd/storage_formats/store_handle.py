"""What every part of a ``LabelStore`` shares: its arrays, its blocks, which are committed.

``LabelStore`` (``label_store.py``) is this handle plus the reader
(``store_reader.py``) and the block writer (``block_commit.py``).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import zarr
from numpy.typing import NDArray
from zarr.abc.store import Store
from zarr.core.sync import sync
from zarr.storage import LocalStore

from fkd.storage_formats import bounded_codecs
from fkd.storage_formats.block_chunk_reader import BlockChunkReader
from fkd.storage_formats.contained_local_store import ContainedLocalStore
from fkd.storage_formats.errors import CorruptChunkError, StoreError, repair_advice
from fkd.storage_formats.label_codecs import LabelCodec, get_codec
from fkd.storage_formats.layout import COMMIT_ARRAY, COMMITTED, chunk_key, store_layout
from fkd.storage_formats.manifest import Manifest
from fkd.storage_formats.shard_reader import ShardRowReader
from fkd.storage_formats.spec import StoreSpec


class StoreHandle:
    """The state every part of a ``LabelStore`` shares: its spec, arrays and blocks.

    It also holds the caches the reader fills (per-image arrays, the manifest, the
    direct chunk readers), which a block write invalidates.
    """

    def __init__(self, group: zarr.Group, spec: StoreSpec, location: str, read_only: bool) -> None:
        self.group = group
        self.spec = spec
        self.location = location
        self.read_only = read_only
        self.layout = store_layout(spec)
        self.codec: LabelCodec = get_codec(spec.codec)
        self._arrays: dict[str, Any] = {}
        self._per_image: dict[str, NDArray[Any]] = {}
        self._per_image_mask: NDArray[np.bool_] | None = None
        self._committed: NDArray[np.bool_] | None = None
        self._readers: dict[str, ShardRowReader] | None = None
        self._manifest: Manifest | None = None
        self._block_readers: dict[str, BlockChunkReader | None] = {}

    # Blocks ------------------------------------------------------------------

    @property
    def num_blocks(self) -> int:
        return self.spec.num_blocks

    def block_range(self, block: int) -> tuple[int, int]:
        return self.spec.block_range(block)

    def block_of(self, image: int) -> int:
        return image // self.spec.block_size

    def committed_mask(self, refresh: bool = False) -> NDArray[np.bool_]:
        """One bool per block: is its commit marker present?

        Read once per handle (``refresh`` reads again, to see other writers' commits);
        this handle's own commits update it.  A local or zipped store answers with one
        listing of the markers' folder; any other store reads the marker array.
        """
        if self._committed is None or refresh:
            listed = commit_listing(self.group.store_path.store, self.num_blocks)
            if listed is None:
                listed = np.asarray(self._read(COMMIT_ARRAY, slice(None))) == COMMITTED
            self._committed = listed
        return self._committed

    def is_committed(self, block: int) -> bool:
        """Whether ``block``'s marker is present now (one existence check)."""
        key = chunk_key(self.layout[COMMIT_ARRAY], block)
        return bool(sync(self.group.store_path.store.exists(key)))

    def committed_blocks(self) -> list[int]:
        return [int(b) for b in np.flatnonzero(self.committed_mask(refresh=True))]

    def uncommitted_blocks(self) -> list[int]:
        return [int(b) for b in np.flatnonzero(~self.committed_mask(refresh=True))]

    def is_complete(self) -> bool:
        return bool(self.committed_mask(refresh=True).all())

    # Internals ------------------------------------------------------------------

    def array(self, name: str) -> Any:
        """The zarr array ``name`` (writable with empty chunks kept, when the store is)."""
        return self._array(name)

    def _array(self, name: str) -> Any:
        if name not in self._arrays:
            array: Any = bounded_codecs.bounded(self.group[name])
            if not self.read_only:
                # Every chunk of a committed block exists, even one of all zeros, so a lost
                # chunk file is detectable (``fkd verify``) rather than read as fill values.
                array = array.with_config({"write_empty_chunks": True})
            self._arrays[name] = array
        return self._arrays[name]

    def _read(self, name: str, selection: Any) -> NDArray[Any]:
        """Read ``array[selection]`` (orthogonal), naming the array if a chunk is bad."""
        try:
            array = self._array(name)
            if isinstance(selection, np.ndarray):
                return np.asarray(array.get_orthogonal_selection(selection))
            return np.asarray(array[selection])
        except StoreError:
            raise
        except Exception as exc:
            where = describe_selection(selection)
            raise CorruptChunkError(
                f"{self.location}: array {name!r}, {where}: unreadable chunk "
                f"({type(exc).__name__}: {exc})",
                self._repair_advice(name, selection),
            ) from exc

    def _repair_advice(self, name: str, selection: Any) -> str:
        """``repair_advice`` for a failed read of ``selection`` (rows) of array ``name``."""
        layout, size = self.layout[name], self.spec.block_size
        if layout.writer != "block":
            return repair_advice(layout.writer, [])
        if isinstance(selection, slice):
            start, stop, _ = selection.indices(self.spec.num_images)
            blocks = list(range(start // size, (stop - 1) // size + 1)) if stop > start else []
        else:
            blocks = np.unique(np.asarray(selection, dtype=np.int64) // size).tolist()
        return repair_advice(layout.writer, blocks)


def commit_listing(store: Store, num_blocks: int) -> NDArray[np.bool_] | None:
    """The committed mask from one listing of ``block_commit/c``, where listing is exact.

    A local store lists its folder (``os.scandir``: no file is opened); a zipped one
    its directory.  Other stores (HTTP may not list at all) return ``None``: read the
    markers instead.  zarr writes each chunk to a temporary and renames it, so a
    marker that exists is whole; only names ``0 .. num_blocks - 1`` count.
    """
    from zarr.storage import ZipStore

    prefix = f"{COMMIT_ARRAY}/c"
    if isinstance(store, LocalStore):
        if isinstance(store, ContainedLocalStore):
            store.contained(prefix)
        try:
            with os.scandir(store.root / prefix) as entries:
                names = [entry.name for entry in entries]
        except (FileNotFoundError, NotADirectoryError):
            names = []
        except OSError as exc:
            raise StoreError(f"cannot list {store.root / prefix}: {exc}") from exc
    elif isinstance(store, ZipStore):

        async def listed() -> list[str]:
            return [name async for name in store.list_dir(prefix)]

        names = sync(listed())
    else:
        return None
    mask = np.zeros(num_blocks, dtype=bool)
    blocks = [int(n) for n in names if n.isascii() and n.isdigit() and str(int(n)) == n]
    mask[[b for b in blocks if b < num_blocks]] = True
    return mask


def describe_selection(selection: Any) -> str:
    if isinstance(selection, np.ndarray) and selection.size:
        return f"images {int(selection.min())}..{int(selection.max())}"
    if isinstance(selection, slice) and selection.start is not None:
        return f"images {selection.start}..{selection.stop}"
    if isinstance(selection, (int, np.integer)):
        return f"index {int(selection)}"
    return "whole array"

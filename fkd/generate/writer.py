"""Writing off the critical path: ``BlockWriter``, a background thread that hands each
finished block to ``LabelStore.write_block``, so the teacher never waits on disk.

The commit itself (whole shards first, the block's commit marker last, so readers and
resume never see half a block) is ``LabelStore.write_block`` in ``fkd.storage_formats``
(the torch-free store reader and writer)."""

from __future__ import annotations

import queue
import threading
import time

from fkd.generate.errors import GenerateError
from fkd.storage_formats import BlockData, LabelStore, StoreError


class BlockWriter:
    """A background thread writing finished blocks, so the teacher never waits on disk."""

    def __init__(self, store: LabelStore, depth: int = 2) -> None:
        self.store = store
        self.queue: queue.Queue[tuple[int, BlockData] | None] = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.seconds = 0.0
        self.seconds_by_block: dict[int, float] = {}
        self.thread = threading.Thread(target=self._run, name="fkd-block-writer", daemon=True)
        self.thread.start()

    def put(self, block: int, data: BlockData) -> None:
        self._raise_if_failed()
        self.queue.put((block, data))

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()
        self._raise_if_failed()

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            if self.error is not None:
                continue
            start = time.perf_counter()
            try:
                self.store.write_block(*item)
            except BaseException as exc:  # re-raised in the caller's thread
                self.error = exc
            elapsed = time.perf_counter() - start
            self.seconds += elapsed
            self.seconds_by_block[item[0]] = elapsed

    def _raise_if_failed(self) -> None:
        if isinstance(self.error, StoreError):  # already says what to fix and to re-run
            raise GenerateError(str(self.error)) from self.error
        if self.error is not None:
            raise GenerateError(
                f"writing to {self.store.location} failed: {self.error}; the blocks written "
                "so far are committed: fix the cause and re-run the same command to resume"
            ) from self.error


__all__ = ["BlockWriter"]

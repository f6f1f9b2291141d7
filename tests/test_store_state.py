"""A stateful property test of the block protocol: writes, kills mid-write, resumes, reads.

Hypothesis drives a real on-disk ``LabelStore`` through random sequences of:
committing a block; a writer killed mid-block (its arrays written, some chunk files then
truncated or deleted, no marker; or the marker lost after the data); a killed atomic
re-write of a committed block (a torn ``*.partial`` temporary beside its files); a
resume (rewrite every uncommitted block); reads through fresh handles; verify.
Invariants after every step: the committed blocks on disk are exactly the model's,
and every committed block's chunk files hold the bytes it was committed with.  Reads
of committed blocks return the block's data; reads touching an uncommitted block raise
``UncommittedBlockError`` and never return data.
"""

from __future__ import annotations

import shutil
import tempfile
from functools import cache
from pathlib import Path

import numpy as np
from fault_tools.store_files import block_digest, block_files
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from store_factory import block_data, make_spec, write_store

from fkd.storage_formats import LabelStore, UncommittedBlockError
from fkd.storage_formats.layout import COMMIT_ARRAY
from fkd.storage_formats.verify import verify_store

SPEC = make_spec(num_images=10, block_size=2, crops=4)
BLOCKS = SPEC.num_blocks
block_ids = st.integers(0, BLOCKS - 1)


@cache
def reference() -> tuple[Path, dict[int, str | None]]:
    """A complete store of the same spec: every block's committed bytes."""
    path = Path(tempfile.mkdtemp(prefix="fkd-state-ref-")) / "s.zarr"
    write_store(path, SPEC)
    return path, {b: block_digest(path, b) for b in range(BLOCKS)}


@cache
def reference_images(block: int) -> dict[str, np.ndarray]:
    batch = LabelStore.open(reference()[0]).read_images(np.arange(*SPEC.block_range(block)))
    return {"height": batch.height, "boxes": batch.boxes, **batch.labels}


class BlockProtocol(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="fkd-state-"))
        self.path = self.folder / "s.zarr"
        write_store(self.path, SPEC, blocks=[])
        self.writer = LabelStore.open(self.path, mode="r+")
        self.committed: set[int] = set()

    def teardown(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def marker(self, block: int) -> Path:
        return self.path / COMMIT_ARRAY / "c" / str(block)

    def written_files(self, block: int) -> list[Path]:
        """The chunk files a block's writer writes (not the manifest's, written at creation)."""
        created = [n for n, a in self.writer.layout.items() if a.writer == "create"]
        return [
            p for p in block_files(self.path, block)
            if p.relative_to(self.path).parts[0] not in created
        ]  # fmt: skip

    # Rules ---------------------------------------------------------------------------

    @rule(block=block_ids)
    def commit(self, block: int) -> None:
        """A writer finishes a block (re-running a committed one writes the same bytes)."""
        self.writer.write_block(block, block_data(SPEC, block))
        self.committed.add(block)

    @rule(block=block_ids, data=st.data())
    def killed_before_the_marker(self, block: int, data: st.DataObject) -> None:
        """A writer killed after some of a block's arrays: files torn, deleted, no marker."""
        if block in self.committed:
            return  # a committed block is only ever rewritten whole (see torn_rewrite)
        start, stop = SPEC.block_range(block)
        arrays = self.writer._block_arrays(block, block_data(SPEC, block), stop - start)
        for name, values in arrays.items():  # what write_block does, up to the marker
            self.writer._write_rows(name, block, values, fresh=True)
        for path in self.written_files(block):
            action = data.draw(st.sampled_from(["keep", "truncate", "delete"]), label=path.name)
            if action == "delete" and path.is_file():
                path.unlink()
            elif action == "truncate" and path.is_file():
                raw = path.read_bytes()
                path.write_bytes(raw[: data.draw(st.integers(0, max(len(raw) - 1, 0)))])
        assert not self.marker(block).exists()

    @rule(block=block_ids)
    def killed_between_data_and_marker(self, block: int) -> None:
        """All of a block's data written, the marker not (removed here, before anyone looks)."""
        if block in self.committed:
            return
        self.writer.write_block(block, block_data(SPEC, block))
        self.marker(block).unlink()

    @precondition(lambda self: self.committed)
    @rule(data=st.data())
    def torn_rewrite_of_a_committed_block(self, data: st.DataObject) -> None:
        """A re-run killed while rewriting a committed block: zarr writes each file to a
        temporary and renames it, so the kill leaves a torn temporary, never a torn file."""
        block = data.draw(st.sampled_from(sorted(self.committed)))
        target = data.draw(st.sampled_from(block_files(self.path, block)))
        raw = target.read_bytes()
        partial = target.with_suffix(f".{data.draw(st.uuids()).hex}.partial")
        partial.write_bytes(raw[: data.draw(st.integers(0, len(raw)))])

    @rule()
    def resume(self) -> None:
        """The same command again: exactly the uncommitted blocks are rewritten."""
        handle = LabelStore.open(self.path, mode="r+")
        for block in handle.uncommitted_blocks():
            handle.write_block(block, block_data(SPEC, block))
        self.committed = set(range(BLOCKS))

    @rule(blocks=st.lists(block_ids, min_size=1, max_size=3))
    def read(self, blocks: list[int]) -> None:
        reader = LabelStore.open(self.path)
        index = np.concatenate([np.arange(*SPEC.block_range(b)) for b in blocks])
        if set(blocks) <= self.committed:
            batch = reader.read_images(index)
            for position, block in enumerate(blocks):
                rows = slice(2 * position, 2 * position + 2)
                expected = reference_images(block)
                np.testing.assert_array_equal(batch.height[rows], expected["height"])
                np.testing.assert_array_equal(batch.boxes[rows], expected["boxes"])
                for field, values in batch.labels.items():
                    np.testing.assert_array_equal(values[rows], expected[field])
        else:
            try:
                reader.read_images(index)
            except UncommittedBlockError as exc:
                first = min(set(blocks) - self.committed)  # the store names the lowest
                assert f"block {first} " in str(exc) and "\n" not in str(exc)
            else:
                raise AssertionError(
                    f"read blocks {blocks} with {set(blocks) - self.committed} open"
                )

    @rule()
    def verify(self) -> None:
        """verify reports the open blocks as not committed, and nothing else."""
        problems = verify_store(str(self.path))
        open_blocks = set(range(BLOCKS)) - self.committed
        assert len(problems) == len(open_blocks), [p.line() for p in problems]
        assert all(p.what.startswith("not committed") for p in problems)

    # Invariants ----------------------------------------------------------------------

    @invariant()
    def committed_blocks_are_the_models(self) -> None:
        on_disk = {b for b in range(BLOCKS) if self.marker(b).is_file()}
        assert on_disk == self.committed
        assert set(LabelStore.open(self.path).committed_blocks()) == self.committed

    @invariant()
    def committed_bytes_never_change(self) -> None:
        expected = reference()[1]
        for block in self.committed:
            assert block_digest(self.path, block) == expected[block], f"block {block} changed"


BlockProtocol.TestCase.settings = settings(max_examples=20, stateful_step_count=15, deadline=None)
TestBlockProtocol = BlockProtocol.TestCase

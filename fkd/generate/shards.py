"""Which blocks a shard labels: ``--shard i/n`` takes every block b with b mod n == i;
resume skips the committed ones, ``--redo-blocks`` names blocks to label again."""

from __future__ import annotations

from collections.abc import Sequence

from fkd.exceptions import OptionError
from fkd.generate.errors import GenerateError
from fkd.storage_formats import LabelStore


def shard_blocks(num_blocks: int, shard: tuple[int, int]) -> list[int]:
    """Every block b with b mod n == i, for ``shard`` = (i, n)."""
    index, count = shard
    if not (count >= 1 and 0 <= index < count):
        raise GenerateError(f"--shard {index}/{count}: expected i/n with 0 <= i < n")
    return [b for b in range(num_blocks) if b % count == index]


def blocks_for_shard(
    store: LabelStore, shard: tuple[int, int], redo: Sequence[int] = ()
) -> tuple[list[int], int]:
    """(blocks to label, number of committed ones skipped) of the shard (i, n).

    The blocks to label are the uncommitted blocks b with b mod n == i, or, when
    ``redo`` lists blocks, exactly those (committed or not).
    """
    mine = shard_blocks(store.num_blocks, shard)
    committed = store.committed_mask(refresh=True)
    if redo:
        check_redo_blocks(redo, store.num_blocks, shard)
        again = set(redo)
        return sorted(again), sum(1 for b in mine if committed[b] and b not in again)
    todo = [b for b in mine if not committed[b]]
    return todo, len(mine) - len(todo)


def check_redo_blocks(redo: Sequence[int], num_blocks: int, shard: tuple[int, int]) -> None:
    """Refuse a ``--redo-blocks`` block that does not exist or is not in this shard."""
    index, count = shard
    for block in redo:
        if not 0 <= block < num_blocks:
            raise OptionError(
                "--redo-blocks",
                f"block {block} does not exist: the store has {num_blocks} blocks, "
                f"0..{num_blocks - 1}",
            )
        if block % count != index:
            raise OptionError(
                "--redo-blocks",
                f"block {block} is not in --shard {index}/{count} (its blocks b have "
                f"b mod {count} == {index}); redo it with --shard {block % count}/{count}",
            )


def shard_failures(store: LabelStore, shard: tuple[int, int]) -> tuple[int, list[tuple[str, str]]]:
    """(images, [(path, reason)] of the failed ones) over the shard's committed blocks."""
    index, count = shard
    committed = store.committed_mask(refresh=True)
    blocks = [b for b in range(store.num_blocks) if b % count == index and committed[b]]
    images = sum(stop - start for start, stop in map(store.block_range, blocks))
    paths = store.manifest.paths
    failed = [
        (paths[image], reason)
        for image, reason in store.failures()
        if store.block_of(image) % count == index and committed[store.block_of(image)]
    ]
    return images, failed


__all__ = ["blocks_for_shard", "check_redo_blocks", "shard_blocks", "shard_failures"]

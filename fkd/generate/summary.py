"""What a run did: ``BlockStats`` per block, ``GenerateSummary`` for the report and ``--json``,
and ``failure_message``, the exit-status verdict on the shard's decode failures."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from fkd.generate.fidelity import FidelityReport
from fkd.storage_formats.zarr_store import is_url


@dataclass
class BlockStats:
    """What labelling one block found and cost: small, so it travels back from a dask worker."""

    block: int
    images: int = 0
    crops: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    decode_wait_seconds: float = 0.0
    teacher_seconds: float = 0.0
    write_seconds: float = 0.0
    task_seconds: float = 0.0  # a dask task's whole wall on its worker (0 in one process)


@dataclass
class GenerateSummary:
    """What a run did, for the final report.

    ``images`` and ``failures`` count what this run decoded; ``shard_images`` and
    ``shard_failures`` count every committed block of the shard, including those an
    earlier (interrupted) run wrote, and decide the exit status.
    """

    images: int = 0
    crops: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    shard_images: int = 0
    shard_failures: list[tuple[str, str]] = field(default_factory=list)
    blocks_written: int = 0
    blocks_skipped: int = 0
    bytes_on_disk: int = 0
    total_crops_in_store: int = 0
    seconds: float = 0.0
    decode_wait_seconds: float = 0.0
    teacher_seconds: float = 0.0
    write_seconds: float = 0.0
    complete: bool = False
    fidelity: FidelityReport | None = None
    dask_workers: int = 0  # > 0: the seconds above are summed over this many dask workers
    block_stats: list[BlockStats] = field(default_factory=list)  # this run's, in finish order

    @property
    def bytes_per_crop(self) -> float:
        return self.bytes_on_disk / max(self.total_crops_in_store, 1)

    def add(self, stats: BlockStats) -> None:
        """Count one written block."""
        self.block_stats.append(stats)
        self.images += stats.images
        self.crops += stats.crops
        self.failures.extend(stats.failures)
        self.blocks_written += 1
        self.decode_wait_seconds += stats.decode_wait_seconds
        self.teacher_seconds += stats.teacher_seconds
        self.write_seconds += stats.write_seconds

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON (``fkd generate --json``): the counts, sizes, timings and fidelity."""
        skipped = ("block_stats", "fidelity")  # per-block stats stay out: one per block
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skipped}
        data["fidelity"] = asdict(self.fidelity) if self.fidelity else None
        data["bytes_per_crop"] = self.bytes_per_crop
        return data

    def lines(self) -> list[str]:
        return [
            f"images {self.images}, crops {self.crops}, failures {len(self.failures)}, "
            f"blocks written {self.blocks_written}, skipped (already committed) "
            f"{self.blocks_skipped}",
            f"store {self.bytes_on_disk} bytes on disk, {self.bytes_per_crop:.2f} bytes/crop"
            + ("" if self.complete else " (store not complete yet: other shards pending)"),
            f"wall {self.seconds:.1f}s{self._where()}: waiting for decode "
            f"{self.decode_wait_seconds:.1f}s, teacher {self.teacher_seconds:.1f}s, "
            f"write {self.write_seconds:.1f}s",
        ] + (self.fidelity.lines() if self.fidelity else [])

    def _where(self) -> str:
        if not self.dask_workers:
            return ""
        return f" on {self.dask_workers} dask worker(s), stage times summed over them"


def failure_message(summary: GenerateSummary, max_failures: float) -> str | None:
    """Why the run should exit non-zero, or ``None`` while failures are within budget.

    The budget applies to every committed block of the shard, so resuming an
    interrupted run, or re-running a finished one, gives the same verdict.
    """
    failures, images = summary.shard_failures, summary.shard_images
    if not failures or images == 0:
        return None
    fraction = len(failures) / images
    if fraction <= max_failures:
        return None
    path, reason = failures[0]
    return (
        f"{len(failures)} of {images} images failed to decode "
        f"({fraction:.1%} > --max-failures {max_failures:.1%}); first: {path}: {reason}. "
        "They are recorded in the store as failed; fix or remove them and re-run with "
        "--overwrite, or raise --max-failures"
    )


def store_bytes(location: str) -> int:
    """Bytes on disk under a local store (0 for URLs)."""
    if is_url(location):
        return 0
    total = 0
    for root, _, files in os.walk(location):
        total += sum(os.path.getsize(os.path.join(root, name)) for name in files)
    return total


__all__ = ["BlockStats", "GenerateSummary", "failure_message", "store_bytes"]

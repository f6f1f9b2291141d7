"""The loader soak: ``make_loader`` batches read for a while, each one checked, and the
resident memory of the main process and of each loader worker (from /proc)."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path


def rss_bytes(pid: int) -> int:
    """VmRSS of a process, from /proc (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` (the DataLoader's worker processes)."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return sorted(set(children))


@dataclasses.dataclass
class SoakResult:
    """What a loader soak read, and the resident memory of its processes (bytes)."""

    seconds: float = 0.0
    epochs: int = 0
    batches: int = 0
    crops: int = 0
    workers: int = 0
    main_rss_start: int = 0
    main_rss_end: int = 0
    workers_rss_start: int = 0
    workers_rss_end: int = 0
    worst_worker_growth: int = 0

    @property
    def total_growth(self) -> int:
        return (
            self.main_rss_end + self.workers_rss_end - self.main_rss_start - self.workers_rss_start
        )

    def lines(self) -> list[str]:
        mib = 2**20
        return [
            f"{self.seconds:.0f} s, {self.epochs} epochs, {self.batches} batches, "
            f"{self.crops} crops ({self.crops / max(self.seconds, 1e-9):.0f} crops/s), "
            f"{self.workers} workers, no errors",
            f"main RSS {self.main_rss_start / mib:.1f} -> {self.main_rss_end / mib:.1f} MiB; "
            f"workers RSS (sum) {self.workers_rss_start / mib:.1f} -> "
            f"{self.workers_rss_end / mib:.1f} MiB; worst worker growth "
            f"{self.worst_worker_growth / mib:.1f} MiB; total growth "
            f"{self.total_growth / mib:.1f} MiB",
        ]


def soak(
    data: Path, store: Path, seconds: float, workers: int = 8, warmup: float = 3.0
) -> SoakResult:
    """Read ``make_loader`` batches for ``seconds`` (after ``warmup``), checking every batch.

    RSS is sampled after the warm-up (start) and at the end, for the main process
    and each worker, from /proc/<pid>/status.
    """
    import torch

    from fkd.data import make_loader, set_epoch

    parts = make_loader(data, store, batch_images=16, crops_per_visit=4, input_size=32,
                        workers=workers, seed=3)  # fmt: skip
    loader, dataset = parts[0], parts[1]
    me = os.getpid()
    result = SoakResult(workers=workers)
    started = time.monotonic()
    measuring = False
    start_rss: dict[int, int] = {}
    while True:
        set_epoch(parts, result.epochs)
        seen = 0
        for batch in loader:
            images = batch["images"]
            assert images.shape[1:] == (3, 32, 32) and images.dtype == torch.float32
            assert bool(torch.isfinite(images).all())
            assert all(bool(torch.isfinite(v.float()).all()) for v in batch["labels"].values())
            seen += len(batch["image_index"]) // 4
            elapsed = time.monotonic() - started
            if not measuring and elapsed >= warmup:
                measuring, started = True, time.monotonic()
                result.main_rss_start = rss_bytes(me)
                start_rss = {pid: rss_bytes(pid) for pid in child_pids(me)}
                result.workers_rss_start = sum(start_rss.values())
            elif measuring:
                result.batches += 1
                result.crops += len(images)
            if measuring and elapsed >= seconds:
                break
        else:
            assert seen == len(dataset), f"epoch {result.epochs} gave {seen} of {len(dataset)}"
            result.epochs += 1
            continue
        break
    result.seconds = time.monotonic() - started
    result.main_rss_end = rss_bytes(me)
    end_rss = {pid: rss_bytes(pid) for pid in child_pids(me)}
    assert set(end_rss) == set(start_rss), "a worker died or was replaced"
    result.workers_rss_end = sum(end_rss.values())
    result.worst_worker_growth = max(end_rss[p] - start_rss[p] for p in end_rss)
    del loader, parts
    return result

"""What a fresh process pays to start on an existing store: open, manifest, resume scan.

    OMP_NUM_THREADS=1 python benchmarks/open_store_bench.py STORE

Times ``LabelStore.open(STORE).manifest`` (the metadata checks, the manifest arrays and
their vectorised validation), ``LabelStore.open(STORE, "r+").uncommitted_blocks()`` (one
listing of the commit markers) and a first ``read_images`` of one image, and prints the
process's peak RSS.  ``benchmarks/scale_bench.py --keep`` leaves stores to run it on.
"""

from __future__ import annotations

import resource
import sys
import time


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(location: str) -> None:
    from fkd.storage_formats import LabelStore

    after_imports = peak_mb()
    start = time.perf_counter()
    store = LabelStore.open(location)
    manifest = store.manifest
    opened = time.perf_counter() - start
    start = time.perf_counter()
    todo = LabelStore.open(location, mode="r+").uncommitted_blocks()
    scan = time.perf_counter() - start
    start = time.perf_counter()
    store.read_images([len(manifest) // 2])
    read = time.perf_counter() - start
    print(
        f"images {len(manifest)}: open + manifest {opened:.2f} s, resume scan {scan:.3f} s "
        f"({len(todo)} blocks open), first read {read:.3f} s, peak RSS {peak_mb():.0f} MB "
        f"({after_imports:.0f} MB after imports)"
    )


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])

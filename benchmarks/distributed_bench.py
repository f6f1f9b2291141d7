"""Scale-out benchmark: ``fkd generate`` on 1 vs 2 local dask workers, and the scheduler's cost.

In one run, on the same images, teacher and parameters:

1. crops/s of the dask runner on a LocalCluster of 1 worker process, then of 2 (one
   thread each; ``--clusters`` sets the sequence, e.g. 1,2,1 to bracket the drift of a
   shared machine), each after loading the teacher on every worker and a warm-up run;
   the stores of all runs are checked equal, array by array;
2. the scheduler's overhead per block, two ways:
   - an empty task's client-observed round trip (submit, run, result), median of
     ``--round-trips``, as a fraction of the mean block task's wall on its worker;
   - in the timed runs, the workers' idle share: 1 - (sum of the block tasks' wall
     on the workers) / (workers x the client's wall from submitting the first block
     to receiving the last; scanning, teacher loading and store creation excluded).

Data: real photos (skimage.data chelsea, coffee, astronaut, rocket, camera), random
96x96 patches saved as JPEG quality 90.  Teacher: a seeded 3-layer CNN at 64 px with
1000 classes (``make_teacher`` below, a ``module:factory`` spec the worker processes
import), so the top-5 encoding and the stores are ImageNet-shaped and a block at the
default size (256 images) takes seconds, not the hour EfficientNet-Lite0 would take on
one CPU core.

    python benchmarks/distributed_bench.py [--images N] [--crops M] [--block-size B] [--out JSON]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from skimage import data as skdata
from torch import nn

TEACHER = "distributed_bench:make_teacher"
PATCH = 96


def make_teacher() -> tuple[nn.Module, dict[str, Any]]:
    """A seeded CNN at 64 px with 1000 classes, one torch thread."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2), nn.ReLU(), nn.Conv2d(16, 32, 3, stride=2), nn.ReLU(),
        nn.Conv2d(32, 64, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(64, 1000),
    )  # fmt: skip
    info = {"input_size": 64, "mean": (0.5,) * 3, "std": (0.25,) * 3, "interpolation": "bilinear"}
    return net, info


def write_images(folder: Path, count: int) -> None:
    photos = [skdata.chelsea(), skdata.coffee(), skdata.astronaut(), skdata.rocket()]
    photos.append(np.stack([skdata.camera()] * 3, axis=-1))
    rng = np.random.default_rng(0)
    (folder / "x").mkdir(parents=True)
    for i in range(count):
        photo = photos[i % len(photos)]
        top = int(rng.integers(0, photo.shape[0] - PATCH))
        left = int(rng.integers(0, photo.shape[1] - PATCH))
        patch = photo[top : top + PATCH, left : left + PATCH]
        Image.fromarray(patch).save(folder / "x" / f"{i:05d}.jpg", quality=90)


def load_teacher_here(config: Any) -> None:
    """Import the pipeline and load the teacher into this worker's cache."""
    from fkd.generate.dask_task import _WORKER_CACHE, cached_teacher

    with _WORKER_CACHE.lock:
        cached_teacher(config, torch.device("cpu"))


def noop() -> int:
    return 0


def round_trips(client: Any, count: int) -> list[float]:
    """Client-observed seconds of an empty task, one at a time."""
    times = []
    for i in range(count + 3):
        start = time.perf_counter()
        client.submit(noop, key=f"noop-{i}-{time.monotonic_ns()}", pure=False).result()
        if i >= 3:  # the first few warm the connections up
            times.append(time.perf_counter() - start)
    return times


def timed_blocks(client: Any, config: Any) -> tuple[Any, float]:
    """The dask runner's steps, with the client's wall from the first submit to the last result.

    The same calls as ``generate_on_client`` (scan, teacher and store first, untimed).
    """
    from fkd.generate import GenerateSummary, prepare_run
    from fkd.generate.dask_runner import collect, submit_blocks
    from fkd.progress import Progress

    run = prepare_run(config, torch.device("cpu"))
    summary = GenerateSummary()
    start = time.perf_counter()
    futures = submit_blocks(client, config, run.store.spec, run.source, run.todo, 0)
    collect(client, futures, run.store, summary, Progress(1, enabled=False))
    return summary, time.perf_counter() - start


def run_on_cluster(
    workers: int, run: int, config_for: Any, round_trip_count: int
) -> dict[str, Any]:
    from distributed import Client

    from fkd.generate.dask_cluster import local_cluster
    from fkd.generate.dask_runner import generate_on_client

    with local_cluster(workers) as cluster, Client(cluster) as client:
        client.wait_for_workers(workers)
        warm = config_for(f"warm-{run}", warm=True)
        client.run(load_teacher_here, warm)  # on every worker
        generate_on_client(warm, client, progress=False)  # store, decode and cut paths warm
        trips = round_trips(client, round_trip_count)
        summary, wall = timed_blocks(client, config_for(f"run-{run}"))
    blocks = summary.block_stats
    task_seconds = [b.task_seconds for b in blocks]
    return {
        "workers": workers,
        "crops": summary.crops,
        "blocks": len(blocks),
        "wall_submit_to_last_s": wall,
        "crops_per_s": summary.crops / wall,
        "task_seconds": task_seconds,
        "mean_block_s": statistics.mean(task_seconds),
        "idle_share": 1 - sum(task_seconds) / (workers * wall),
        "round_trip_s_median": statistics.median(trips),
        "round_trip_s_all": trips,
        "teacher_s": summary.teacher_seconds,
        "decode_wait_s": summary.decode_wait_seconds,
        "write_s": summary.write_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1024, help="N images (default 1024)")
    parser.add_argument("--crops", type=int, default=20, help="M crops per image (default 20)")
    parser.add_argument("--block-size", type=int, default=256, help="default: 256, fkd's")
    parser.add_argument("--round-trips", type=int, default=30, help="empty tasks timed")
    parser.add_argument(
        "--clusters",
        default="1,2",
        help="worker counts, one cluster each, in this order (e.g. 1,2,1 brackets drift)",
    )
    parser.add_argument("--workdir", type=Path, default=None, help="where temp files go")
    parser.add_argument("--out", type=Path, default=None, help="write all figures as JSON")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))  # the workers import this module

    from fkd.generate import GenerateConfig
    from fkd.storage_formats import LabelStore

    workdir = Path(tempfile.mkdtemp(prefix="fkd-distributed-bench-", dir=args.workdir))
    try:
        write_images(workdir / "data", args.images)
        write_images(workdir / "warm-data", 2 * args.block_size)

        def config_for(name: str, warm: bool = False) -> GenerateConfig:
            return GenerateConfig(
                data=workdir / ("warm-data" if warm else "data"),
                out=str(workdir / f"{name}.zarr"),
                teachers=(TEACHER,),
                crops_per_image=args.crops,
                block_size=args.block_size,
                device="cpu",
            )

        results: dict[str, Any] = {
            "machine": {
                "cpus": os.cpu_count(),
                "load_average_before": os.getloadavg(),
                "python": platform.python_version(),
                "torch": torch.__version__,
            },
            "images": args.images,
            "crops_per_image": args.crops,
            "block_size": args.block_size,
            "runs": [
                run_on_cluster(int(w), i, config_for, args.round_trips)
                for i, w in enumerate(args.clusters.split(","))
            ],
        }
        results["machine"]["load_average_after"] = os.getloadavg()
        first, *others = (
            LabelStore.open(workdir / f"run-{i}.zarr") for i in range(len(results["runs"]))
        )
        results["stores_equal"] = all(
            np.array_equal(np.asarray(first.group[name][...]), np.asarray(other.group[name][...]))
            for other in others
            for name in first.layout
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report(results)
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=2, default=float) + "\n")
        print(f"wrote {args.out}")


def report(results: dict[str, Any]) -> None:
    machine = results["machine"]
    print(
        f"{results['images']} images, M={results['crops_per_image']}, block size "
        f"{results['block_size']}; {machine['cpus']} CPUs, load average before "
        f"{machine['load_average_before'][0]:.2f}, after {machine['load_average_after'][0]:.2f}"
    )
    for run in results["runs"]:
        print(
            f"{run['workers']} worker(s): {run['crops_per_s']:.0f} crops/s "
            f"({run['crops']} crops in {run['wall_submit_to_last_s']:.1f} s, first submit to "
            f"last result); mean block task "
            f"{run['mean_block_s']:.2f} s; empty-task round trip "
            f"{1000 * run['round_trip_s_median']:.1f} ms = "
            f"{run['round_trip_s_median'] / run['mean_block_s']:.3%} of a block; workers idle "
            f"{run['idle_share']:.1%} of the run"
        )
    rates: dict[int, list[float]] = {}
    for run in results["runs"]:
        rates.setdefault(run["workers"], []).append(run["crops_per_s"])
    if 1 in rates and 2 in rates:
        speedup = statistics.mean(rates[2]) / statistics.mean(rates[1])
        print(f"speed-up 2 vs 1 worker (mean crops/s of each): {speedup:.2f}x")
    print(f"stores of all runs equal: {results['stores_equal']}")


if __name__ == "__main__":
    main()

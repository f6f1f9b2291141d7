"""Label reads per student visit at several M: time, decoded bytes and bytes per crop.

For each M (crops per image), writes a store of ``--images`` images through fkd's
public writer (``LabelStore.create`` / ``write_block``) with teacher-like labels
(``fkd.storage_formats.synthetic``, C classes, marginal_smoothing top-K, uint8
values, derived boxes: what ``fkd generate`` writes by default), then times random
visits: an image drawn at random and N distinct crops of it drawn at random over
``0 .. M-1`` (as the crop schedule scatters them), read with
``store.read_crops([image], crops)`` plus ``store.read_boxes([image], crops)``,
which is what the loader calls per visit.

Per M it reports:
- visit time, warm: median and mean microseconds of ``read_crops`` per visit (and,
  beside it, with ``read_boxes`` too) once every shard index
  of the store has been read (the steady state of a loader worker on a store whose
  indexes fit its cache);
- visit time, cold index: the same with the shard-index caches emptied before each
  visit (a visit to a block the worker has not touched lately: the shard index,
  16 bytes per inner chunk, is read and checksummed again);
- decoded label bytes per visit (counted by the direct readers);
- label bytes on disk per crop, and the write time per block;
and the ratio of each time to the smallest M's, in the same run.

``--format-version 2`` writes v2 stores (all M crops of an image in one chunk),
for comparison.

    OMP_NUM_THREADS=1 python benchmarks/label_read_bench.py [--crops 200,1200,4800]
        [--images 256] [--visit-crops 4] [--visits 2000] [--out JSON]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fkd.storage_formats import (
    FORMAT_VERSION,
    BlockData,
    CodecSpec,
    CropSpec,
    LabelStore,
    Manifest,
    StoreSpec,
    TeacherInfo,
    get_codec,
)
from fkd.storage_formats.layout import label_array_name
from fkd.storage_formats.synthetic import teacher_like_probs

SYNTH_IMAGES = 4  # teacher-like labels are synthesised this many images at a time


def build_store(path: Path, crops: int, args: argparse.Namespace) -> tuple[LabelStore, float]:
    """A store of ``args.images`` images at M = ``crops``; also the mean seconds per block."""
    paths = [f"n{i % 100:08d}/img_{i:06d}.JPEG" for i in range(args.images)]
    manifest = Manifest.build(paths, [1000] * args.images, [i % 100 for i in range(args.images)])
    spec = StoreSpec(
        **manifest.spec_fields(),
        codec=CodecSpec("marginal_smoothing", args.classes, k=args.k, value_dtype="uint8"),
        crops=CropSpec(crops_per_image=crops, seed=1),
        teacher=TeacherInfo("bench", input_size=224),
        block_size=args.block_size,
    )
    if args.format_version != spec.format_version:
        spec = dataclasses.replace(spec, format_version=args.format_version)
    store = LabelStore.create(path, spec, manifest)
    codec = get_codec(spec.codec)
    rng = np.random.default_rng(0)
    writing = 0.0
    for block in range(spec.num_blocks):
        start, stop = spec.block_range(block)
        parts = [
            codec.encode(teacher_like_probs(rng, min(SYNTH_IMAGES, stop - i), crops, args.classes))
            for i in range(start, stop, SYNTH_IMAGES)
        ]
        labels = {f: np.concatenate([p[f] for p in parts]) for f in parts[0]}
        data = BlockData(
            height=rng.integers(200, 500, size=stop - start),
            width=rng.integers(200, 500, size=stop - start),
            status=np.ones(stop - start, dtype=np.uint8),
            errors=[""] * (stop - start),
            labels=labels,
        )
        began = time.perf_counter()
        store.write_block(block, data)
        writing += time.perf_counter() - began
    return store, writing / spec.num_blocks


def label_bytes(path: Path, store: LabelStore) -> int:
    """Bytes on disk of the label arrays (and stored boxes, if any)."""
    names = [label_array_name(f.name) for f in store.codec.fields()]
    names += [n for n in ("crop_box", "crop_flip") if n in store.layout]
    total = 0
    for name in names:
        for folder, _, files in os.walk(path / name):
            total += sum(os.path.getsize(Path(folder) / f) for f in files)
    return total


def time_visits(
    store: LabelStore, visits: list[tuple[int, np.ndarray]], cold: bool
) -> dict[str, float]:
    """Microseconds per visit (median, mean) and decoded label bytes per visit."""
    readers = store._readers or {}
    before = sum(r.decoded_bytes for r in readers.values())
    labels, total = [], []
    for image, crops in visits:
        if cold:
            for reader in readers.values():
                reader._indexes.clear()
        began = time.perf_counter()
        store.read_crops([image], crops[None])
        middle = time.perf_counter()
        store.read_boxes([image], crops[None])
        labels.append(middle - began)
        total.append(time.perf_counter() - began)
    decoded = sum(r.decoded_bytes for r in readers.values()) - before
    return {
        "median_us": statistics.median(labels) * 1e6,
        "mean_us": statistics.fmean(labels) * 1e6,
        "with_boxes_median_us": statistics.median(total) * 1e6,
        "decoded_bytes_per_visit": decoded / len(visits),
    }


def measure(crops: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    path = workdir / f"m{crops}.zarr"
    _, write_s = build_store(path, crops, args)
    store = LabelStore.open(path)
    rng = np.random.default_rng(args.seed)
    visits = [
        (int(rng.integers(args.images)), rng.choice(crops, size=args.visit_crops, replace=False))
        for _ in range(args.visits)
    ]
    for name in ("image_height", "image_width", "image_status"):
        store.per_image(name)  # cached, as a loader worker's handle has them (reader_cache)
    for block in range(store.num_blocks):  # touch every shard: indexes and page cache warm
        start, _ = store.block_range(block)
        store.read_crops([start], np.zeros((1, 1), dtype=np.int64))
    result = {
        "crops_per_image": crops,
        "format_version": store.spec.format_version,
        "inner_chunk": list(store.layout[label_array_name("index")].inner or []),
        "label_bytes_per_crop": label_bytes(path, store) / (args.images * crops),
        "write_s_per_block": write_s,
        "warm": time_visits(store, visits, cold=False),
        "cold_index": time_visits(store, visits, cold=True),
    }
    if not args.keep:
        shutil.rmtree(path)
    return result


def report(results: list[dict[str, Any]]) -> list[str]:
    base = results[0]
    lines = [
        f"{'M':>6} {'v':>2} {'chunk':>10} {'B/crop':>7} {'write s/blk':>11} "
        f"{'warm µs':>8} {'ratio':>6} {'cold µs':>8} {'ratio':>6} {'decoded B/visit':>15}"
    ]
    for r in results:
        warm, cold = r["warm"]["median_us"], r["cold_index"]["median_us"]
        r["warm_ratio"] = warm / base["warm"]["median_us"]
        r["cold_ratio"] = cold / base["cold_index"]["median_us"]
        lines.append(
            f"{r['crops_per_image']:>6} {r['format_version']:>2} "
            f"{'x'.join(map(str, r['inner_chunk'][:2])):>10} "
            f"{r['label_bytes_per_crop']:>7.2f} {r['write_s_per_block']:>11.3f} "
            f"{warm:>8.1f} {r['warm_ratio']:>6.2f} {cold:>8.1f} {r['cold_ratio']:>6.2f} "
            f"{r['warm']['decoded_bytes_per_visit']:>15.0f}"
        )
    return lines


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--crops", default="200,1200,4800", help="M values, comma-separated")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--block-size", type=int, default=64)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--visit-crops", type=int, default=4, help="N: crops per visit")
    parser.add_argument("--visits", type=int, default=2000)
    parser.add_argument("--format-version", type=int, default=FORMAT_VERSION)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="leave the stores in --workdir")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    crops = [int(m) for m in args.crops.split(",")]
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="label_read_bench"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        results = [measure(m, args, workdir) for m in crops]
    finally:
        if args.workdir is None and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    for line in report(results):
        print(line)
    if args.out is not None:
        args.out.write_text(
            json.dumps(
                {
                    "args": vars(args) | {"workdir": str(workdir), "out": str(args.out)},
                    "results": results,
                },
                indent=1,
            )
        )
    return results


if __name__ == "__main__":
    main()

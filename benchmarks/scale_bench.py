"""Scale benchmark: how long a user waits for each store operation, at several N.

For each N, builds a label store of N images through fkd's public writer
(``LabelStore.create``, then ``write_block`` per block of 256): ImageNet-like
manifest paths ``<wnid>/<wnid>_<n>.JPEG``, M crops per image, C classes, derived
boxes, teacher-like marginal_smoothing top-5 uint8 labels.  One block's labels
are synthesised and encoded once and rolled per block, so the write loop times
fkd, not the synthesis.  Then, on that store, it times:

- manifest build: ``Manifest.build`` (validates every path) and its digest;
- create: ``LabelStore.create``, manifest write included;
- write block: mean seconds of one ``write_block`` over the first tenth of the
  blocks and over the last tenth (their ratio is printed), and the sum over all;
- resume scan: ``LabelStore.open(path, "r+").uncommitted_blocks()`` on a fresh
  handle, with all but a few blocks (spread over the store) committed;
- open, manifest read (``store.manifest`` on a fresh handle), and their sum;
- read 1 image: ``read_images([i])`` of a random image, the first on a fresh
  handle, and later ones on a handle that has read (median of 20);
- ``fkd --version``, ``fkd inspect STORE`` and ``fkd verify STORE``:
  subprocesses of the real CLI (``python -m fkd``); ``--version`` is the CLI's
  start-up cost, part of the other two; verify is stopped after
  ``--verify-timeout`` seconds and reported as timed out;
- scan image folder: ``fkd.images.scan_source`` on the image folder of the
  store's manifest, as ``fkd generate`` scans DATA;
- ``fkd generate DATA --plan --plan-crops-per-s 1000`` (a subprocess): --plan
  still loads a teacher and runs it on 64 crops, so it gets a tiny linear one
  at 32 px (``tiny_teacher`` below);
- student dataset: ``fkd.data.make_loader`` (scan, manifest match, store
  checks), with ``LabelStore.manifest`` reads counted; then again with the folder
  scanned beforehand (``source=``), the dataset's own cost;
- first batch, 2 workers: ``next(iter(loader))`` including the workers'
  start-up (each opens the store itself); manifest reads in the workers are
  counted after both have served a batch;
- dask task prologue: the part of ``fkd.generate.dask_task.label_block`` that does not
  depend on the block's images (open r+, compare specs, the worker's cached
  ``ImageSource`` of the store's manifest, and the commit-marker read that
  ``write_block`` does), called in this process, not on a LocalCluster: once as
  a new worker's first task (cache empty) and as a later task.  The teacher
  load (first task only) and the labelling are not in it.

And once, whatever N: scan a folder of ``--scan-files`` (128,000) images in
ImageNet-like class folders.

Every operation that can be is run ``--repeats`` times (3) on a fresh handle
each time, and the median kept; one whose runs have taken 10 s is not repeated
further.  Create, the block writes, make_loader and the first batch run once.

Each figure records wall seconds, the peak RSS of the process doing it and the
files in the store.  Peak RSS: for operations in this process, VmHWM after
resetting it (``/proc/self/clear_refs``), reported with the RSS when the
operation started (the table shows the growth, "+"); for CLI subprocesses their
own ``ru_maxrss`` from ``os.wait4`` in a small launcher process, which also
times them (Python's start-up included, the launcher's not); for DataLoader
workers their VmHWM (which includes the pages inherited by fork).  Between
consecutive sizes the growth exponent is log(t2/t1)/log(N2/N1): about 0 is
constant, 1 linear, 2 quadratic.

Image files are hard links to a tiny JPEG (a new link target every 60,000
links, under ext4's limit), so every image decodes, sizes match the manifest,
and the folder costs directory entries but no inodes or data.  The page cache
is warm throughout: stores and folders were just written.  Folders are built
only up to ``--max-image-tree`` images; above it the scan, --plan, dataset and
first-batch operations are skipped (reported as "-").

    OMP_NUM_THREADS=1 python benchmarks/scale_bench.py [--sizes 16000,128000,1281167]
        [--crops 8] [--imagenet21k] [--verify-timeout 600] [--out JSON]

``--imagenet21k``: N = 14,197,122 at C = 21,841.  Small, quick runs:
``--sizes 300,600 --block-size 64 --scan-files 500``; ``--skip-slow-ops`` leaves
out the operations that start Python processes (the CLI, --plan and the
DataLoader workers).  ``--build-timeout S`` stops a size whose block writes
take more than S seconds (its write figures so far are kept, its other
operations skipped).  ``--keep`` leaves the stores and folders in ``--workdir``.
"""

from __future__ import annotations

import argparse
import gc
import glob
import io
import json
import math
import multiprocessing
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from itertools import pairwise
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import zarr
from numpy.typing import NDArray
from PIL import Image
from torch import nn

import fkd
from fkd.data import make_loader, set_epoch
from fkd.generate import dask_task
from fkd.images import scan_source
from fkd.storage_formats import (
    BlockData,
    CodecSpec,
    CropSpec,
    LabelStore,
    Manifest,
    StoreSpec,
    TeacherInfo,
    get_codec,
)
from fkd.storage_formats.spec import diff_generation
from fkd.storage_formats.synthetic import teacher_like_probs

T = TypeVar("T")

IMAGENET_1K = (16_000, 128_000, 1_281_167)
IMAGENET_21K = (14_197_122,)
CLASSES_1K, CLASSES_21K = 1000, 21_841
TEMPLATE_IMAGES = 16  # images whose labels are synthesised; tiled to one block
RESUME_GAPS = 3  # blocks left uncommitted for the resume scan (fewer on small stores)
RANDOM_READS = 20
PROGRESS_S = 60.0  # the block writes print a line at most this often
REPEAT_BUDGET_S = 10.0  # an operation is repeated (--repeats) only while its runs took less
LINKS_PER_TARGET = 60_000  # ext4 allows 65,000 hard links per file

BENCH_DIR = Path(__file__).resolve().parent
TEACHER_SPEC = "scale_bench:tiny_teacher"  # imported by the --plan subprocess
CLASSES_ENV = "SCALE_BENCH_CLASSES"
TEACHER_INPUT = 32
LOADER = {"batch_images": 8, "crops_per_visit": 2, "input_size": TEACHER_INPUT, "workers": 2}


def tiny_teacher() -> tuple[nn.Module, dict[str, Any]]:
    """A seeded linear teacher at 32 px over $SCALE_BENCH_CLASSES classes (for --plan)."""
    torch.manual_seed(0)
    classes = int(os.environ.get(CLASSES_ENV, CLASSES_1K))
    net = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(48, classes))
    info = {"input_size": TEACHER_INPUT, "mean": (0.5,) * 3, "std": (0.25,) * 3}
    return net, {**info, "interpolation": "bilinear"}


# Measuring -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    """One operation at one size.  ``seconds`` is None when it timed out (see ``note``)."""

    operation: str
    images: int
    seconds: float | None
    peak_rss_mb: float | None
    rss_before_mb: float | None  # None: the peak is another process's (rss_of)
    rss_of: str
    store_files: int
    runs: int = 1  # seconds is the median of this many runs
    note: str = ""


def _status_kb(pid: str, key: str) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"^{key}:\s+(\d+) kB", text, re.MULTILINE)
    return float(match.group(1)) if match else math.nan


def reset_peak_rss() -> None:
    """Reset this process's VmHWM to its current RSS (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")


def rss_mb(pid: int | str = "self", key: str = "VmRSS") -> float:
    return _status_kb(str(pid), key) / 1024


def child_pids() -> list[int]:
    """Live child processes of this process (DataLoader workers, say)."""
    pids = []
    for path in glob.glob(f"/proc/{os.getpid()}/task/*/children"):
        pids += [int(p) for p in Path(path).read_text().split()]
    return pids


@dataclass
class Recorder:
    """Measurements of the operations on one store of ``images`` images."""

    images: int
    repeats: int = 1
    store_files: int = 0
    measurements: list[Measurement] = field(default_factory=list)
    setup_seconds: dict[str, float] = field(default_factory=dict)  # not fkd's: ours

    def timed(
        self,
        operation: str,
        run: Callable[..., T],
        repeats: int | None = None,
        prepare: Callable[[], Any] | None = None,
    ) -> T:
        """Time ``run()``, or ``run(prepare())`` with ``prepare`` off the clock (a fresh
        handle, say), up to ``repeats`` times (default: the recorder's) within the
        repeat budget; record the median seconds and the peak RSS of all runs."""
        gc.collect()
        before = rss_mb()
        reset_peak_rss()
        last: list[T] = []

        def once() -> float:
            last.clear()  # the previous run's result must not add to this run's peak
            arguments = () if prepare is None else (prepare(),)
            start = time.perf_counter()
            last.append(run(*arguments))
            return time.perf_counter() - start

        seconds = within_budget(once, self.repeats if repeats is None else repeats)
        peak = rss_mb(key="VmHWM")
        median = statistics.median(seconds)
        self.add(operation, median, peak, before, "this process", runs=len(seconds))
        return last[0]

    def add(
        self,
        operation: str,
        seconds: float | None,
        peak_mb: float | None,
        before_mb: float | None,
        rss_of: str,
        note: str = "",
        runs: int = 1,
    ) -> None:
        self.measurements.append(
            Measurement(
                operation=operation,
                images=self.images,
                seconds=seconds,
                peak_rss_mb=peak_mb,
                rss_before_mb=before_mb,
                rss_of=rss_of,
                store_files=self.store_files,
                runs=runs,
                note=note,
            )
        )

    def amend_last(self, **changes: Any) -> None:
        self.measurements[-1] = replace(self.measurements[-1], **changes)

    def combine(self, operation: str, parts: Sequence[str]) -> None:
        """A sum of operations already recorded (seconds summed, the highest peak)."""
        chosen = [m for m in self.measurements if m.operation in parts]
        seconds = sum(m.seconds or 0.0 for m in chosen)
        peak = max(m.peak_rss_mb or 0.0 for m in chosen)
        self.add(operation, seconds, peak, chosen[0].rss_before_mb, "this process")


def within_budget(once: Callable[[], float], repeats: int) -> list[float]:
    """Seconds of up to ``repeats`` calls of ``once``, fewer once they took REPEAT_BUDGET_S."""
    seconds = [once()]
    while len(seconds) < repeats and sum(seconds) < REPEAT_BUDGET_S:
        seconds.append(once())
    return seconds


@dataclass(frozen=True)
class ChildRun:
    seconds: float
    peak_rss_mb: float | None
    timed_out: bool
    output: str


# Runs ARGV[2:] and writes "<wall seconds> <ru_maxrss KiB>" of it to ARGV[1].  A child's
# ru_maxrss also counts the memory of the process it was forked from, before its exec: this
# small launcher keeps that to a few MiB where forking from this process would add ~700 MiB.
LAUNCHER = """import os, subprocess, sys, time
start = time.perf_counter()
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(f"{time.perf_counter() - start} {usage.ru_maxrss}")
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_child(command: Sequence[str], timeout: float, env: dict[str, str]) -> ChildRun:
    """Run ``command``: its wall seconds and peak RSS; killed after ``timeout`` seconds."""
    with tempfile.TemporaryDirectory() as scratch:
        figures, log = Path(scratch) / "figures", Path(scratch) / "log"
        with log.open("wb") as output:
            launcher = subprocess.Popen(
                [sys.executable, "-c", LAUNCHER, str(figures), *command],
                stdout=output,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # one process group: a timeout kills both
            )
            try:
                launcher.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(launcher.pid, signal.SIGKILL)
                launcher.wait()
                return ChildRun(timeout, None, True, log.read_text("utf-8", "replace"))
        text = log.read_text("utf-8", "replace")
        if launcher.returncode != 0:
            raise RuntimeError(
                f"{shlex.join(command)} exited {launcher.returncode}:\n{text[-3000:]}"
            )
        seconds, max_rss_kib = figures.read_text().split()
    return ChildRun(float(seconds), float(max_rss_kib) / 1024, False, text)


def child_env(classes: int) -> dict[str, str]:
    """This environment, with the benchmarks folder importable (the --plan teacher)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH_DIR), env.get("PYTHONPATH")]))
    env[CLASSES_ENV] = str(classes)
    return env


def timed_cli(
    rec: Recorder, operation: str, arguments: Sequence[str], timeout: float, classes: int
) -> None:
    """``python -m fkd ARGUMENTS`` as a user runs it (repeated as ``Recorder.timed`` does)."""
    command = [sys.executable, "-m", "fkd", *arguments]
    runs: list[ChildRun] = []

    def once() -> float:
        runs.append(run_child(command, timeout, child_env(classes)))
        return math.inf if runs[-1].timed_out else runs[-1].seconds

    seconds = within_budget(once, rec.repeats)
    if runs[-1].timed_out:
        note = f"timed out after {timeout:g} s"
        rec.add(operation, None, None, None, "subprocess (ru_maxrss)", note)
    else:
        peak = max(run.peak_rss_mb or 0.0 for run in runs)
        median = statistics.median(seconds)
        rec.add(operation, median, peak, None, "subprocess (ru_maxrss)", runs=len(runs))


class ManifestReads:
    """Counts ``LabelStore.manifest`` reads here and in forked DataLoader workers."""

    def __init__(self) -> None:
        self.count = multiprocessing.get_context("fork").Value("i", 0)
        self.original = LabelStore.manifest

    def install(self, *_: Any) -> None:
        """Wrap the property (also the workers' ``worker_init_fn``)."""
        read, count = self.original.fget, self.count
        assert read is not None

        def counted(store: LabelStore) -> Manifest:
            with count.get_lock():
                count.value += 1
            return read(store)

        LabelStore.manifest = property(counted)  # type: ignore[method-assign,assignment]

    def remove(self) -> None:
        LabelStore.manifest = self.original  # type: ignore[method-assign]

    @contextmanager
    def counting(self) -> Iterator[None]:
        self.install()
        try:
            yield
        finally:
            self.remove()

    def take(self) -> int:
        with self.count.get_lock():
            value, self.count.value = self.count.value, 0
        return int(value)


# The synthetic dataset ------------------------------------------------------------------


def wnids(classes: int) -> list[str]:
    """``classes`` distinct, sorted WordNet-like ids: n01440764, ..."""
    rng = np.random.default_rng(0)
    numbers = np.sort(rng.choice(9_000_000, size=classes, replace=False)) + 1_000_000
    return [f"n{number:08d}" for number in numbers.tolist()]


def imagenet_paths(images: int, classes: int) -> tuple[list[str], NDArray[np.int64]]:
    """Paths ``<wnid>/<wnid>_<n>.JPEG`` in sorted order (as a scan gives them), and targets."""
    names = wnids(min(classes, images))  # no empty class folder
    targets = np.arange(images, dtype=np.int64) * len(names) // images
    first = np.searchsorted(targets, np.arange(len(names)))
    within = np.arange(images) - first[targets]
    base = 10 ** max(4, len(str(int(within.max()))))  # equal widths keep the sort order
    paths = [
        f"{names[t]}/{names[t]}_{base + j}.JPEG"
        for t, j in zip(targets.tolist(), within.tolist(), strict=True)
    ]
    return paths, targets


def tiny_jpeg() -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def build_image_tree(root: Path, paths: Sequence[str], jpeg: bytes) -> None:
    """Every path under ``root`` as a hard link to one of a few copies of ``jpeg``."""
    targets = root.parent / f"{root.name}-link-targets"
    targets.mkdir(parents=True)
    root.mkdir()
    folder = target = ""
    for i, path in enumerate(paths):
        if i % LINKS_PER_TARGET == 0:
            target = str(targets / f"{i}.JPEG")
            Path(target).write_bytes(jpeg)
        parent = path.rpartition("/")[0]
        if parent != folder:
            os.makedirs(root / parent, exist_ok=True)
            folder = parent
        os.link(target, os.path.join(root, path))


def remove_tree(root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(root.parent / f"{root.name}-link-targets", ignore_errors=True)


def count_files(root: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(root))


@dataclass(frozen=True)
class BlockTemplate:
    """One block's encoded labels and image sizes, rolled by the block index for each block."""

    labels: dict[str, NDArray[Any]]
    height: NDArray[np.uint32]
    width: NDArray[np.uint32]
    status: NDArray[np.uint8]
    errors: tuple[str, ...]

    def block(self, block: int, count: int) -> BlockData:
        shift = block % len(self.status)
        return BlockData(
            height=self.height[:count],
            width=self.width[:count],
            status=self.status[:count],
            errors=self.errors[:count],
            labels={name: np.roll(v, shift, axis=0)[:count] for name, v in self.labels.items()},
        )


def block_template(spec: StoreSpec) -> BlockTemplate:
    rng = np.random.default_rng(0)
    m, size = spec.crops_per_image, spec.block_size
    probs = teacher_like_probs(rng, TEMPLATE_IMAGES, m, spec.codec.num_classes)
    encoded = get_codec(spec.codec).encode(probs)
    tiles = -(-size // TEMPLATE_IMAGES)
    labels = {
        name: np.tile(values, (tiles,) + (1,) * (values.ndim - 1))[:size]
        for name, values in encoded.items()
    }
    return BlockTemplate(
        labels,
        rng.integers(240, 800, size=size).astype(np.uint32),
        rng.integers(240, 800, size=size).astype(np.uint32),
        np.ones(size, dtype=np.uint8),
        ("",) * size,
    )


def store_spec(manifest: Manifest, classes: int, args: argparse.Namespace) -> StoreSpec:
    return StoreSpec(
        **manifest.spec_fields(),
        codec=CodecSpec("marginal_smoothing", classes, k=5, value_dtype="uint8"),
        crops=CropSpec(crops_per_image=args.crops, seed=0),
        teacher=TeacherInfo("synthetic-teacher-like", input_size=TEACHER_INPUT),
        block_size=args.block_size,
    )


def resume_gaps(num_blocks: int) -> list[int]:
    """The blocks left uncommitted for the resume scan, spread over the store."""
    count = max(1, min(RESUME_GAPS, num_blocks // 10))
    return sorted({round(x) for x in np.linspace(0, num_blocks - 1, count + 2)[1:-1]})


# The operations ---------------------------------------------------------------------------


def build_manifest(
    rec: Recorder, paths: list[str], targets: NDArray[Any], nbytes: int
) -> tuple[Manifest, str]:
    sizes = np.full(len(paths), nbytes, dtype=np.uint64)

    def build() -> tuple[Manifest, str]:
        manifest = Manifest.build(paths, sizes, targets)
        return manifest, manifest.digest()

    return rec.timed("manifest build", build)


def write_blocks(
    store: LabelStore, template: BlockTemplate, blocks: Sequence[int], deadline: float = math.inf
) -> list[float]:
    """Seconds of each ``write_block`` (the block's data is made off the clock), up to the
    first block that ends after ``deadline``; a progress line every PROGRESS_S seconds."""
    seconds: list[float] = []
    shown = time.perf_counter()
    for block in blocks:
        start, stop = store.block_range(block)
        data = template.block(block, stop - start)
        t0 = time.perf_counter()
        store.write_block(block, data)
        seconds.append(time.perf_counter() - t0)
        if t0 + seconds[-1] - shown > PROGRESS_S:
            print(f"    block {block}: {seconds[-1]:.3f} s", flush=True)
            shown = time.perf_counter()
        if time.perf_counter() > deadline:
            break
    return seconds


def timed_writes(
    rec: Recorder, store: LabelStore, template: BlockTemplate, blocks: list[int], timeout: float
) -> bool:
    """Write ``blocks``: the first tenth, the middle, the last tenth, each with its own RSS
    peak.  False if ``timeout`` seconds ran out first (the rest of the size is skipped)."""
    tenth = max(1, len(blocks) // 10)
    parts = blocks[:tenth], blocks[tenth:-tenth], blocks[-tenth:]
    deadline = time.perf_counter() + timeout
    seconds: list[list[float]] = []
    peaks: list[tuple[float, float]] = []
    for part in parts:
        before = rss_mb()
        reset_peak_rss()
        seconds.append(write_blocks(store, template, part, deadline))
        peaks.append((rss_mb(key="VmHWM"), before))
        written = sum(map(len, seconds))
        print(f"    wrote {written}/{len(blocks)} blocks ({sum(map(sum, seconds)):.1f} s)")
        if len(seconds[-1]) < len(part):
            break
    rec.store_files = count_files(Path(store.location))
    first = seconds[0]
    note = f"blocks: {len(first)}"
    if written < len(blocks):
        note += f"; --build-timeout stopped the writes after {written} of {len(blocks)} blocks"
    rec.add(
        "write block, first tenth (mean)", statistics.mean(first), *peaks[0], "this process", note
    )
    if written < len(blocks):
        return False
    last = seconds[2]
    ratio = statistics.mean(last) / statistics.mean(first)
    rec.add(
        "write block, last tenth (mean)",
        statistics.mean(last),
        *peaks[2],
        "this process",
        f"blocks: {len(last)}; last/first {ratio:.2f}",
    )
    rec.add(
        "write all blocks (sum)",
        sum(map(sum, seconds)),
        max(p for p, _ in peaks),
        peaks[0][1],
        "this process",
        f"blocks: {len(blocks)}",
    )
    return True


def resume_scan(rec: Recorder, path: Path, expected: list[int]) -> None:
    todo = rec.timed("resume scan", lambda: LabelStore.open(path, "r+").uncommitted_blocks())
    assert todo == expected, (todo, expected)


def open_and_manifest(rec: Recorder, path: Path) -> None:
    rec.timed("open", lambda: LabelStore.open(path))
    rec.timed("manifest read", lambda store: store.manifest, prepare=lambda: LabelStore.open(path))
    rec.combine("open + manifest", ["open", "manifest read"])


def random_reads(rec: Recorder, path: Path, images: int) -> None:
    picks = iter(np.random.default_rng(1).integers(0, images, size=10 * RANDOM_READS).tolist())
    rec.timed(
        "read 1 image, first on a handle",
        lambda store: store.read_images([next(picks)]),
        prepare=lambda: LabelStore.open(path),
    )
    store = LabelStore.open(path)
    store.read_images([next(picks)])
    rec.timed(
        "read 1 image, later (median)",
        lambda: store.read_images([next(picks)]),
        repeats=RANDOM_READS,
    )


def cli_operations(rec: Recorder, path: Path, args: argparse.Namespace, classes: int) -> None:
    timed_cli(rec, "fkd --version", ["--version"], args.cli_timeout, classes)
    timed_cli(rec, "fkd inspect", ["inspect", str(path)], args.cli_timeout, classes)
    timed_cli(rec, "fkd verify", ["verify", str(path)], args.verify_timeout, classes)


def scan_folder(rec: Recorder, operation: str, tree: Path, expected: Manifest | None) -> None:
    source = rec.timed(operation, lambda: scan_source(tree))
    if expected is not None:
        assert source.manifest == expected, "the scanned folder does not match the manifest"


def generate_plan(
    rec: Recorder, tree: Path, workdir: Path, args: argparse.Namespace, classes: int
) -> None:
    arguments = [
        "generate",
        str(tree),
        "--out",
        str(workdir / "plan.zarr"),
        "--plan",
        "--plan-crops-per-s",
        "1000",
        "--teacher",
        TEACHER_SPEC,
        "--device",
        "cpu",
        "--crops-per-image",
        str(args.crops),
        "--block-size",
        str(args.block_size),
        "--workers",
        "0",
    ]
    timed_cli(rec, "fkd generate --plan", arguments, args.cli_timeout, classes)


def student_loader(rec: Recorder, tree: Path, path: Path) -> None:
    """``make_loader`` here, then the first batch from 2 fresh workers; manifest reads counted."""
    reads = ManifestReads()
    with reads.counting():
        rec.timed(
            "student dataset (make_loader)", lambda: make_loader(tree, path, **LOADER), repeats=1
        )
    rec.amend_last(note=f"{reads.take()} manifest reads; the folder scan included")
    scanned = scan_source(tree)  # off the clock: the dataset's own cost, without the scan
    with reads.counting():
        parts = rec.timed(
            "student dataset, folder scanned before",
            lambda: make_loader(tree, path, source=scanned, **LOADER),
            repeats=1,
        )
    rec.amend_last(note=f"{reads.take()} manifest reads")
    loader = parts[0]
    set_epoch(parts, 0)
    loader.worker_init_fn = reads.install
    iterator = rec.timed("first batch, 2 workers", lambda: _first_batch(loader), repeats=1)
    next(iterator)  # the other worker's batch: both have opened the store and read
    worker_peak = max((rss_mb(pid, "VmHWM") for pid in child_pids()), default=None)
    rec.amend_last(
        peak_rss_mb=worker_peak,
        rss_before_mb=None,
        rss_of="workers (VmHWM)",
        note=f"{reads.take()} manifest reads in the workers",
    )
    iterator._shutdown_workers()  # persistent workers: stop them now, not at exit


def _first_batch(loader: Any) -> Any:
    iterator = iter(loader)
    next(iterator)
    return iterator


def dask_task_prologue(path: Path, spec: StoreSpec, image_root: str) -> None:
    """What ``fkd.generate.dask_task.label_block`` does before and around labelling, minus the
    teacher: open r+, compare specs, the cached image source, the commit-marker check."""
    store = LabelStore.open(path, mode="r+")
    assert not diff_generation(store.spec, spec)
    dask_task.cached_source(store, image_root)
    store.is_committed(0)  # write_block checks its own block's marker before writing


def dask_prologues(rec: Recorder, path: Path, image_root: str) -> None:
    spec = LabelStore.open(path).spec  # the spec the client sends with each task

    def new_worker() -> None:
        dask_task._WORKER_CACHE.source_key = None  # as in a freshly started worker
        dask_task_prologue(path, spec, image_root)

    rec.timed("dask task prologue, new worker", new_worker)
    rec.timed("dask task prologue, later task", lambda: dask_task_prologue(path, spec, image_root))


# One size -------------------------------------------------------------------------------


def measure_size(images: int, classes: int, args: argparse.Namespace, workdir: Path) -> Recorder:
    rec = Recorder(images, args.repeats)
    path, tree = workdir / f"store-{images}.zarr", workdir / f"images-{images}"
    jpeg = tiny_jpeg()
    paths, targets = imagenet_paths(images, classes)
    manifest, _ = build_manifest(rec, paths, targets, len(jpeg))
    spec = store_spec(manifest, classes, args)
    start = time.perf_counter()
    template = block_template(spec)
    rec.setup_seconds["labels template"] = time.perf_counter() - start
    store = rec.timed("create", lambda: LabelStore.create(path, spec, manifest), repeats=1)
    rec.store_files = count_files(path)
    rec.amend_last(store_files=rec.store_files)
    gaps = resume_gaps(spec.num_blocks)
    todo = [b for b in range(spec.num_blocks) if b not in gaps]
    if not timed_writes(rec, store, template, todo, args.build_timeout):
        remove_store_and_tree(path, tree, args.keep)
        return rec
    resume_scan(rec, path, gaps)
    write_blocks(store, template, gaps)
    rec.store_files = count_files(path)
    open_and_manifest(rec, path)
    random_reads(rec, path, images)
    if not args.skip_slow_ops:
        cli_operations(rec, path, args, classes)
    if images <= args.max_image_tree:
        start = time.perf_counter()
        build_image_tree(tree, paths, jpeg)
        rec.setup_seconds["image folder"] = time.perf_counter() - start
        scan_folder(rec, "scan image folder", tree, manifest)
        if not args.skip_slow_ops:
            generate_plan(rec, tree, workdir, args, classes)
            student_loader(rec, tree, path)
    dask_prologues(rec, path, str(tree))
    remove_store_and_tree(path, tree, args.keep)
    return rec


def remove_store_and_tree(path: Path, tree: Path, keep: bool) -> None:
    if not keep:
        shutil.rmtree(path, ignore_errors=True)
        remove_tree(tree)


def measure_folder_scan(files: int, classes: int, workdir: Path, keep: bool) -> Recorder:
    rec = Recorder(files)
    tree = workdir / f"scan-{files}"
    paths, _ = imagenet_paths(files, classes)
    start = time.perf_counter()
    build_image_tree(tree, paths, tiny_jpeg())
    rec.setup_seconds["image folder"] = time.perf_counter() - start
    scan_folder(rec, "scan folder (fixed size)", tree, None)
    if not keep:
        remove_tree(tree)
    return rec


# Report ---------------------------------------------------------------------------------


def growth_exponents(measurements: Sequence[Measurement]) -> dict[str, dict[str, float]]:
    """log(t2/t1) / log(N2/N1) of each operation between consecutive sizes."""
    by_op: dict[str, dict[int, float | None]] = {}
    for m in measurements:
        by_op.setdefault(m.operation, {})[m.images] = m.seconds
    exponents: dict[str, dict[str, float]] = {}
    for op, times in by_op.items():
        sizes = sorted(times)
        for n1, n2 in pairwise(sizes):
            t1, t2 = times[n1], times[n2]
            if t1 and t2:
                exponents.setdefault(op, {})[f"{n1}->{n2}"] = math.log(t2 / t1) / math.log(n2 / n1)
    return exponents


def figure(value: float) -> str:
    return np.format_float_positional(value, precision=3, unique=False, fractional=False, trim="-")


def exponent(exponents: dict[str, dict[str, float]], operation: str, step: str) -> str:
    value = exponents.get(operation, {}).get(step)
    return "-" if value is None else f"{value:.2f}"


def cell(m: Measurement | None, what: str) -> str:
    if m is None:
        return "-"
    if what == "seconds":
        return figure(m.seconds) if m.seconds is not None else "timed out"
    if m.peak_rss_mb is None:
        return "-"
    if m.rss_before_mb is None:
        return f"{m.peak_rss_mb:.0f}"
    return f"+{m.peak_rss_mb - m.rss_before_mb:.0f}"


def print_table(
    measurements: Sequence[Measurement], exponents: dict[str, dict[str, float]]
) -> None:
    sizes = sorted({m.images for m in measurements if m.operation != "scan folder (fixed size)"})
    ops = list(dict.fromkeys(m.operation for m in measurements))
    at = {(m.operation, m.images): m for m in measurements}
    steps = [f"{a}->{b}" for a, b in pairwise(sizes)]
    width = max(map(len, ops)) + 2
    for what, title in (("seconds", "wall seconds"), ("rss", "peak RSS MB")):
        print(f"\n{title} (N = images){'; growth exponents' if what == 'seconds' else ''}")
        if what == "rss":
            print(
                "(a bare number: a subprocess's or worker's peak; +: growth during an "
                "operation in this process)"
            )
        head = "".join(f"{n:>12}" for n in sizes)
        if what == "seconds":
            head += "".join(f"{'exp ' + s.split('->')[1]:>14}" for s in steps)
        print(f"{'operation':<{width}}{head}")
        for op in ops:
            row = "".join(f"{cell(at.get((op, n)), what):>12}" for n in sizes)
            if op == "scan folder (fixed size)":
                [m] = [m for m in measurements if m.operation == op]
                row = f"{cell(m, what):>12}  ({m.images} files)"
            elif what == "seconds":
                row += "".join(f"{exponent(exponents, op, s):>14}" for s in steps)
            print(f"{op:<{width}}{row}")
    files = {m.images: m.store_files for m in measurements if m.operation == "open"}
    print("\nfiles in the store: " + ", ".join(f"N={n}: {f}" for n, f in files.items()))
    for m in measurements:
        if m.note and m.operation != "write all blocks (sum)":
            print(f"  N={m.images} {m.operation}: {m.note}")


def machine_info() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "fkd": fkd.__version__,
        "zarr": zarr.__version__,
        "numpy": np.__version__,
        "torch": torch.__version__,
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", default=None, help="comma-separated N (default 16000,128000,1281167)"
    )
    parser.add_argument(
        "--imagenet21k",
        action="store_true",
        help="N = 14,197,122 at C = 21,841 (instead of --sizes)",
    )
    parser.add_argument("--crops", type=int, default=8, help="crops per image M (default 8)")
    parser.add_argument("--block-size", type=int, default=256, help="default 256, fkd's")
    parser.add_argument(
        "--scan-files",
        type=int,
        default=128_000,
        help="files in the fixed folder-scan case (default 128000; 0: skip)",
    )
    parser.add_argument(
        "--max-image-tree",
        type=int,
        default=2_000_000,
        help="largest N whose image folder is built (default 2000000)",
    )
    parser.add_argument(
        "--verify-timeout",
        type=float,
        default=600.0,
        help="seconds before fkd verify is stopped (default 600)",
    )
    parser.add_argument(
        "--cli-timeout",
        type=float,
        default=3600.0,
        help="the same for the other CLI calls (default 3600)",
    )
    parser.add_argument(
        "--build-timeout",
        type=float,
        default=math.inf,
        help="seconds of block writes per size after which that size stops: its other "
        "operations are skipped (default: no limit)",
    )
    parser.add_argument(
        "--skip-slow-ops",
        action="store_true",
        help="leave out the CLI subprocesses and the DataLoader workers",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="runs of each repeatable operation, the median reported (default 3; an "
        f"operation whose runs took {REPEAT_BUDGET_S:.0f} s stops repeating)",
    )
    parser.add_argument("--workdir", type=Path, default=None, help="where to write (a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the stores and folders")
    parser.add_argument("--out", type=Path, default=None, help="also write every figure as JSON")
    args = parser.parse_args(argv)
    if args.imagenet21k and args.sizes:
        parser.error("give --sizes or --imagenet21k, not both")
    text = args.sizes or ",".join(map(str, IMAGENET_21K if args.imagenet21k else IMAGENET_1K))
    args.size_list = sorted({int(s.replace("_", "")) for s in text.split(",")})
    args.classes = CLASSES_21K if args.imagenet21k else CLASSES_1K
    if args.size_list[0] < 3 * args.block_size:
        parser.error(f"each N needs at least 3 blocks of {args.block_size}; lower --block-size")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    argv = list(sys.argv[1:] if argv is None else argv)
    workdir = Path(tempfile.mkdtemp(prefix="fkd-scale-bench-", dir=args.workdir))
    print(f"C={args.classes}, M={args.crops}, block size {args.block_size}; under {workdir}")
    recorders: list[Recorder] = []
    try:
        for images in args.size_list:
            print(f"N={images}", flush=True)
            recorders.append(measure_size(images, args.classes, args, workdir))
        if args.scan_files:
            print(f"folder scan of {args.scan_files} files", flush=True)
            recorders.append(measure_folder_scan(args.scan_files, args.classes, workdir, args.keep))
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    measurements = [m for rec in recorders for m in rec.measurements]
    exponents = growth_exponents(measurements)
    print_table(measurements, exponents)
    report = {
        "command": shlex.join(["python", "benchmarks/scale_bench.py", *argv]),
        "machine": machine_info(),
        "classes": args.classes,
        "crops_per_image": args.crops,
        "block_size": args.block_size,
        "sizes": args.size_list,
        "rss_method": "this process: VmHWM after /proc/self/clear_refs, with the RSS at the "
        "start (rss_before_mb); subprocesses: ru_maxrss (os.wait4 in a small launcher "
        "process); workers: their VmHWM",
        "measurements": [asdict(m) for m in measurements],
        "exponents": exponents,
        "setup_seconds": {rec.images: rec.setup_seconds for rec in recorders},
    }
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()

"""Fault-injection tools shared by the reliability tests and ``benchmarks/fault_campaign.py``.

Everything here runs the real thing: ``python -m fkd generate`` in a subprocess on
Fashion-MNIST PNGs (read from the Debian IDX files), a tiny seeded conv net as the
teacher (a ``module:factory`` spec written into a folder on ``PYTHONPATH``), real
SIGKILLs of the whole process group, and comparisons of the store's chunk files, byte
for byte, with an uninterrupted reference run.

The campaign (``Campaign.run``) repeats: start the generate command (a fresh run or a
resume), kill it at a seeded random moment, then check the store: every block that was
committed before the kill is still committed and byte-identical, every committed block
is byte-identical to the reference, a read of an uncommitted block is refused.  When a
run finishes unkilled, the finished store must pass ``verify_store`` and equal the
reference array by array; the store is then removed and a new episode starts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from fkd.datasets import read_split

FASHION_MNIST = Path(os.environ.get("FKD_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))
FASHION_CLASSES = (  # short folder names: the file-size-limit test sizes its limit on them
    "t-shirt", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "boot",
)  # fmt: skip

TEACHER_MODULE = "fault_tiny_teacher"
TEACHER_SPEC = f"{TEACHER_MODULE}:make"
TEACHER_SOURCE = textwrap.dedent(
    '''
    """A tiny seeded teacher for the fault tests (10 classes, 32 px, bilinear).

    FAULT_TEACHER_DELAY (seconds, default 0) is slept per forward pass, so that a run
    lasts long enough to be killed in the middle of its blocks; while the file named by
    FAULT_TEACHER_HOLD exists, forward passes wait (a run held in the middle).
    """
    import os
    import time

    import torch
    from torch import nn

    INFO = {
        "input_size": 32,
        "mean": (0.5, 0.5, 0.5),
        "std": (0.25, 0.25, 0.25),
        "interpolation": "bilinear",
        "class_names": ["t-shirt", "trouser", "pullover", "dress", "coat",
                        "sandal", "shirt", "sneaker", "bag", "boot"],
    }


    class Delayed(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            time.sleep(float(os.environ.get("FAULT_TEACHER_DELAY", "0")))
            hold = os.environ.get("FAULT_TEACHER_HOLD")
            while hold and os.path.exists(hold):
                time.sleep(0.01)
            return self.inner(x)


    def make():
        torch.manual_seed(0)
        net = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
        )
        return Delayed(net), dict(INFO)
    '''
)


# --------------------------------------------------------------------------- data


def fashion_mnist_folder(root: Path, count: int, offset: int = 0) -> Path:
    """``count`` Fashion-MNIST training images as PNGs in class folders under ``root``."""
    images, labels = read_split(FASHION_MNIST, "train")
    for i in range(offset, offset + count):
        folder = root / FASHION_CLASSES[int(labels[i])]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[i]).save(folder / f"{i:05d}.png")
    return root


def write_teacher(folder: Path) -> Path:
    """The tiny teacher module, written into ``folder`` (put it on ``PYTHONPATH``)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{TEACHER_MODULE}.py").write_text(TEACHER_SOURCE)
    return folder


def fkd_env(teacher_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of an ``fkd`` subprocess: one thread, the teacher on the path."""
    path = [str(teacher_dir), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(path),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        **extra,
    }


@dataclasses.dataclass(frozen=True)
class Setup:
    """A generate command: data folder, teacher folder and the options that shape the store."""

    data: Path
    teacher_dir: Path
    crops: int = 8
    block_size: int = 4
    batch_size: int = 32
    workers: int = 0

    def command(self, out: Path, *extra: str) -> list[str]:
        return [
            sys.executable, "-m", "fkd", "generate", str(self.data), "--out", str(out),
            "--teacher", TEACHER_SPEC, "-m", str(self.crops),
            "--block-size", str(self.block_size), "--batch-size", str(self.batch_size),
            "--workers", str(self.workers), "--device", "cpu", "-q", *extra,
        ]  # fmt: skip

    def run(self, out: Path, *extra: str, delay: float = 0.0) -> subprocess.CompletedProcess[str]:
        """The generate command to its end (raises with its stderr if it fails)."""
        env = fkd_env(self.teacher_dir, FAULT_TEACHER_DELAY=str(delay))
        done = subprocess.run(
            self.command(out, *extra), env=env, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise AssertionError(f"fkd generate failed ({done.returncode}): {done.stderr}")
        return done


def make_setup(root: Path, images: int = 96, **options: int) -> Setup:
    """Fashion-MNIST PNGs and the tiny teacher under ``root``."""
    data = fashion_mnist_folder(root / "data", images)
    return Setup(data, write_teacher(root / "teachers"), **options)


# --------------------------------------------------------------------------- store inspection


def block_arrays(store: Path) -> list[str]:
    """The arrays of a local store that a block's writer writes, one chunk (or shard) each."""
    from fkd.storage_formats import StoreSpec
    from fkd.storage_formats.layout import block_arrays as written_per_block
    from fkd.storage_formats.layout import store_layout

    spec = StoreSpec.from_dict(json.loads((store / "zarr.json").read_bytes())["attributes"]["fkd"])
    return sorted(a.name for a in written_per_block(store_layout(spec)))


def block_files(store: Path, block: int) -> list[Path]:
    """The chunk files of ``block`` (every array but the commit markers), present or not."""
    files = []
    for name in block_arrays(store):
        folder = store / name / "c" / str(block)
        if folder.is_dir():
            files.extend(sorted(p for p in folder.rglob("*") if p.is_file() and p.name.isdigit()))
        else:
            files.append(folder)
    return files


def block_digest(store: Path, block: int) -> str | None:
    """sha256 over the names and bytes of a block's chunk files; ``None`` if one is missing."""
    digest = hashlib.sha256()
    for path in block_files(store, block):
        if not path.is_file():
            return None
        digest.update(str(path.relative_to(store)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def committed(store: Path) -> set[int]:
    """Blocks whose commit marker file exists (fkd writes a marker only to commit)."""
    folder = store / "block_commit" / "c"
    if not folder.is_dir():
        return set()
    return {int(p.name) for p in folder.iterdir() if p.name.isdigit()}


def written_bytes(store: Path, block: int, create_arrays: Sequence[str]) -> tuple[int, int, int]:
    """(files, bytes, expected files) of the block-written chunk files of ``block`` on disk."""
    files = nbytes = expected = 0
    for name in block_arrays(store):
        if name in create_arrays:
            continue
        expected += 1
        folder = store / name / "c" / str(block)
        present = (
            [folder] if folder.is_file() else list(folder.rglob("*")) if folder.is_dir() else []
        )
        for path in present:
            if path.is_file() and path.name.isdigit():  # not a *.partial temporary
                files += 1
                nbytes += path.stat().st_size
    return files, nbytes, expected


def debris(root: Path) -> tuple[int, int]:
    """(count, bytes) of leftovers of killed writes under ``root``: zarr's ``*.partial``
    temporary files and fkd's ``.NAME.creating-PID`` staging folders."""
    count = nbytes = 0
    for path in root.rglob("*"):
        if path.name.endswith(".partial") and path.is_file():
            count += 1
            nbytes += path.stat().st_size
        elif ".creating-" in path.name and path.is_dir():
            count += 1
            nbytes += sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return count, nbytes


def arrays_equal(a: Path, b: Path) -> list[str]:
    """Names of the arrays whose values (or dtypes) differ between two stores."""
    from fkd.storage_formats import LabelStore

    first, second = LabelStore.open(a), LabelStore.open(b)
    differing = []
    for name in first.layout:
        x, y = np.asarray(first.group[name][...]), np.asarray(second.group[name][...])
        if x.dtype != y.dtype or x.shape != y.shape or not np.array_equal(x, y):
            differing.append(name)
    return differing


# --------------------------------------------------------------------------- the campaign


@dataclasses.dataclass
class CampaignResult:
    """The figures of a kill/resume campaign (see ``Campaign``)."""

    kills: int = 0
    runs: int = 0
    episodes: int = 0
    kills_before_first_commit: int = 0
    blocks_redone: int = 0
    bytes_redone: int = 0
    torn_blocks: int = 0
    blocks_lost: int = 0
    mismatches: int = 0
    refused_reads: int = 0
    debris_files: int = 0
    debris_bytes: int = 0
    verify_failures: int = 0
    seconds: float = 0.0
    problems: list[str] = dataclasses.field(default_factory=list)
    runner: str = "local"
    processes_killed: int = 0
    orphans: int = 0
    kills_mid_block: int = 0
    failed_runs: int = 0
    workers_not_back: int = 0

    def lines(self) -> list[str]:
        if self.runner == "dask-worker":
            what = (
                f"kills survived: {self.kills} dask worker processes SIGKILLed "
                f"({self.kills_mid_block} holding a block) in {self.runs} runs; "
                f"{self.episodes} stores finished"
            )
        else:
            what = (
                f"kills survived: {self.kills} (in {self.runs} runs, {self.episodes} stores "
                f"finished; {self.kills_before_first_commit} before the run's first commit)"
            )
        dask = []
        if self.runner == "dask-client":
            dask.append(
                f"processes killed with the client's process group: {self.processes_killed} "
                f"(client and LocalCluster workers); orphans left alive: {self.orphans}"
            )
        if self.runner == "dask-worker":
            dask.append(
                f"runs ended by KilledWorker (a block lost with its worker more than "
                f"allowed-failures times), then resumed: {self.failed_runs}; "
                f"orphans left alive: {self.orphans}; runs started with a killed worker "
                f"not back after 120 s: {self.workers_not_back}"
            )
        return [
            what,
            *dask,
            f"bytes redone: {self.bytes_redone} (chunk files of {self.blocks_redone} "
            f"uncommitted blocks found on disk after a kill, rewritten by the resume; "
            f"{self.torn_blocks} of them torn, i.e. only some arrays written)",
            f"blocks lost: {self.blocks_lost}",
            f"mismatches: {self.mismatches}",
            f"reads of uncommitted blocks refused: {self.refused_reads}; "
            f"finished stores failing verify: {self.verify_failures}",
            f"most debris seen after a kill: {self.debris_files} files, {self.debris_bytes} "
            "bytes (zarr *.partial temporaries, fkd .creating-PID staging folders)",
            f"wall: {self.seconds:.0f} s",
        ]


class Campaign:
    """Kill ``fkd generate`` at seeded random moments, resume, and check nothing is lost.

    The reference is a store made by the same command without interruption.  Each run
    is killed, with probability ``early``, at a uniform moment before its first commit
    would be expected (start-up, store creation, the first block); otherwise at a
    uniform moment between its first new commit and its expected end.  ``delay`` is the
    teacher's sleep per forward pass, which stretches the runs so the kills land
    inside them.
    """

    def __init__(
        self,
        setup: Setup,
        work: Path,
        seed: int,
        delay: float = 0.05,
        early: float = 0.3,
        workers: Sequence[int] = (0,),
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.setup = setup
        self.work = work
        self.reference = work / "reference.zarr"
        self.store = work / "labels.zarr"
        self.rng = random.Random(seed)
        self.delay = delay
        self.early = early
        self.workers = tuple(workers)
        self.log = log or (lambda line: None)
        self.num_blocks = 0
        self.create_arrays: list[str] = []
        self.expected: dict[int, str | None] = {}
        self.startup = 0.0
        self.per_block = 0.0

    def make_reference(self) -> None:
        """One unkilled run: the reference store, and the timings the kills are drawn from
        (start-up to the first commit, and seconds per block between the first and last)."""
        from fkd.storage_formats import LabelStore

        self.work.mkdir(parents=True, exist_ok=True)
        process = self._start(self.reference, workers=self.workers[0])
        started = time.monotonic()
        first = last = None
        seen: set[int] = set()
        while process.poll() is None:
            now = committed(self.reference) if self.reference.exists() else set()
            if now - seen:
                last = time.monotonic() - started
                first = first or last
                seen = now
            time.sleep(0.005)
        if process.returncode != 0:
            raise AssertionError(f"the reference run failed: {process.communicate()[1]}")
        store = LabelStore.open(self.reference)
        self.num_blocks = store.num_blocks
        assert store.is_complete() and first is not None and last is not None
        self.startup = first
        self.per_block = max((last - first) / max(self.num_blocks - 1, 1), 1e-3)
        self.create_arrays = [n for n, a in store.layout.items() if a.writer == "create"]
        self.expected = {b: block_digest(self.reference, b) for b in range(self.num_blocks)}
        self.log(f"reference: first commit after {first:.2f} s, {self.per_block:.3f} s/block")

    def run(self, kills: int, seconds: float | None = None) -> CampaignResult:
        """Kill runs until ``kills`` kills have landed (or ``seconds`` have passed);
        finish the last store unkilled."""
        if not self.startup:
            self.make_reference()
        result = CampaignResult()
        started = time.monotonic()
        end = started + (seconds or float("inf"))
        while result.kills < kills and time.monotonic() < end:
            self._one_run(result, kill=True)
        while self.store.exists():
            self._one_run(result, kill=False)
        result.seconds = time.monotonic() - started
        return result

    def _start(self, out: Path, workers: int) -> subprocess.Popen[str]:
        setup = dataclasses.replace(self.setup, workers=workers)
        env = fkd_env(setup.teacher_dir, FAULT_TEACHER_DELAY=str(self.delay))
        return subprocess.Popen(
            setup.command(out), env=env, start_new_session=True, text=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip

    def _one_run(self, result: CampaignResult, kill: bool) -> None:
        before = committed(self.store) if self.store.exists() else set()
        digests = {b: block_digest(self.store, b) for b in before}
        remaining = self.num_blocks - len(before)
        process = self._start(self.store, workers=self.rng.choice(self.workers))
        result.runs += 1
        early = self.rng.random() < self.early
        if early:
            wait = self.rng.uniform(0, self.startup)
        else:
            wait = self.rng.uniform(0, self.per_block * max(remaining - 1, 1))
        killed = False
        if kill:
            killed = self._kill_later(process, before, early, wait)
        _, stderr = process.communicate()
        if killed:
            result.kills += 1
            if not (committed(self.store) - before if self.store.exists() else set()):
                result.kills_before_first_commit += 1
        elif process.returncode != 0:
            raise AssertionError(f"fkd generate exited {process.returncode}: {stderr}")
        self._check_after(result, before, digests)
        self.log(f"run {result.runs}: {'killed' if killed else 'finished'}, "
                 f"committed {len(committed(self.store)) if self.store.exists() else 0}/"
                 f"{self.num_blocks}, kills {result.kills}")  # fmt: skip

    def _kill_later(
        self, process: subprocess.Popen[str], before: set[int], early: bool, wait: float
    ) -> bool:
        """SIGKILL the run's process group after ``wait`` (counted from its first new
        commit unless ``early``); ``False`` if it ended first."""
        deadline = time.monotonic() + wait
        if not early:
            deadline = float("inf")
            while process.poll() is None:
                if self.store.exists() and committed(self.store) - before:
                    deadline = time.monotonic() + wait
                    break
                time.sleep(0.005)
        while process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        if process.poll() is not None:
            return False
        self._kill(process)
        return True

    def _kill(self, process: subprocess.Popen[str]) -> None:
        """SIGKILL the run's whole process group."""
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def _differing_files(self, block: int) -> list[str]:
        """The chunk files of ``block`` that differ from the reference's (or are missing);
        the store is copied to ``work/evidence-RUN`` for inspection."""
        differing = []
        for path in block_files(self.reference, block):
            mine = self.store / path.relative_to(self.reference)
            if not mine.is_file() or mine.read_bytes() != path.read_bytes():
                size = mine.stat().st_size if mine.is_file() else None
                differing.append(f"{path.relative_to(self.reference)} ({size} vs "
                                 f"{path.stat().st_size} bytes)")  # fmt: skip
        evidence = self.work / f"evidence-{block}-{time.monotonic_ns()}"
        shutil.copytree(self.store, evidence, symlinks=True)
        return differing

    def _check_after(
        self, result: CampaignResult, before: set[int], digests: dict[int, str | None]
    ) -> None:
        from fkd.storage_formats import LabelStore, UncommittedBlockError
        from fkd.storage_formats.verify import verify_store

        count, nbytes = debris(self.work)
        if count > result.debris_files:
            result.debris_files, result.debris_bytes = count, nbytes
        if not self.store.exists():
            return  # killed before the store was created (staging is counted as debris)
        now = committed(self.store)
        for block in before:
            if block not in now or block_digest(self.store, block) != digests[block]:
                result.blocks_lost += 1
                result.problems.append(f"block {block} was committed and is now lost or changed")
        for block in now:
            if block_digest(self.store, block) != self.expected[block]:
                result.mismatches += 1
                result.problems.append(
                    f"run {result.runs}: committed block {block} differs from the reference "
                    f"in {self._differing_files(block)}"
                )
        pending = sorted(set(range(self.num_blocks)) - now)
        for block in pending:
            files, nbytes, expected = written_bytes(self.store, block, self.create_arrays)
            if files:
                result.blocks_redone += 1
                result.bytes_redone += nbytes
                result.torn_blocks += int(files < expected)
        if pending:
            store = LabelStore.open(self.store)
            block = self.rng.choice(pending)
            try:
                store.read_images(np.arange(*store.block_range(block)))
            except UncommittedBlockError:
                result.refused_reads += 1
            else:
                result.problems.append(f"uncommitted block {block} was read")
                result.mismatches += 1
            return
        problems = verify_store(str(self.store))
        if problems:
            result.verify_failures += 1
            result.problems.extend(p.line() for p in problems)
        differing = arrays_equal(self.store, self.reference)
        if differing:
            result.mismatches += 1
            result.problems.append(f"finished store differs from the reference in {differing}")
        result.episodes += 1
        shutil.rmtree(self.store)


# --------------------------------------------------------------------------- dask campaigns

TOKEN_VARIABLE = "FKD_FAULT_CAMPAIGN"

CLUSTER_SCRIPT = textwrap.dedent(
    """
    import sys

    from fkd.generate.dask_cluster import local_cluster

    with local_cluster(int(sys.argv[1])) as cluster:
        print(cluster.scheduler_address, flush=True)
        sys.stdin.read()  # until the campaign closes our stdin
    """
)


def tagged_processes(token: str) -> list[Any]:
    """Live (not zombie) processes whose environment carries ``FKD_FAULT_CAMPAIGN=token``:
    every process a campaign started, and every process those started in turn."""
    import psutil

    found = []
    for process in psutil.process_iter():
        try:
            mine = process.environ().get(TOKEN_VARIABLE) == token
            if mine and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except (psutil.Error, OSError):
            continue
    return found


def orphans_after(token: str, wait: float) -> list[Any]:
    """The tagged processes still alive ``wait`` seconds from now (killed, then returned)."""
    import psutil

    deadline = time.monotonic() + wait
    alive = tagged_processes(token)
    while alive and time.monotonic() < deadline:
        _, alive = psutil.wait_procs(alive, timeout=0.2)
        alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()
    return alive


class DaskClientCampaign(Campaign):
    """The kill/resume campaign with ``fkd generate --cluster local:K`` as the run.

    Each kill is a SIGKILL of the run's whole process group: the client and the
    LocalCluster worker processes it spawned.  After each kill every process that
    carried the campaign's token in its environment must be gone within ``grace``
    seconds (an orphan is counted, reported and killed).  The same checks as the
    single-process campaign follow; the reference is an unkilled ``--cluster`` run.
    """

    runner = "dask-client"

    def __init__(self, *args: Any, cluster_workers: int = 2, grace: float = 10.0,
                 **kwargs: Any) -> None:  # fmt: skip
        super().__init__(*args, **kwargs)
        self.cluster_workers = cluster_workers
        self.grace = grace
        self.token = f"{os.getpid()}-{time.monotonic_ns()}"
        self.group_sizes: list[int] = []  # processes in each killed group
        self._orphans: list[str] = []

    def _start(self, out: Path, workers: int) -> subprocess.Popen[str]:
        env = fkd_env(self.setup.teacher_dir, FAULT_TEACHER_DELAY=str(self.delay))
        env[TOKEN_VARIABLE] = self.token
        command = dataclasses.replace(self.setup, workers=0).command(
            out, "--cluster", f"local:{self.cluster_workers}"
        )
        return subprocess.Popen(
            command, env=env, start_new_session=True, text=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip

    def run(self, kills: int, seconds: float | None = None) -> CampaignResult:
        result = super().run(kills, seconds)
        result.runner = self.runner
        result.processes_killed = sum(self.group_sizes)
        result.orphans = len(self._orphans)
        result.problems.extend(self._orphans)
        return result

    def _kill(self, process: subprocess.Popen[str]) -> None:
        """SIGKILL the client's process group; none of its processes may survive it."""
        group = {process.pid, *(p.pid for p in tagged_processes(self.token))}
        super()._kill(process)
        self.group_sizes.append(len(group))
        for orphan in orphans_after(self.token, self.grace):
            self._orphans.append(
                f"process {orphan.pid} ({'in' if orphan.pid in group else 'not in'} the "
                f"group seen before the kill) outlived its killed client"
            )


class DaskWorkerCampaign(Campaign):
    """SIGKILL dask worker processes at seeded random moments while ``fkd generate
    --scheduler ADDRESS`` runs to its end.

    The campaign starts a LocalCluster of ``cluster_workers`` single-thread workers
    (in a subprocess, ``CLUSTER_SCRIPT``; each worker's nanny restarts it when it is
    killed) and runs the generate command against it.  During each run it kills a
    worker, chosen at random among the registered ones, after a random gap drawn
    uniformly from [0, ``gap``] seconds, again and again until the run ends.  The gap
    is counted from the moment every worker is registered again (the last victim is
    back) and one of them holds a block; ``gap`` defaults to half the reference run's
    block phase (first to last commit).  After each kill: the blocks the
    victim held that are not committed count as redone (their chunk files on disk),
    and every committed block must be byte-identical to the reference.

    A run must finish with exit status 0, report every block it was given as written,
    and leave a store that verifies and equals the reference array by array and byte
    by byte.  A block whose workers died more than ``allowed-failures`` times fails
    its run (``KilledWorker``): such runs are counted in ``failed_runs`` and the same
    command is run again to resume.
    """

    runner = "dask-worker"

    def __init__(self, *args: Any, cluster_workers: int = 2, gap: float | None = None,
                 **kwargs: Any) -> None:  # fmt: skip
        super().__init__(*args, **kwargs)
        self.cluster_workers = cluster_workers
        self.gap = gap
        self.token = f"{os.getpid()}-{time.monotonic_ns()}"
        self.address = ""
        self.client: Any = None
        self.pids: dict[str, int] = {}

    def _start(self, out: Path, workers: int) -> subprocess.Popen[str]:
        env = fkd_env(self.setup.teacher_dir, FAULT_TEACHER_DELAY=str(self.delay))
        env[TOKEN_VARIABLE] = self.token
        command = dataclasses.replace(self.setup, workers=0).command(
            out, "--scheduler", self.address, "--json"
        )
        return subprocess.Popen(
            command, env=env, start_new_session=True, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip

    @contextlib.contextmanager
    def cluster(self) -> Iterator[None]:
        """The LocalCluster subprocess and a client of it; every tagged process gone after."""
        from distributed import Client

        env = fkd_env(self.setup.teacher_dir, FAULT_TEACHER_DELAY=str(self.delay))
        env[TOKEN_VARIABLE] = self.token
        process = subprocess.Popen(
            [sys.executable, "-c", CLUSTER_SCRIPT, str(self.cluster_workers)], env=env,
            start_new_session=True, text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )  # fmt: skip
        try:
            assert process.stdout is not None and process.stdin is not None
            self.address = process.stdout.readline().strip()
            assert self.address.startswith("tcp://"), "the campaign's cluster did not start"
            with Client(self.address, timeout=60) as client:
                self.client = client
                client.wait_for_workers(self.cluster_workers, timeout=120)
                yield
            process.stdin.close()
            process.wait(timeout=60)
        finally:
            self.client = None
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            orphans_after(self.token, 10.0)

    def run(self, kills: int, seconds: float | None = None) -> CampaignResult:
        """Kill workers until ``kills`` kills have landed (or ``seconds`` have passed);
        finish a failed store unkilled."""
        result = CampaignResult(runner=self.runner)
        started = time.monotonic()
        end = started + (seconds or float("inf"))
        with self.cluster():
            if not self.startup:
                self.make_reference()
            gap = self.gap or self.per_block * self.num_blocks / 2
            while result.kills < kills and time.monotonic() < end:
                self._worker_run(result, kills - result.kills, gap, end)
            while self.store.exists():
                self._worker_run(result, 0, gap, end)
        result.orphans = len(tagged_processes(self.token))
        if result.orphans:
            result.problems.append(f"{result.orphans} processes outlived the campaign")
        result.seconds = time.monotonic() - started
        return result

    def _worker_pids(self) -> dict[str, int]:
        """Address -> pid of the registered workers (asked of each new worker once)."""
        addresses = set(self.client.scheduler_info(n_workers=-1)["workers"])
        self.pids = {a: p for a, p in self.pids.items() if a in addresses}
        new = sorted(addresses - set(self.pids))
        if new:
            answers = self.client.run(os.getpid, workers=new, on_error="return")
            self.pids.update({a: p for a, p in answers.items() if isinstance(p, int)})
        return self.pids

    def _whole_and_busy(self) -> bool:
        """Whether every worker is registered (a killed one is back) and one holds a block."""
        processing = self.client.processing()
        return len(processing) == self.cluster_workers and any(processing.values())

    def _worker_run(self, result: CampaignResult, budget: int, gap: float, end: float) -> None:
        before = committed(self.store) if self.store.exists() else set()
        digests = {b: block_digest(self.store, b) for b in before}
        try:
            self.client.wait_for_workers(self.cluster_workers, timeout=120)
        except TimeoutError:  # no more kills until it is back (they need every worker)
            result.workers_not_back += 1
            self.log("a killed worker was not back within 120 s; the run goes on without it")
        process = self._start(self.store, 0)
        result.runs += 1
        kills = 0
        next_kill: float | None = None
        while process.poll() is None:
            now = time.monotonic()
            if kills >= budget or now >= end:
                pass
            elif next_kill is None:
                if self._whole_and_busy():
                    next_kill = now + self.rng.uniform(0, gap)
            elif now >= next_kill:
                kills += self._kill_a_worker(result)
                next_kill = None
            time.sleep(0.05)
        stdout, stderr = process.communicate()
        if process.returncode == 0:
            summary = json.loads(stdout.strip().splitlines()[-1])
            expected = (self.num_blocks - len(before), len(before))
            if (summary["blocks_written"], summary["blocks_skipped"]) != expected:
                result.problems.append(
                    f"run {result.runs}: wrote/skipped {summary['blocks_written']}/"
                    f"{summary['blocks_skipped']} blocks, expected {expected}"
                )
                result.mismatches += 1
        elif "allowed-failures" in stderr:
            result.failed_runs += 1
        else:
            raise AssertionError(f"fkd generate exited {process.returncode}: {stderr}")
        self._check_after(result, before, digests)
        self.log(f"run {result.runs}: {kills} workers killed, "
                 f"{'finished' if process.returncode == 0 else 'failed (KilledWorker)'}, "
                 f"kills {result.kills}, lost {result.blocks_lost}, mismatches "
                 f"{result.mismatches}, problems {len(result.problems)}")  # fmt: skip

    def _kill_a_worker(self, result: CampaignResult) -> int:
        """SIGKILL one registered worker chosen at random; 1 if one was killed."""
        pids = self._worker_pids()
        if not pids:
            return 0
        victim = self.rng.choice(sorted(pids))
        held = self.client.processing(workers=[victim]).get(victim, ())
        try:
            os.kill(pids[victim], signal.SIGKILL)
        except ProcessLookupError:
            return 0
        del self.pids[victim]
        result.kills += 1
        blocks = {int(str(key).split("-")[2]) for key in held if str(key).startswith("fkd-block-")}
        result.kills_mid_block += bool(blocks)
        if self.store.exists():
            now = committed(self.store)
            for block in blocks - now:
                files, nbytes, expected = written_bytes(self.store, block, self.create_arrays)
                if files:
                    result.blocks_redone += 1
                    result.bytes_redone += nbytes
                    result.torn_blocks += int(files < expected)
            for block in now:
                if block_digest(self.store, block) != self.expected[block]:
                    result.mismatches += 1
                    result.problems.append(
                        f"kill {result.kills}: committed block {block} differs from the "
                        f"reference in {self._differing_files(block)}"
                    )
        return 1


# --------------------------------------------------------------------------- loader soak


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

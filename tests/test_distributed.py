"""``fkd generate`` on dask.distributed: real LocalClusters of worker processes, no mocks.

Every store made here is compared, array by array, with a single-process run of the
same command.  The teacher is a tiny seeded conv net (``distributed_helpers``) that
the worker processes import themselves; ``make_slow`` has the same weights but sleeps
per block, so that a worker or the client can be killed mid-run.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dask
import numpy as np
import psutil
import pytest
from click.testing import CliRunner
from distributed import Client
from generate_helpers import (
    committed_markers,
    fkd,
    one_line_error,
    photo_patches,
    save_patches,
    succeeded,
)
from PIL import Image
from store_factory import read_all

from fkd.cli.main import cli
from fkd.generate import GenerateConfig, GenerateError, generate
from fkd.generate.dask_cluster import local_cluster
from fkd.generate.dask_runner import generate_on_client
from fkd.generate.dask_task import BlockTask, label_block
from fkd.storage_formats import LabelStore

TESTS = Path(__file__).parent
IMAGES = 20
BLOCK = 2
BLOCKS = IMAGES // BLOCK
TINY_ARGS = ("-m", "8", "--block-size", str(BLOCK), "--device", "cpu", "-q")
FAST = ("--teacher", "distributed_helpers:make", *TINY_ARGS)
SLOW = ("--teacher", "distributed_helpers:make_slow", *TINY_ARGS)


# --------------------------------------------------------------------------- helpers


def assert_same_arrays(a: Path, b: Path, blocks: list[int] | None = None) -> None:
    """Every array of two stores holds the same values (only ``blocks``' images if given)."""
    arrays_a, arrays_b = read_all(LabelStore.open(a)), read_all(LabelStore.open(b))
    assert arrays_a.keys() == arrays_b.keys()
    rows = None if blocks is None else [i for b in blocks for i in range(b * BLOCK, b * BLOCK + 2)]
    for name, values in arrays_a.items():
        other = arrays_b[name]
        if rows is not None:
            if name == "block_commit":
                continue
            values, other = values[rows], other[rows]
        assert values.dtype == other.dtype, name
        np.testing.assert_array_equal(values, other, err_msg=name)


def chunk_files(store: Path) -> dict[str, bytes]:
    """The bytes of every chunk file (metadata aside, which records the teacher's name)."""
    return {
        str(path.relative_to(store)): path.read_bytes()
        for path in sorted(store.rglob("*"))
        if path.is_file() and path.name != "zarr.json"
    }


def config(data: Path, out: Path, teacher: str = "make", **options: object) -> GenerateConfig:
    return GenerateConfig(
        data=data, out=str(out), teachers=(f"distributed_helpers:{teacher}",),
        crops_per_image=8, block_size=BLOCK, device="cpu", workers=0, **options,  # type: ignore[arg-type]
    )  # fmt: skip


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 small real-photo patches in two class folders (10 blocks of 2)."""
    return save_patches(tmp_path_factory.mktemp("images"), photo_patches(IMAGES))


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, images: Path) -> Path:
    """The single-process store every dask run must equal."""
    out = tmp_path_factory.mktemp("reference") / "labels.zarr"
    succeeded(fkd("generate", images, "--out", out, *FAST, "--workers", "0"))
    return out


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    """A client of one LocalCluster of 2 worker processes, shared by the tests below."""
    with local_cluster(2) as cluster, Client(cluster) as shared:
        yield shared


@pytest.fixture
def two_workers(client: Client) -> Client:
    """The shared client, once both workers are up (a test may have killed one)."""
    client.wait_for_workers(2, timeout=60)
    return client


# --------------------------------------------------------------------------- equality


@pytest.mark.slow
def test_cluster_local_2_equals_one_process(
    images: Path, reference: Path, tmp_path: Path, client: Client
) -> None:
    out = tmp_path / "dask.zarr"
    stdout = succeeded(fkd("generate", images, "--out", out, *FAST, "--cluster", "local:2"))
    lines = stdout.splitlines()
    assert lines[0] == (
        f"images {IMAGES}, crops {IMAGES * 8}, failures 0, blocks written {BLOCKS}, "
        "skipped (already committed) 0"
    )
    assert "on 2 dask worker(s)" in lines[2]
    assert LabelStore.open(out).is_complete()
    assert_same_arrays(out, reference)
    assert chunk_files(out) == chunk_files(reference)
    # The same command on another cluster (--scheduler) finds nothing left to do.
    again = fkd("generate", images, "--out", out, *FAST, "--scheduler", client.scheduler.address)
    assert succeeded(again).startswith(
        f"images 0, crops 0, failures 0, blocks written 0, skipped (already committed) {BLOCKS}"
    )


# --------------------------------------------------------------------------- poison block


@pytest.fixture(scope="module")
def poisoned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 images in one folder; a/img4.png (block 2) is flat, so make_nan gives NaN on it."""
    root = tmp_path_factory.mktemp("poisoned")
    folder = root / "a"
    folder.mkdir()
    patches = photo_patches(8)
    patches[4] = np.full((28, 28, 3), 255, dtype=np.uint8)
    for i, patch in enumerate(patches):
        Image.fromarray(patch).save(folder / f"img{i}.png")
    return root


def test_poison_block_ends_the_run_naming_it_and_committed_blocks_stay(
    poisoned: Path, tmp_path: Path, two_workers: Client
) -> None:
    address = two_workers.scheduler.address
    out = tmp_path / "poisoned.zarr"
    teacher = ("--teacher", "distributed_helpers:make_nan", *TINY_ARGS)
    args = ("generate", poisoned, "--out", out, *teacher, "--scheduler", address)
    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        result = pool.submit(fkd, *args).result(timeout=120)  # not a hang
    assert time.monotonic() - start < 120
    one_line_error(
        result,
        "block 2 (images 4..5: a/img4.png .. a/img5.png) failed on a dask worker",
        "the teacher returned NaN or infinity",
        "re-run the same command to resume",
    )
    store = LabelStore.open(out)
    committed = store.committed_blocks()
    assert 2 not in committed
    # The same command on the same cluster fails the same way (no endless retries), and
    # what was committed stays committed and equals a single-process run of those blocks.
    again = fkd(*args)
    one_line_error(again, "block 2 (images 4..5")
    assert set(committed) <= set(LabelStore.open(out).committed_blocks())
    plain = tmp_path / "plain.zarr"
    succeeded(fkd("generate", poisoned, "--out", plain, *TINY_ARGS, "--teacher",
                  "distributed_helpers:make", "--workers", "0"))  # fmt: skip
    done = LabelStore.open(out).committed_blocks()
    assert done and 2 not in done
    assert_same_arrays(out, plain, blocks=done)
    arrays = read_all(LabelStore.open(out))
    for name in ("image_status", "label_index", "label_value"):
        assert not arrays[name][4:6].any(), name  # nothing of block 2 was written


@pytest.mark.slow
def test_block_that_kills_its_workers_ends_the_run_after_allowed_failures(
    poisoned: Path, tmp_path: Path
) -> None:
    """A block whose teacher takes the worker down is re-run on a fresh worker (that is
    how a lost worker's block is recovered), but only allowed-failures times: here 0."""
    out = tmp_path / "crashing.zarr"
    teacher = ("--teacher", "distributed_helpers:make_crash", *TINY_ARGS)
    once = {
        "distributed.scheduler.allowed-failures": 0,
        "distributed.scheduler.worker-saturation": 1.0,  # no second block queued beside it
    }
    with dask.config.set(once):
        result = fkd("generate", poisoned, "--out", out, *teacher, "--cluster", "local:1")
    one_line_error(
        result,
        "block 2 (images 4..5: a/img4.png .. a/img5.png) was lost with its dask worker more "
        "than distributed.scheduler.allowed-failures times",
    )
    assert 2 not in LabelStore.open(out).committed_blocks()


def test_decode_workers_in_daemonic_dask_workers_are_a_one_line_error(
    images: Path, tmp_path: Path, two_workers: Client
) -> None:
    address = two_workers.scheduler.address
    result = fkd("generate", images, "--out", tmp_path / "x.zarr", *FAST, "--workers", "1",
                 "--scheduler", address)  # fmt: skip
    one_line_error(result, "needs non-daemonic worker processes", "DAEMON=False")


# --------------------------------------------------------------------------- shards and races


def test_a_shard_and_the_dask_runner_finish_one_store(
    images: Path, reference: Path, tmp_path: Path, two_workers: Client
) -> None:
    out = tmp_path / "mixed.zarr"
    first = generate(config(images, out, shard=(0, 2)), progress=False)
    assert first.blocks_written == BLOCKS // 2 and not first.complete
    second = generate_on_client(config(images, out), two_workers, progress=False)
    assert second.lines()[0].endswith(
        f"blocks written {BLOCKS // 2}, skipped (already committed) {BLOCKS // 2}"
    )
    assert second.complete
    assert_same_arrays(out, reference)


def test_two_runners_writing_the_same_blocks_at_once_give_identical_bytes(
    images: Path, reference: Path, tmp_path: Path, two_workers: Client
) -> None:
    """A single process and the dask runner label one new store at the same time."""
    out = tmp_path / "raced.zarr"
    slow = config(images, out, "make_slow")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        alone = pool.submit(generate, slow, False)
        dask_run = generate_on_client(slow, two_workers, progress=False)
        single = alone.result(timeout=300)
    written = single.blocks_written + dask_run.blocks_written
    assert written > BLOCKS, (single.blocks_written, dask_run.blocks_written)  # overlap
    assert LabelStore.open(out).is_complete()
    assert_same_arrays(out, reference)
    assert chunk_files(out) == chunk_files(reference)


# --------------------------------------------------------------------------- --plan, --help


def test_plan_counts_images_blocks_and_bytes_and_writes_nothing(
    images: Path, tmp_path: Path
) -> None:
    out = tmp_path / "planned.zarr"
    lines = succeeded(fkd("generate", images, "--out", out, *FAST, "--plan")).splitlines()
    assert not out.exists()
    assert lines[0] == f"images {IMAGES}, blocks {BLOCKS} of {BLOCK} images (last block 2)"
    assert lines[1] == f"crops {IMAGES * 8} (M=8), codec marginal_smoothing top-5 uint8, 10 classes"
    store = re.match(
        r"store ~([\d.]+) (B|KB): labels ([\d.]+) B/crop measured .* (\d+) B/crop uncompressed\) "
        r"\+ per-image arrays (\d+) B/image",
        lines[2],
    )
    assert store, lines[2]
    label_bytes, raw, image_bytes = float(store[3]), int(store[4]), int(store[5])
    assert raw == 5 * 1 + 5 * 1  # 5 uint8 class indices (10 classes) and 5 uint8 values
    assert 0 < label_bytes <= raw + 1
    expected = IMAGES * 8 * label_bytes + IMAGES * image_bytes
    shown = float(store[1]) * (1000 if store[2] == "KB" else 1)
    assert abs(shown - expected) <= 0.06 * expected
    assert "crops/s measured on cpu" in lines[3] and "64 crops of the first" in lines[3]
    # A given throughput is used as given; a shard plans its own blocks.
    given = fkd("generate", images, "--out", out, *FAST, "--plan", "--plan-crops-per-s", "0.16",
                "--shard", "1/3")  # fmt: skip
    lines = succeeded(given).splitlines()
    assert lines[0].endswith("; shard 1/3: 3 blocks, 6 images")  # blocks 1, 4, 7
    assert (
        "0.16 crops/s as given (--plan-crops-per-s): 0.0833 teacher-hours for 48 crops" in lines[3]
    )
    assert not out.exists()


def test_help_documents_the_scale_out_options() -> None:
    text = " ".join(
        CliRunner().invoke(cli, ["generate", "--help"], terminal_width=200).output.split()
    )
    for fragment in (
        "--scheduler ADDRESS Run the blocks as tasks on the running dask.distributed scheduler",
        "--cluster local:K Run the blocks on a dask cluster of K worker processes",
        "--plan Write nothing: print the image and block counts",
        "--plan-crops-per-s X With --plan: assume the teacher labels X crops/s",
    ):
        assert fragment in text, fragment


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--cluster", "remote:3"), "expected local:K"),
        (("--cluster", "local:0"), "expected local:K"),
        (("--cluster", "local:2", "--scheduler", "tcp://127.0.0.1:1"), "not both"),
        (("--plan-crops-per-s", "5"), "only applies with --plan"),
    ],
)
def test_bad_scale_out_options_are_usage_errors(
    images: Path, tmp_path: Path, args: tuple[str, ...], fragment: str
) -> None:
    result = fkd("generate", images, "--out", tmp_path / "x.zarr", *FAST, *args)
    assert result.exit_code == 2 and fragment in result.stderr, result.output
    assert not (tmp_path / "x.zarr").exists()


def test_unreachable_scheduler_is_a_one_line_error(images: Path, tmp_path: Path) -> None:
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        result = fkd("generate", images, "--out", tmp_path / "x.zarr", *FAST,
                     "--scheduler", "tcp://127.0.0.1:9")  # fmt: skip
    one_line_error(result, "--scheduler tcp://127.0.0.1:9: cannot connect", "check the address")
    assert not (tmp_path / "x.zarr").exists()


def test_store_changed_under_a_task_is_refused(images: Path, tmp_path: Path) -> None:
    """A task checks that the store still has the parameters its client saw (no dask needed)."""
    out = tmp_path / "changed.zarr"
    generate(config(images, out, shard=(0, BLOCKS)), progress=False)  # block 0 only
    spec = LabelStore.open(out).spec
    seen = dataclasses.replace(spec, crops=dataclasses.replace(spec.crops, seed=1))
    with pytest.raises(GenerateError, match="block 1: .* no longer has the parameters"):
        label_block(BlockTask(config(images, out), seen, str(images), 1))
    assert LabelStore.open(out).committed_blocks() == [0]


# --------------------------------------------------------------------------- client death


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


@pytest.mark.slow
def test_client_killed_mid_run_takes_its_workers_and_the_rerun_does_the_rest(
    images: Path, reference: Path, tmp_path: Path
) -> None:
    out = tmp_path / "client-killed.zarr"
    command = [sys.executable, "-m", "fkd", "generate", str(images), "--out", str(out), *SLOW]
    command += ["--cluster", "local:2"]
    path = [str(TESTS), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        command, env=env, cwd=tmp_path, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 180
    children: list[psutil.Process] = []
    try:
        while committed_markers(out) < 1 and process.poll() is None:
            assert time.monotonic() < deadline, "no block was committed in time"
            time.sleep(0.01)
        children = descendants(process.pid)
        process.kill()  # the client alone: its workers must notice and go
        stdout, stderr = process.communicate()
        assert process.returncode == -signal.SIGKILL, (stdout, stderr)
        gone, alive = psutil.wait_procs(children, timeout=30)
        assert not alive, f"worker processes outlived their client: {alive}"
    finally:
        for child in children:  # cleanup if the assertion above failed
            if child.is_running():
                child.kill()
    assert len(gone) >= 2  # at least the two dask workers were there, and are gone
    store = LabelStore.open(out)
    committed = len(store.committed_blocks())  # >= 1: the kill waited for a first commit
    assert committed < BLOCKS, "the run finished before the kill: the test needs a slower teacher"

    rerun = succeeded(fkd(*command[3:]))
    assert rerun.splitlines()[0] == (
        f"images {2 * (BLOCKS - committed)}, crops {16 * (BLOCKS - committed)}, failures 0, "
        f"blocks written {BLOCKS - committed}, skipped (already committed) {committed}"
    )
    assert LabelStore.open(out).is_complete()
    assert_same_arrays(out, reference)
    assert chunk_files(out) == chunk_files(reference)


# --------------------------------------------------------------------------- worker death
# Last in the module: nothing after it waits for the nanny to restart the killed worker.


def test_worker_killed_mid_run_is_replaced_and_the_store_is_identical(
    images: Path, reference: Path, tmp_path: Path, two_workers: Client
) -> None:
    client = two_workers
    out = tmp_path / "killed.zarr"
    killed: dict[str, object] = {}

    def kill_a_busy_worker() -> None:
        deadline = time.monotonic() + 120
        while committed_markers(out) < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        busy = [worker for worker, keys in client.processing().items() if keys]
        assert busy, "no worker had a block to lose"
        pid = client.run(os.getpid, workers=busy[:1])[busy[0]]
        killed.update(worker=busy[0], pid=pid, keys=client.processing()[busy[0]])
        os.kill(pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_a_busy_worker)
    killer.start()
    summary = generate_on_client(config(images, out, "make_slow"), client, progress=False)
    killer.join()
    assert killed and killed["keys"], killed
    assert summary.lines()[0] == (
        f"images {IMAGES}, crops {IMAGES * 8}, failures 0, blocks written {BLOCKS}, "
        "skipped (already committed) 0"
    )  # one result per block: the lost one was run again, once
    store = LabelStore.open(out)
    assert store.is_complete() and committed_markers(out) == BLOCKS
    assert_same_arrays(out, reference)
    assert chunk_files(out) == chunk_files(reference)
    assert not psutil.pid_exists(int(killed["pid"]))  # type: ignore[call-overload]

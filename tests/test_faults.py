"""Faults injected into real ``fkd generate`` runs: SIGKILLs, full disks, concurrent writers.

Every run is the real command (``python -m fkd generate`` in a subprocess) on
Fashion-MNIST PNGs with a tiny seeded teacher (``fault_tools``); every check
compares stores byte for byte or array by array with an uninterrupted reference.
The long campaign (``benchmarks/fault_campaign.py``) runs the same code with 200+ kills;
``--runner dask-client`` and ``--runner dask-worker`` run the dask campaigns below.
"""

from __future__ import annotations

import errno
import os
import resource
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from fault_tools.campaign import Campaign
from fault_tools.campaign_result import CampaignResult
from fault_tools.dask_client_campaign import DaskClientCampaign
from fault_tools.dask_worker_campaign import DaskWorkerCampaign
from fault_tools.fashion_mnist import fashion_mnist_folder
from fault_tools.generate_command import fkd_env, make_setup
from fault_tools.store_files import arrays_equal, block_digest, committed
from PIL import Image
from store_factory import block_data, make_spec, read_all, write_store
from zarr.storage import LocalStore, WrapperStore

from fkd.storage_formats import LabelStore, StoreWriteError, UncommittedBlockError
from fkd.storage_formats.verify import verify_store


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> Campaign:
    """96 Fashion-MNIST images in 24 blocks of 4, and an uninterrupted reference store."""
    root = tmp_path_factory.mktemp("faults")
    runner = Campaign(make_setup(root / "inputs"), root / "campaign", seed=20220723)
    runner.make_reference()
    return runner


def one_line_error(stderr: str, *fragments: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# --------------------------------------------------------------------------- kills


@pytest.mark.slow
def test_ten_random_sigkills_lose_nothing_and_resume_to_the_reference(
    campaign: Campaign,
) -> None:
    result = campaign.run(kills=10)
    assert result.kills == 10
    assert result.problems == []
    assert result.blocks_lost == 0 and result.mismatches == 0 and result.verify_failures == 0
    assert result.episodes >= 1  # at least the final store finished, verified, equalled
    # Every kill that left blocks open was followed by a refused read of one of them.
    assert result.refused_reads >= 1
    assert not campaign.store.exists()


def assert_dask_campaign_clean(runner: Campaign, result: CampaignResult, local: Campaign) -> None:
    """Nothing lost or changed, no process left, and dask's bytes are single-process bytes."""
    assert result.problems == []
    assert result.blocks_lost == 0 and result.mismatches == 0 and result.verify_failures == 0
    assert result.orphans == 0
    assert result.episodes >= 1 and not runner.store.exists()
    # The dask reference is the single-process reference, array by array and byte by byte.
    assert arrays_equal(runner.reference, local.reference) == []
    assert runner.expected == local.expected


@pytest.mark.slow
def test_client_killed_with_its_cluster_three_times_leaves_no_process_and_resumes(
    campaign: Campaign, tmp_path: Path
) -> None:
    """``--cluster local:2``: SIGKILL the client's process group (client and workers)."""
    runner = DaskClientCampaign(campaign.setup, tmp_path, seed=88, delay=0.05)
    result = runner.run(kills=3)
    assert result.kills == 3 and result.runner == "dask-client"
    # A kill took the client and its 2 LocalCluster workers (one before the workers were
    # spawned takes fewer); none of them outlived it.
    assert max(runner.group_sizes) >= 3 and result.processes_killed == sum(runner.group_sizes)
    assert_dask_campaign_clean(runner, result, campaign)


@pytest.mark.slow
def test_dask_workers_killed_three_times_mid_run_the_runs_finish_identical(
    campaign: Campaign, tmp_path: Path
) -> None:
    """``--scheduler``: SIGKILL random workers of a LocalCluster while the run goes on."""
    runner = DaskWorkerCampaign(campaign.setup, tmp_path, seed=89, delay=0.5, gap=1.0)
    result = runner.run(kills=3)
    assert result.kills == 3 and result.runner == "dask-worker"
    assert result.kills_mid_block >= 1  # at least one kill took a block with it
    assert_dask_campaign_clean(runner, result, campaign)


# --------------------------------------------------------------------------- disk full


class FillingStore(WrapperStore[LocalStore]):
    """A real LocalStore whose writes fail with ``error`` once ``capacity`` bytes are used."""

    def __init__(self, store: LocalStore, capacity: int, error: int) -> None:
        super().__init__(store)
        self.capacity = capacity
        self.error = error
        self.used = 0

    async def set(self, key, value) -> None:
        self.used += len(value)
        if self.used > self.capacity:
            raise OSError(self.error, os.strerror(self.error), key)
        await self._store.set(key, value)

    def set_sync(self, key, value) -> None:
        self.used += len(value)
        if self.used > self.capacity:
            raise OSError(self.error, os.strerror(self.error), key)
        self._store.set_sync(key, value)


@pytest.mark.parametrize(
    "code,fix",
    [
        (errno.ENOSPC, "free space on the disk holding"),
        (errno.EIO, "check the disk holding"),
        (errno.EFBIG, "raise the limit"),
    ],
)
def test_a_failed_write_leaves_the_store_resumable_and_says_what_to_do(
    tmp_path: Path, code: int, fix: str
) -> None:
    spec = make_spec(num_images=40, block_size=4)
    reference = write_store(tmp_path / "reference.zarr", spec)
    path = tmp_path / "s.zarr"
    write_store(path, spec, blocks=[])
    filling = FillingStore(LocalStore(path), capacity=3000, error=code)
    store = LabelStore.open(filling, mode="r+")
    written = []
    with pytest.raises(StoreWriteError) as failure:
        for block in range(spec.num_blocks):
            store.write_block(block, block_data(spec, block))
            written.append(block)
    message = str(failure.value)
    assert "\n" not in message and str(filling) in message
    assert fix in message and "re-run the same command to resume" in message
    failed = len(written)
    assert 0 < failed < spec.num_blocks  # some blocks committed before the disk filled
    after = LabelStore.open(path)
    assert after.committed_blocks() == written
    with pytest.raises(UncommittedBlockError):
        after.read_images(np.arange(*after.block_range(failed)))
    # Space is back: resume writes exactly the uncommitted blocks, and equals the reference.
    resumed = LabelStore.open(path, mode="r+")
    for block in resumed.uncommitted_blocks():
        resumed.write_block(block, block_data(spec, block))
    assert verify_store(str(path)) == []
    for name, values in read_all(reference).items():
        np.testing.assert_array_equal(values, read_all(LabelStore.open(path))[name], name)


def blank_then_fashion(root: Path) -> Path:
    """8 blank images (labels that compress to nothing) sorted first, then 16 real ones."""
    (root / "aaa-blank").mkdir(parents=True)
    for i in range(8):
        Image.new("L", (28, 28), 40 + 20 * i).save(root / "aaa-blank" / f"{i}.png")
    return fashion_mnist_folder(root, 16)


def limited(max_bytes: int):
    """preexec_fn: files larger than ``max_bytes`` cannot be written (EFBIG, not SIGXFSZ)."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    return apply


@pytest.mark.slow
def test_a_file_size_limit_gives_one_line_and_the_resume_equals_the_reference(
    campaign: Campaign, tmp_path: Path
) -> None:
    data = blank_then_fashion(tmp_path / "data")
    setup = campaign.setup
    extra = ("-m", "64", "--block-size", "8", "--label-type", "full", "--value-dtype", "float16")
    env = fkd_env(setup.teacher_dir, PYTHONDONTWRITEBYTECODE="1")
    reference, out = tmp_path / "reference.zarr", tmp_path / "labels.zarr"

    def run(max_bytes: int | None) -> subprocess.CompletedProcess[str]:
        command = [*setup.command(out, *extra)]
        command[command.index(str(setup.data))] = str(data)
        return subprocess.run(
            command, env=env, capture_output=True, text=True, check=False,
            preexec_fn=None if max_bytes is None else limited(max_bytes),
        )  # fmt: skip

    # 4 KiB per file: the metadata (under 2 KiB) and the blank block's labels fit; the
    # first block of real images (about 10 KiB of float16 labels) does not.
    cut = run(4096)
    assert cut.returncode == 1, cut.stderr
    one_line_error(cut.stderr, str(out), "file too large", "re-run the same command")
    store = LabelStore.open(out)
    assert store.committed_blocks() == [0]
    with pytest.raises(UncommittedBlockError, match="re-run the same `fkd generate`"):
        store.read_images([8])
    assert verify_store(str(out))[0].what.startswith("not committed")

    done = run(None)  # the limit lifted: the same command resumes
    assert done.returncode == 0, done.stderr
    assert "blocks written 2, skipped (already committed) 1" in done.stdout
    command = setup.command(reference, *extra)
    command[command.index(str(setup.data))] = str(data)
    subprocess.run(command, env=env, check=True, capture_output=True)
    assert verify_store(str(out)) == []
    assert arrays_equal(out, reference) == []
    assert [block_digest(out, b) for b in range(3)] == [
        block_digest(reference, b) for b in range(3)
    ]


# --------------------------------------------------------------------------- concurrency


@pytest.mark.slow
def test_two_identical_runs_at_once_write_identical_bytes(
    campaign: Campaign, tmp_path: Path
) -> None:
    """Same store, same --shard, same time: both create-or-open it, both write every block
    (the same bytes, each file replaced atomically); nothing is lost, the store verifies."""
    out = tmp_path / "labels.zarr"
    env = fkd_env(campaign.setup.teacher_dir)
    runs = [
        subprocess.Popen(
            campaign.setup.command(out),
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert committed(out) == set(range(campaign.num_blocks))
    assert verify_store(str(out)) == []
    assert arrays_equal(out, campaign.reference) == []
    for block in range(campaign.num_blocks):
        assert block_digest(out, block) == campaign.expected[block]
    assert [p.name for p in tmp_path.iterdir()] == ["labels.zarr"]  # no staging folder left


@pytest.mark.slow
def test_a_run_with_other_parameters_is_refused_while_the_first_goes_on(
    campaign: Campaign, tmp_path: Path
) -> None:
    out = tmp_path / "labels.zarr"
    setup = campaign.setup
    hold = tmp_path / "hold"  # while it exists the first run's teacher waits
    first = subprocess.Popen(
        setup.command(out), env=fkd_env(setup.teacher_dir, FAULT_TEACHER_HOLD=str(hold)),
        text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while not (out.exists() and committed(out)):
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()
        time.sleep(0.01)
    hold.touch()
    other = [*setup.command(out)]
    other[other.index("-m", 3) + 1] = "4"  # the generate option, not python -m
    second = subprocess.run(
        other, env=fkd_env(setup.teacher_dir), capture_output=True, text=True, check=False
    )
    assert first.poll() is None, "the first run ended before the second was refused"
    assert len(committed(out)) < campaign.num_blocks
    assert second.returncode == 1
    one_line_error(second.stderr, "different parameters", "crops_per_image", "8", "4")
    hold.unlink()
    assert first.wait(timeout=300) == 0, first.communicate()
    assert verify_store(str(out)) == []
    assert arrays_equal(out, campaign.reference) == []
    shutil.rmtree(out)

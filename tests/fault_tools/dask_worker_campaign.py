"""The kill campaign that SIGKILLs dask worker processes while ``fkd generate --scheduler
ADDRESS`` runs against a LocalCluster of the campaign's own."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fault_tools.campaign_result import CampaignResult
from fault_tools.dask_campaign import DaskCampaign
from fault_tools.process_groups import kill_group, orphans_after, tagged_processes
from fault_tools.store_files import committed

CLUSTER_SCRIPT = textwrap.dedent(
    """
    import sys

    from fkd.generate.dask_cluster import local_cluster

    with local_cluster(int(sys.argv[1])) as cluster:
        print(cluster.scheduler_address, flush=True)
        sys.stdin.read()  # until the campaign closes our stdin
    """
)


class DaskWorkerCampaign(DaskCampaign):
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

    def __init__(self, *args: Any, gap: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gap = gap
        self.address = ""
        self.client: Any = None
        self.pids: dict[str, int] = {}

    def _start(self, out: Path, workers: int) -> subprocess.Popen[str]:
        return self._start_on_cluster(
            out, "--scheduler", self.address, "--json", stdout=subprocess.PIPE
        )

    @contextlib.contextmanager
    def cluster(self) -> Iterator[None]:
        """The LocalCluster subprocess and a client of it; every tagged process gone after."""
        from distributed import Client

        process = subprocess.Popen(
            [sys.executable, "-c", CLUSTER_SCRIPT, str(self.cluster_workers)], env=self._env(),
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
                kill_group(process)
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
        before, digests = self._snapshot()
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
            self._count_redone(result, blocks - now)
            self._check_committed(result, now, f"kill {result.kills}")
        return 1

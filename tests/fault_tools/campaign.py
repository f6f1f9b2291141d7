"""The kill/resume campaign against ``fkd generate`` run in one process group.

``Campaign.run`` repeats: start the generate command (a fresh run or a resume), kill it
at a seeded random moment, then check the store: every block that was committed
before the kill is still committed and byte-identical, every committed block is
byte-identical to the reference, a read of an uncommitted block is refused.  When a
run finishes unkilled, the finished store must pass ``verify_store`` and equal the
reference array by array; the store is then removed and a new episode starts.
"""

from __future__ import annotations

import dataclasses
import random
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from fault_tools.campaign_result import CampaignResult
from fault_tools.generate_command import Setup, fkd_env
from fault_tools.process_groups import kill_group, start_in_session
from fault_tools.store_files import (
    arrays_equal,
    block_digest,
    block_files,
    committed,
    debris,
    written_bytes,
)


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
            now = committed(self.reference)
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

    def _env(self) -> dict[str, str]:
        """The environment of a run: the teacher sleeps ``delay`` per forward pass."""
        return fkd_env(self.setup.teacher_dir, FAULT_TEACHER_DELAY=str(self.delay))

    def _start(self, out: Path, workers: int) -> subprocess.Popen[str]:
        command = dataclasses.replace(self.setup, workers=workers).command(out)
        return start_in_session(command, self._env())

    def _snapshot(self) -> tuple[set[int], dict[int, str | None]]:
        """The committed blocks of the store before a run, and their digests."""
        before = committed(self.store)
        return before, {b: block_digest(self.store, b) for b in before}

    def _one_run(self, result: CampaignResult, kill: bool) -> None:
        before, digests = self._snapshot()
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
            if not committed(self.store) - before:
                result.kills_before_first_commit += 1
        elif process.returncode != 0:
            raise AssertionError(f"fkd generate exited {process.returncode}: {stderr}")
        self._check_after(result, before, digests)
        self.log(f"run {result.runs}: {'killed' if killed else 'finished'}, "
                 f"committed {len(committed(self.store))}/"
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
                if committed(self.store) - before:
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
        kill_group(process)

    def _count_redone(self, result: CampaignResult, blocks: Iterable[int]) -> None:
        """Count the uncommitted ``blocks`` whose chunk files are on disk (the resume
        rewrites them), and the torn ones among them (only some arrays written)."""
        for block in blocks:
            files, nbytes, expected = written_bytes(self.store, block, self.create_arrays)
            if files:
                result.blocks_redone += 1
                result.bytes_redone += nbytes
                result.torn_blocks += int(files < expected)

    def _check_committed(self, result: CampaignResult, blocks: Iterable[int], when: str) -> None:
        """Every one of the committed ``blocks`` must be byte-identical to the reference."""
        for block in blocks:
            if block_digest(self.store, block) != self.expected[block]:
                result.mismatches += 1
                result.problems.append(
                    f"{when}: committed block {block} differs from the reference "
                    f"in {self._differing_files(block)}"
                )

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
        self._check_committed(result, now, f"run {result.runs}")
        pending = sorted(set(range(self.num_blocks)) - now)
        self._count_redone(result, pending)
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

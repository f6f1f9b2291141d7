"""No process of a run outlives it: real ``fkd`` runs with loader workers, ended by real signals.

Each run is the real command in a subprocess (its own session, so a signal to its
process group reaches nothing else) with ``--workers 2``; its processes are found by
the tag ``fault_tools`` puts in their environment (children inherit it).  The
``fkd generate`` runs decode full-size photos (scikit-image's, 300 to 512 px), so a
decoded image pickled into the workers' result pipe is larger than the pipe: with
the teacher held, the workers block writing to it, as on real data.  The runs:

- the main process alone SIGKILLed or SIGTERMed: every process of the run is gone
  within a few seconds (``generate``, ``train``, ``teacher-eval``), and a reader of
  the run's stdout (``fkd generate ... | cat``) sees end of file;
- SIGTERM, or SIGINT or SIGTERM to the whole process group (Ctrl-C, ``scancel``):
  exit status 128 + the signal, one line saying what is kept and how to go on, no
  traceback; the same command then resumes from the committed blocks."""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from fault_tools.fashion_mnist import FASHION_CLASSES
from fault_tools.generate_command import Setup, fkd_env
from fault_tools.process_groups import TOKEN_VARIABLE, tagged_processes
from fault_tools.store_files import committed
from fault_tools.tiny_teacher import write_teacher
from generate_helpers import save_patches
from skimage import data as photos

from fkd.cli.main import cli

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the kernel's parent-death signal is Linux's"
)

# Seconds a run's processes may outlive its main process.  The kernel kills the workers
# as their parent exits (measured: 0.01 s); torch's own watchdog looks every 5 s, and
# never when a worker is blocked on a full pipe.  Past GRACE, the leftovers are killed.
FEW_SECONDS = 3.0
GRACE = 10.0


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    """12 full-size photos in 3 blocks of 4, the tiny teacher, 2 decode workers."""
    root = tmp_path_factory.mktemp("lifetime")
    pictures = [photos.astronaut(), photos.coffee(), photos.chelsea(), photos.rocket()]
    folder = save_patches(root / "data", [pictures[i % 4] for i in range(12)])
    teachers = write_teacher(root / "teachers")
    return Setup(folder, teachers, crops=8, block_size=4, batch_size=8, workers=2)


class Run:
    """A real ``fkd`` command in its own session, its processes tagged in their environment."""

    def __init__(self, command: list[str], setup: Setup, **env: str) -> None:
        self.token = uuid.uuid4().hex
        self.process = subprocess.Popen(
            command, env=fkd_env(setup.teacher_dir, **{TOKEN_VARIABLE: self.token}, **env),
            start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip

    def processes(self) -> list[int]:
        return [p.pid for p in tagged_processes(self.token)]

    def wait_for_workers(self, workers: int = 2, timeout: float = 120.0) -> None:
        """Until the main process and ``workers`` loader processes are alive."""
        deadline = time.monotonic() + timeout
        while len(self.processes()) < workers + 1:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill_all()
                raise AssertionError(f"the workers never started: {self.stderr()}")
            time.sleep(0.05)

    def signal_main(self, signum: int) -> float:
        """Send ``signum`` to the main process alone; the seconds it took to exit."""
        start = time.monotonic()
        self.process.send_signal(signum)
        self.process.wait(timeout=60)
        return time.monotonic() - start

    def signal_group(self, signum: int) -> float:
        """Send ``signum`` to the run's process group (Ctrl-C); the seconds the main took."""
        start = time.monotonic()
        os.killpg(self.process.pid, signum)
        self.process.wait(timeout=60)
        return time.monotonic() - start

    def seconds_until_gone(self, limit: float = GRACE) -> float:
        """Seconds until no process of the run is alive (``inf`` past ``limit``: then
        the leftovers are killed, so that they cannot disturb the next test)."""
        start = time.monotonic()
        while self.processes():
            if time.monotonic() - start > limit:
                self.kill_all()
                return float("inf")
            time.sleep(0.02)
        return time.monotonic() - start

    def kill_all(self) -> None:
        for pid in self.processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(timeout=60)

    def stderr(self) -> str:
        """Everything the run wrote to stderr (call once its processes are gone)."""
        assert self.process.stderr is not None
        text = self.process.stderr.read().decode()
        self.process.stderr.close()
        assert self.process.stdout is not None
        self.process.stdout.close()
        return text


@contextlib.contextmanager
def held_generate(setup: Setup, out: Path) -> Iterator[Run]:
    """``fkd generate --workers 2`` held in its second block (its first one committed),
    the decode workers ahead of the teacher and blocked on their result pipe."""
    hold = out.with_name(out.name + ".hold")
    run = Run(setup.command(out), setup, FAULT_TEACHER_DELAY="0.2", FAULT_TEACHER_HOLD=str(hold))
    try:
        deadline = time.monotonic() + 120
        while not (out.exists() and committed(out)):
            assert run.process.poll() is None and time.monotonic() < deadline, run.stderr()
            time.sleep(0.02)
        hold.touch()  # the teacher's next forward pass waits while this file exists
        run.wait_for_workers()
        time.sleep(1.0)  # the workers decode ahead until the result pipe is full
        yield run
    finally:
        run.kill_all()
        hold.unlink(missing_ok=True)


def one_line(stderr: str, *fragments: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# --------------------------------------------------------------------------- fkd generate


@pytest.mark.slow
def test_a_sigkilled_generate_leaves_no_process_and_its_output_pipe_ends(
    setup: Setup, tmp_path: Path
) -> None:
    """SIGKILL of the main process alone: its workers go with it, so a reader of its
    stdout (``fkd generate ... | cat``) sees end of file instead of waiting for good."""
    with held_generate(setup, tmp_path / "labels.zarr") as run:
        assert run.process.stdout is not None
        stdout = run.process.stdout.fileno()
        run.signal_main(signal.SIGKILL)
        start = time.monotonic()
        while time.monotonic() - start < GRACE:
            readable, _, _ = select.select([stdout], [], [], 0.1)
            if readable and os.read(stdout, 65536) == b"":
                break
        else:
            pytest.fail(f"no end of file on the run's stdout {GRACE} s after its main was killed")
        assert time.monotonic() - start < FEW_SECONDS
        assert run.seconds_until_gone() < FEW_SECONDS, "decode workers outlived the main process"


@pytest.mark.slow
def test_a_sigtermed_generate_stops_its_workers_and_says_what_is_kept(
    setup: Setup, tmp_path: Path
) -> None:
    """SIGTERM of the main process alone (SLURM's preemption and time-out)."""
    with held_generate(setup, tmp_path / "labels.zarr") as run:
        run.signal_main(signal.SIGTERM)
        assert run.seconds_until_gone() < FEW_SECONDS, "decode workers outlived the main process"
        assert run.process.returncode == 128 + signal.SIGTERM
        one_line(run.stderr(), "SIGTERM", "committed blocks", "re-run the same command")


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signalled_process_group_stops_at_once_with_one_line_and_the_same_command_resumes(
    setup: Setup, tmp_path: Path, signum: int
) -> None:
    """Ctrl-C (SIGINT to the group) or scancel (SIGTERM to every process of the job):
    the workers get it too, yet the run stops at once, with one line, and resumes."""
    out = tmp_path / "labels.zarr"
    with held_generate(setup, out) as run:
        before = committed(out)
        seconds = run.signal_group(signum)
        assert run.seconds_until_gone() < FEW_SECONDS
        assert run.process.returncode == 128 + signum
        line = one_line(run.stderr(), "committed blocks", "re-run the same command")
        assert line.startswith(f"Stopped by {signal.Signals(signum).name}")
        # Ctrl-C took 10 s and more before (two 5 s joins of workers hung on their pipe);
        # about 3 s now, 1 to 2 s of it the interpreter's own exit with torch loaded.
        assert seconds < 6.0, f"the run took {seconds:.1f} s to stop"
    assert committed(out) == before
    done = setup.run(out, "--json")
    assert f'"blocks_skipped": {len(before)}' in done.stdout


# --------------------------------------------------------------------------- train, teacher-eval


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_no_process_of_train_outlives_its_main_process(
    setup: Setup, tmp_path: Path, signum: int
) -> None:
    command = [
        sys.executable, "-m", "fkd", "train", str(setup.data), "--model", "cnn_4_8_16",
        "--input-size", "32", "--epochs", "100000", "-b", "8", "-j", "2", "--device", "cpu",
        "--out", str(tmp_path / "run"), "-q",
    ]  # fmt: skip
    run = Run(command, setup)
    try:
        run.wait_for_workers()
        time.sleep(1.0)
        run.signal_main(signum)
        assert run.seconds_until_gone() < FEW_SECONDS, "loader workers outlived the main process"
        if signum == signal.SIGTERM:
            assert run.process.returncode == 128 + signal.SIGTERM
            one_line(run.stderr(), "SIGTERM", "--resume")
    finally:
        run.kill_all()


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_no_process_of_teacher_eval_outlives_its_main_process(
    setup: Setup, tmp_path: Path, signum: int
) -> None:
    # Class folders named by the teacher's classes: teacher-eval refuses folders it cannot map.
    data = tmp_path / "data"
    for folder, name in zip(sorted(setup.data.iterdir()), FASHION_CLASSES, strict=False):
        shutil.copytree(folder, data / name)
    command = [
        sys.executable, "-m", "fkd", "teacher-eval", str(data), "--teacher",
        "fault_tiny_teacher:make", "--batch-size", "2", "--workers", "2", "--device", "cpu",
    ]  # fmt: skip
    run = Run(command, setup, FAULT_TEACHER_DELAY="1")  # 1 s a batch: the loader stays alive
    try:
        run.wait_for_workers()
        run.signal_main(signum)
        assert run.seconds_until_gone() < FEW_SECONDS, "loader workers outlived the main process"
        if signum == signal.SIGTERM:
            assert run.process.returncode == 128 + signal.SIGTERM
            one_line(run.stderr(), "SIGTERM")
    finally:
        run.kill_all()


# --------------------------------------------------------------------------- the parts


def test_a_worker_whose_parent_died_before_it_asked_is_killed_at_once() -> None:
    """The race ``die_with_parent`` closes: the parent gone before the kernel was asked."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    ask = "import os; from fkd.worker_lifetime import die_with_parent as d; d({}); print(1)"
    orphan = subprocess.run(
        [sys.executable, "-c", ask.format(dead.pid)], capture_output=True, text=True, env=env
    )
    assert orphan.returncode == -signal.SIGKILL and orphan.stdout == "", orphan.stderr
    # With its parent alive, the process goes on as before.
    child = subprocess.run(
        [sys.executable, "-c", ask.format("os.getppid()")], capture_output=True, text=True, env=env
    )
    assert child.returncode == 0 and child.stdout == "1\n", child.stderr


def test_a_command_run_in_process_leaves_the_signal_handlers_as_it_found_them(
    tmp_path: Path,
) -> None:
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    for command in ("generate", "train", "teacher-eval"):
        extra = ["--out", str(tmp_path / "x")] if command == "generate" else []
        extra += ["--model", "cnn_4_8_16"] if command == "train" else []
        result = CliRunner().invoke(cli, [command, str(tmp_path / "missing"), *extra])
        assert result.exit_code != 0
        assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before

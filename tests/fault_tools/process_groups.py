"""Processes started in their own session, SIGKILLed as a whole group, and found by a tag.

A campaign puts ``FKD_FAULT_CAMPAIGN=TOKEN`` in the environment of what it starts;
children inherit it, so ``tagged_processes`` finds every process a run started (dask
workers included), and ``orphans_after`` tells which outlived a kill.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from typing import Any

TOKEN_VARIABLE = "FKD_FAULT_CAMPAIGN"


def new_token() -> str:
    """A tag no other campaign uses: this process's id and the time."""
    return f"{os.getpid()}-{time.monotonic_ns()}"


def start_in_session(
    command: list[str], env: dict[str, str], stdout: int = subprocess.DEVNULL
) -> subprocess.Popen[str]:
    """``command`` in a session of its own (a signal to its group reaches nothing else),
    stderr kept for the error message."""
    return subprocess.Popen(
        command, env=env, start_new_session=True, text=True,
        stdout=stdout, stderr=subprocess.PIPE,
    )  # fmt: skip


def kill_group(process: subprocess.Popen[str]) -> None:
    """SIGKILL the whole process group of ``process`` (started in its own session)."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


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

"""Worker processes that never outlive the process that started them.

Every process fkd starts (the DataLoader workers of ``fkd generate``, ``fkd train``,
``fkd eval`` and ``fkd teacher-eval``; the PNG writers of ``fkd datasets``) asks the
kernel, first thing, to SIGKILL it when its parent dies (Linux's
``prctl(PR_SET_PDEATHSIG)``).  Without it, a worker of a SIGKILLed or SIGTERMed run
lives on: torch's own watchdog looks at the parent only between items, and a
worker blocked writing a decoded image into its full result pipe never gets there,
so it stays (re-parented to PID 1, holding its memory and the run's stdout) for good.

Two rules of the kernel's signal shape how this is used:

- It fires when the *thread* that started the worker exits, not the process.  fkd
  starts its workers in the thread that iterates the loader (the main thread of a
  command, or a dask task's thread, which outlives the loader it creates).
- A parent that died before the worker asked is not noticed by the kernel, so
  ``die_with_parent`` checks afterwards that the parent it was given still lives.

DataLoader workers also leave the stop signals to the process that owns them
(``DataLoaderWorkerLifetime``).  Ctrl-C reaches the whole process group, and a worker
interrupted while handing over an item hangs at exit on its half-written pipe, which
made the main process wait 5 s per worker before killing them: workers ignore SIGINT,
the main process gets the KeyboardInterrupt and shuts the loader down, and the workers
leave at once.  SIGTERM (``scancel`` sends it to every process of a job; ``multiprocessing``
sends it to leftover daemonic workers at exit) makes a worker leave at once, with exit
status 0: death by a signal is what torch's watch in the main process reports as a
crash, in the middle of the main process's own clean stop.  (A forked worker would
otherwise also inherit the handlers its parent installed, such as
``fkd.cli.stopping``'s.)  A worker also keeps quiet when the process it hands a tensor
to hangs up in the middle of the handover (``multiprocessing``'s resource sharer would
print the broken connection's traceback): that process is stopping.

Everything here is a no-op outside Linux.  Nothing here runs in the process that
builds the loader: its own signal handlers and state are left as they are.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType, TracebackType
from typing import Any

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(parent: int) -> None:
    """Ask the kernel to SIGKILL this process when ``parent`` (its starter) dies.

    Call it in the child, as early as possible.  If ``parent`` is already gone
    (it died before the request, so the kernel will never signal), the process
    kills itself now.  On other systems this does nothing.
    """
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        return  # not allowed here (a seccomp sandbox): the parent's own shutdown still applies
    # Under a fork server the parent is that server, which exits when ``parent`` does.
    if os.getppid() != parent and not _alive(parent):
        os.kill(os.getpid(), signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else (a reused pid)
        return True
    return True


@dataclass(frozen=True)
class DataLoaderWorkerLifetime:
    """A DataLoader ``worker_init_fn``: the worker dies with the process that built the
    loader, ignores SIGINT and leaves at once on SIGTERM (see the module's notes).

    Build it in the process that builds the loader (``parent`` defaults to that
    process); it is picklable, for any multiprocessing start method.
    """

    parent: int = field(default_factory=os.getpid)

    def __call__(self, worker_id: int) -> None:
        die_with_parent(self.parent)
        if sys.platform.startswith("linux"):
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, _leave_now)
            sys.excepthook = _quiet_when_hung_up_on(sys.excepthook)


def _leave_now(signum: int, frame: FrameType | None) -> None:
    os._exit(0)  # no flush of the result pipe: that is what would hang


def _quiet_when_hung_up_on(previous: Callable[..., Any]) -> Callable[..., Any]:
    """``sys.excepthook`` that drops a connection lost mid-handover, passes the rest on."""

    def hook(kind: type[BaseException], error: BaseException, trace: TracebackType | None) -> None:
        if not issubclass(kind, (ConnectionError, EOFError)):
            previous(kind, error, trace)

    return hook


__all__ = ["DataLoaderWorkerLifetime", "die_with_parent"]

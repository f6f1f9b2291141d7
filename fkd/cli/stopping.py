"""Stopping a command on SIGTERM or Ctrl-C: at once, cleanly, with one line saying what is kept.

SLURM sends SIGTERM on preemption and time-out; Ctrl-C sends SIGINT to the whole
process group.  While a command decorated with ``stops_cleanly`` runs, both raise
``Stopped`` (a ``KeyboardInterrupt``) in the main thread, so the command unwinds as
on Ctrl-C: the loaders shut their workers down (they leave at once, see
``fkd.worker_lifetime``) and ``fkd generate``'s writer finishes the blocks already
labelled (a block is committed only after all of its data; the one being labelled is
dropped, and the resume redoes it).  The command then prints one line, what is kept
and how to go on, and exits with 128 + the signal's number, as a shell reports a
process the signal killed.

The handlers are installed only in the main thread, only over the defaults (a
handler of the caller's, or an ignored signal, is left alone), and restored when
the command returns: a program calling the command in-process keeps its own.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

SIGNAL_NAMES: dict[int, str] = {signal.SIGINT: "SIGINT (Ctrl-C)", signal.SIGTERM: "SIGTERM"}


class Stopped(KeyboardInterrupt):
    """A stop signal arrived; raised in the main thread like Ctrl-C's KeyboardInterrupt."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class StopSignals:
    """The first stop signal received while installed (``None`` until one arrives)."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
        raise Stopped(signum)


@contextlib.contextmanager
def stop_signals() -> Iterator[StopSignals]:
    """SIGINT and SIGTERM raise ``Stopped`` within the block; the old handlers after it."""
    received = StopSignals()
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    defaults = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
    previous = {signum: signal.getsignal(signum) for signum in defaults}
    mine = [signum for signum, default in defaults.items() if previous[signum] is default]
    try:
        for signum in mine:
            signal.signal(signum, received.handle)
        yield received
    finally:
        for signum in mine:
            signal.signal(signum, previous[signum])


def stops_cleanly(kept: str) -> Callable[[F], F]:
    """Run the command under ``stop_signals``; on a stop, print ``Stopped by SIGNAL: kept``
    on stderr and exit with 128 + the signal number (130 for Ctrl-C, 143 for SIGTERM).

    Whatever ends the command once a stop signal has arrived (say a loader's error
    about a worker that the same SIGTERM killed) is reported as the stop.
    """

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with stop_signals() as received:
                try:
                    return func(*args, **kwargs)
                except KeyboardInterrupt as exc:
                    signum = exc.signum if isinstance(exc, Stopped) else signal.SIGINT
                except BaseException:
                    if received.signum is None:
                        raise
                    signum = received.signum
            click.echo(f"Stopped by {SIGNAL_NAMES.get(signum, str(signum))}: {kept}", err=True)
            sys.exit(128 + signum)

        return wrapper  # type: ignore[return-value]

    return decorate


__all__ = ["Stopped", "stop_signals", "stops_cleanly"]

"""SIGINT/SIGTERM handling for a run: the handler only sets a flag; the run acts at its next safe point.

Doing I/O or taking locks inside a signal handler can deadlock (the signal may arrive while the same lock
is held), so the first signal is only recorded. A second signal means "now": the handler writes one line
with ``os.write`` (async-signal-safe) and calls ``os._exit(130)``. That is safe only because every
commit is atomic: the store holds the last committed, consistent state whatever instant we die at.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any

from syncpoint.errors import EXIT_SIGINT, EXIT_SIGTERM

WATCHED = (signal.SIGINT, signal.SIGTERM)


def exit_code_for(signum: int) -> int:
    return EXIT_SIGTERM if signum == signal.SIGTERM else EXIT_SIGINT


_followers: set[SignalWatch] = set()
"""Watches entered off the main thread (a pipeline's members run by worker threads): Python delivers signals
to the main thread only, so the main thread's watch passes each signal on to them."""
_heard: int | None = None  # the signal the main thread's watch received; a follower entering later hears it


class SignalWatch:
    """Context manager installing the handlers for a run.

    Off the main thread no handler can be installed; the watch then follows the main thread's watch (the
    run that started the threads): a signal it receives reaches every follower's run too, so runs working
    in threads stop at their next safe point like the main one.

    On exit it restores the previous handlers — unless a signal arrived: then the program is on its way out
    and the handlers become "exit at once" (``exit_at_once_on_signal``) in the same step, so there is no
    instant, from the first signal until the process exits, at which a second one could end it by the
    signal itself or with a ``KeyboardInterrupt`` traceback.
    """

    def __init__(self, on_signal: Callable[[int], None] | None = None) -> None:
        self.received: int | None = None
        self._on_signal = on_signal
        self._previous: dict[int, Any] = {}

    @property
    def name(self) -> str:
        return signal.Signals(self.received).name if self.received else ""

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:
            os.write(2, b"\nsyncpoint: second signal, exiting now; the last committed checkpoint stands\n")
            os._exit(exit_code_for(self.received))
        global _heard
        self._hear(signum)
        _heard = signum
        for follower in list(_followers):  # a C-level copy: atomic for the handler
            follower._hear(signum)
        name = signal.Signals(signum).name.encode()
        os.write(2, b"\nsyncpoint: " + name + b" received; stopping at the next safe point (again to exit now)\n")

    def _hear(self, signum: int) -> None:
        if self.received is None:
            self.received = signum
            if self._on_signal is not None:
                self._on_signal(signum)  # sets a flag, takes no lock

    def __enter__(self) -> SignalWatch:
        global _heard
        if threading.current_thread() is threading.main_thread():
            _heard = None
            for sig in WATCHED:
                self._previous[sig] = signal.signal(sig, self._handle)
        else:
            _followers.add(self)
            if _heard is not None:  # the signal came while this run was being opened
                self._hear(_heard)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._previous and self.received is not None:
            exit_at_once_on_signal(self.received)
        else:
            for sig, previous in self._previous.items():
                signal.signal(sig, previous)
        self._previous.clear()
        _followers.discard(self)


def exit_at_once_on_signal(first: int | None = None) -> None:
    """After a run that a signal stopped, while the program winds down: another signal exits at once.

    The promise is the one made during the run: the second signal exits at once with 130 (143 for SIGTERM;
    the first signal's code when it was SIGTERM), the last commit stands, no traceback. Standard streams are
    flushed first, best effort.
    """
    if threading.current_thread() is not threading.main_thread():
        return

    def _exit(signum: int, frame: FrameType | None) -> None:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(exit_code_for(first if first is not None else signum))

    for sig in WATCHED:
        signal.signal(sig, _exit)
    _ignore_at_exit()


_late_ignore_registered = False


def _ignore_at_exit() -> None:
    """Close the last window: late in interpreter shutdown (after ``atexit``) CPython resets Python-level
    handlers to the default action, so a signal arriving then would kill the process by the signal. By the
    time ``atexit`` hooks run, threads are joined and the exit code is decided, and what is left of shutdown
    is short: from then on the watched signals are ignored (``SIG_IGN`` is the one disposition CPython keeps
    through finalization, and it holds for every thread, unlike a signal mask), and the process exits with its
    own code (130/143)."""
    global _late_ignore_registered
    if not _late_ignore_registered:
        atexit.register(_ignore_watched)
        _late_ignore_registered = True


def _ignore_watched() -> None:
    with contextlib.suppress(ValueError, OSError):  # not the main thread, or an exotic platform
        for sig in WATCHED:
            signal.signal(sig, signal.SIG_IGN)

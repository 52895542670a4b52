"""SIGINT/SIGTERM handling for a run: the handler only sets a flag; the run acts at its next safe point.

Doing I/O or taking locks inside a signal handler can deadlock (the signal may arrive while the same lock
is held), so the first signal is only recorded. A second signal means "now": the handler writes one line
with ``os.write`` (async-signal-safe) and calls ``os._exit(130)``. That is safe only because every
commit is atomic: the store holds the last committed, consistent state whatever instant we die at.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from types import FrameType, TracebackType
from typing import Any

from syncpoint.errors import EXIT_SIGINT, EXIT_SIGTERM

WATCHED = (signal.SIGINT, signal.SIGTERM)


def exit_code_for(signum: int) -> int:
    return EXIT_SIGTERM if signum == signal.SIGTERM else EXIT_SIGINT


class SignalWatch:
    """Context manager installing the handlers and restoring the previous ones on exit."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def name(self) -> str:
        return signal.Signals(self.received).name if self.received else ""

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:
            os.write(2, b"syncpoint: second signal, exiting now; the last committed checkpoint stands\n")
            os._exit(EXIT_SIGINT)
        self.received = signum
        name = signal.Signals(signum).name.encode()
        os.write(2, b"syncpoint: " + name + b" received; stopping at the next safe point (again to exit now)\n")

    def __enter__(self) -> SignalWatch:
        if threading.current_thread() is threading.main_thread():
            for sig in WATCHED:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()


def exit_at_once_on_signal() -> None:
    """After a run that a signal stopped, while the program winds down: another signal exits at once.

    The run restored the previous handlers when it ended, so a second Ctrl+C arriving while the process
    exits (joining threads, closing stores) would otherwise end in Python's ``KeyboardInterrupt`` traceback.
    The promise is the one made during the run: the second signal exits at once with 130 (143 for
    SIGTERM), the last commit stands, no traceback. Standard streams are flushed first, best effort.
    """
    if threading.current_thread() is not threading.main_thread():
        return

    def _exit(signum: int, frame: FrameType | None) -> None:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(exit_code_for(signum))

    for sig in WATCHED:
        signal.signal(sig, _exit)

"""The live progress display's hold on the terminal: nothing may write into the middle of its frame.

A live display redraws its frame in place by moving the cursor up over it. Anything written to the
terminal behind its back lands at the end of the frame's last line and throws the next redraw off by
that many lines (the frame is then printed twice). The run's signal handler is such a writer: it may only
call ``os.write(2, …)`` (async-signal-safe), so "SIGINT received" used to appear glued to the bar. So
are C libraries and child processes writing to file descriptor 2.

``StderrCapture`` points descriptor 2 at a pipe while the display runs; a thread prints what arrives
above the display, a line at a time, through the display's console, which itself writes to a duplicate of
the terminal descriptor. ``stop`` points descriptor 2 back at the terminal and prints what is left.

A second SIGINT/SIGTERM ends the process at once (the run's handler writes its line and calls
``os._exit``), so no thread would print that line from the pipe. ``SignalChain`` puts a handler in front
of the run's that, from the second signal on, first points descriptor 2 back at the terminal and starts a
fresh line with the cursor shown — ``os.dup2`` and ``os.write`` only, both async-signal-safe — and then
calls the run's handler, unchanged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any, TextIO

log = logging.getLogger("syncpoint.progress")

WATCHED = (signal.SIGINT, signal.SIGTERM)
POLL = 0.1


def supported() -> bool:
    """Descriptor juggling needs POSIX pipes and ``select`` on them, and signals only in the main thread."""
    return os.name == "posix" and threading.current_thread() is threading.main_thread()


class StderrCapture:
    """Descriptor 2 into a pipe, its lines handed to ``emit``; ``terminal`` writes to the real terminal."""

    def __init__(self, emit: Callable[[str], None]) -> None:
        self.emit = emit
        self.terminal: TextIO | None = None
        self._saved: int | None = None
        self._read: int | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self) -> TextIO:
        """Capture descriptor 2; the terminal, for the display to write to."""
        self._saved = os.dup(2)
        self.terminal = os.fdopen(os.dup(self._saved), "w", encoding="utf-8", errors="replace")
        read, write = os.pipe()
        os.dup2(write, 2)
        os.close(write)
        self._read = read
        self._thread = threading.Thread(target=self._pump, name="syncpoint-stderr", daemon=True)
        self._thread.start()
        return self.terminal

    def restore(self) -> None:
        """Descriptor 2 back to the terminal. Async-signal-safe (one ``dup2``); safe to call twice."""
        if self._saved is not None:
            os.dup2(self._saved, 2)

    def stop(self) -> None:
        """Descriptor 2 back to the terminal; print what is still in the pipe; close everything."""
        if self._saved is None:
            return
        self.restore()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)  # a child process still holding the pipe keeps it from EOF
            self._thread = None
        for fd in (self._read, self._saved):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._read = self._saved = None

    def close_terminal(self) -> None:
        if self.terminal is not None:
            with contextlib.suppress(OSError, ValueError):
                self.terminal.close()
            self.terminal = None

    def _pump(self) -> None:
        assert self._read is not None
        pending = b""
        while True:
            ready, _, _ = select.select([self._read], [], [], POLL)
            if not ready:
                if self._stop.is_set():
                    break
                continue
            try:
                data = os.read(self._read, 65536)
            except OSError:
                break
            if not data:
                break
            pending += data
            *lines, pending = pending.split(b"\n")
            for line in lines:
                self._emit(line)
        if pending:
            self._emit(pending)

    def _emit(self, line: bytes) -> None:
        try:
            self.emit(line.decode("utf-8", "replace").rstrip("\r"))
        except Exception:  # the display is gone: the terminal still gets the line
            if self.terminal is not None:
                with contextlib.suppress(Exception):
                    self.terminal.write(line.decode("utf-8", "replace") + "\n")
                    self.terminal.flush()


class SignalChain:
    """Handlers in front of the current SIGINT/SIGTERM handlers (the run's): see the module docstring."""

    def __init__(self, capture: StderrCapture) -> None:
        self.capture = capture
        self.received: int | None = None
        self._count = 0
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        for sig in WATCHED:
            previous = signal.getsignal(sig)
            if callable(previous):
                self._previous[sig] = previous
                signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        for sig, previous in self._previous.items():
            if signal.getsignal(sig) == self._handle:
                signal.signal(sig, previous)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self._count += 1
        if self.received is None:
            self.received = signum
        if self._count > 1:  # the run's handler exits now: its line must reach the terminal itself
            self.capture.restore()
            os.write(2, b"\r\n\x1b[?25h")
        previous = self._previous.get(signum)
        if previous is not None:
            previous(signum, frame)

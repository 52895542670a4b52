"""Helpers for the example tests: loading the example programs, watched local servers, kill-and-resume loops."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from dip_server import DipServer
from github_server import GitHubServer

from syncpoint.testing.server import Reply, Request

ROOT = Path(__file__).resolve().parents[2]
DIP_SYNC = ROOT / "examples" / "dip_sync.py"
GH_YEAR_END = ROOT / "examples" / "gh_year_end.py"
DIP_KEY = "dip-test-key"
GH_TOKEN = "ghp-test-token"


def load_example(path: Path) -> ModuleType:
    """Import an example program by path (``examples/`` is not a package and not installed)."""
    name = f"example_{path.stem}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


class PageWatch:
    """Tells the test when the server is about to serve page number ``target`` (counting every page served).

    With ``hold``, that request waits (bounded) until ``release()``: the client is then blocked on a page
    boundary, which is where a test wants to deliver a signal.
    """

    def __init__(self) -> None:
        self.target: int | None = None
        self.reached = threading.Event()
        self._hold = False
        self._released = threading.Event()

    def arm(self, target: int, *, hold: bool = False) -> None:
        self.target, self._hold = target, hold
        self.reached.clear()
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    def before_page(self, served: int) -> None:
        if self.target is not None and served + 1 >= self.target and not self.reached.is_set():
            self.reached.set()
            if self._hold:
                self._released.wait(30)


class WatchedDip(DipServer):
    """A DipServer that records list queries and lets a test act at a given page."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.watch = PageWatch()
        self.queries: list[dict[str, str]] = []

    def handle(self, request: Request) -> Reply:
        self.queries.append(dict(request.query))
        self.watch.before_page(sum(self.stats.pages.values()))
        return super().handle(request)


class WatchedGitHub(GitHubServer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.watch = PageWatch()

    def handle(self, request: Request) -> Reply:
        self.watch.before_page(sum(self.stats.pages.values()))
        return super().handle(request)


def table_rows(db: Path, table: str) -> dict[str, dict[str, Any]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(f'SELECT id, aktualisiert, data FROM "{table}"').fetchall()
    found = {row[0]: json.loads(row[2]) for row in rows}
    assert len(found) == len(rows)
    for row in rows:
        assert found[row[0]]["aktualisiert"] == row[1]
    return found


def python(*args: str | Path) -> list[str]:
    return [sys.executable, *map(str, args)]


def run_program(args: list[str], log: Path, timeout: float = 60) -> int:
    """Run to the end; stderr goes to ``log`` (appended) so a chatty child can never block on a full pipe."""
    with open(log, "a", encoding="utf-8") as err:
        return subprocess.run(args, stdin=subprocess.DEVNULL, stdout=err, stderr=err, timeout=timeout,
                              cwd=ROOT).returncode


class Program:
    """A subprocess whose stdout and stderr are drained by threads into text a test can wait on.

    (``helpers.Child`` selects on the pipe after ``readline`` may already have buffered the line it waits
    for, so it can hang when a program writes several lines at once; reading raw chunks avoids that.)
    """

    def __init__(self, args: list[str], *, cwd: Path = ROOT) -> None:
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     cwd=cwd)
        self.out: list[bytes] = []
        self.err: list[bytes] = []
        self._changed = threading.Condition()
        self._threads = [threading.Thread(target=self._drain, args=(stream, sink), daemon=True)
                         for stream, sink in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))]
        for thread in self._threads:
            thread.start()

    def _drain(self, stream: Any, sink: list[bytes]) -> None:
        for chunk in iter(lambda: os.read(stream.fileno(), 65536), b""):
            with self._changed:
                sink.append(chunk)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def stdout(self) -> str:
        with self._changed:
            return b"".join(self.out).decode()

    @property
    def stderr(self) -> str:
        with self._changed:
            return b"".join(self.err).decode()

    def wait_for(self, needle: str, *, stream: str = "stderr", timeout: float = 30) -> None:
        """Until ``needle`` appears in ``stream``; fails the test if the program ends or time runs out first."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while needle not in b"".join(self.err if stream == "stderr" else self.out).decode(errors="replace"):
                left = deadline - time.monotonic()
                if left <= 0 or not any(t.is_alive() for t in self._threads):
                    self.proc.kill()
                    pytest.fail(f"{needle!r} never appeared on {stream}; stderr: {b''.join(self.err)[-2000:]!r}")
                self._changed.wait(min(left, 1.0))

    def finish(self, timeout: float = 60) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail(f"program did not finish in {timeout}s")
        for thread in self._threads:
            thread.join(10)
        return code


def first_to_log(programs: list[Program], pattern: str, timeout: float = 30) -> Program:
    """The first of ``programs`` whose stderr matches the regex ``pattern``: several workers, and the test
    acts on whichever reaches a point first. Each program's output is looked at as it arrives (every 50 ms
    at most, for ``timeout`` seconds at most); fails the test if none gets there."""
    import re

    deadline = time.monotonic() + timeout
    ticker = threading.Event()  # never set: its timed wait paces the look-ups
    while time.monotonic() < deadline:
        for program in programs:
            if re.search(pattern, program.stderr):
                return program
        if not any(program.proc.poll() is None for program in programs):
            break
        ticker.wait(0.05)
    pytest.fail(f"no program logged {pattern!r}; their last lines: {[p.stderr[-500:] for p in programs]}")


def kill_until_done(
    start: Callable[[int], list[str]], watch: PageWatch, served: Callable[[], int], *, log: Path,
    steps: Callable[[], int], kills_wanted: int = 4, attempts: int = 30, timeout: float = 60,
) -> int:
    """Start the program, SIGKILL it when the server reaches a page ``steps()`` pages further on, restart
    (``start(attempt)`` gives the command line), until it exits 0; after ``kills_wanted`` kills the program
    is left to finish. Returns the number of kills."""
    kills = 0
    for attempt in range(attempts):
        watch.arm(served() + steps() if kills < kills_wanted else 1 << 30)
        with open(log, "a", encoding="utf-8") as err:
            proc = subprocess.Popen(start(attempt), stdin=subprocess.DEVNULL, stdout=err, stderr=err, cwd=ROOT)
        deadline = time.monotonic() + timeout
        while not watch.reached.wait(0.05) and proc.poll() is None:
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"no progress in {timeout}s; see {log}")
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        code = proc.wait(timeout)
        if code == -signal.SIGKILL:
            kills += 1
            continue
        assert code == 0, f"exit {code}; see {log}:\n{log.read_text()[-3000:]}"
        return kills
    pytest.fail(f"never completed in {attempts} attempts; see {log}")

"""Shared test helpers: running the example job as a real subprocess and talking to it through pipes, and
reaching the test PostgreSQL server.

PostgreSQL: ``SYNCPOINT_TEST_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``). An
unreachable server skips the tests that need it, unless ``SYNCPOINT_REQUIRE_POSTGRES=1`` (set by
``.ci/run``), which fails them.
"""

from __future__ import annotations

import contextlib
import functools
import os
import selectors
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
COUNTING_JOB = ROOT / "tests" / "jobs" / "counting_job.py"
PG_URL = os.environ.get("SYNCPOINT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE_PG = os.environ.get("SYNCPOINT_REQUIRE_POSTGRES") == "1"


def with_query(url: str, **options: str) -> str:
    """``url`` with query options added or replaced (``schema=``, ``retry=``, libpq's own)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in options] + list(options.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


@functools.cache
def pg_problem() -> str | None:
    """Why the PostgreSQL tests cannot run here, or None."""
    import psycopg

    from syncpoint.stores import mask_url

    try:
        psycopg.connect(PG_URL, connect_timeout=3).close()
    except psycopg.Error as exc:
        return f"PostgreSQL at {mask_url(PG_URL)} is unreachable: {str(exc).strip().splitlines()[0]}"
    return None


def require_pg() -> str:
    """The server's URL; skips the test if it is unreachable, or fails it under SYNCPOINT_REQUIRE_POSTGRES=1."""
    problem = pg_problem()
    if problem:
        if REQUIRE_PG:
            pytest.fail(f"{problem} (SYNCPOINT_REQUIRE_POSTGRES=1)")
        pytest.skip(problem)
    return PG_URL


def drop_pg_schema(name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def late_commits(schema: str, run_id: str) -> list[tuple[str, int]]:
    """Lease epochs that committed after the next epoch was granted (the store's own audit, must be none)."""
    import psycopg

    from syncpoint.stores.pg_leases import LeaseSql

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        return LeaseSql(schema).late_commits(conn, run_id)


def drop_fleet_schema(schema: str, job: str) -> None:
    """Drop a distributed job's schema and its queue's jobs (procrastinate's tables are shared by schemas)."""
    import psycopg

    from syncpoint.distributed.fleet import default_queue

    drop_pg_schema(schema)
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute("DELETE FROM procrastinate_jobs WHERE queue_name = %s", (default_queue(schema, job),))


EMBEDDED_STORES = [pytest.param("sqlite", id="sqlite"), pytest.param("json", id="json")]


def store_url(kind: str, tmp_path: Path) -> str:
    return f"sqlite:{tmp_path / 'cp' / 'syncpoint.db'}" if kind == "sqlite" else f"json:{tmp_path / 'cp'}"


class Child:
    """A job subprocess whose stdout lines we read with a deadline (no sleeps as synchronisation)."""

    def __init__(self, args: list[str], *, stdin: bool = True, env: dict[str, str] | None = None,
                 stderr: Path | None = None) -> None:
        """``stderr``: a file for the child's stderr (a chatty child would otherwise fill the pipe and block)."""
        err = open(stderr, "ab") if stderr is not None else subprocess.PIPE  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(
            [sys.executable, *args],
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=err, text=True,
            env={**os.environ, **(env or {})}, cwd=ROOT,
        )
        if stderr is not None:
            err.close()  # type: ignore[union-attr]
        self.stderr_path = stderr
        self._sel = selectors.DefaultSelector()
        assert self.proc.stdout is not None
        self._sel.register(self.proc.stdout, selectors.EVENT_READ)
        self.lines: list[str] = []
        self.err_lines: list[str] = []
        self._buffer = b""

    def read_line(self, timeout: float = 30.0) -> str | None:
        """The next stdout line, or None at end of output; fails the test after ``timeout``.

        Reads raw bytes with ``os.read`` into our own buffer: a buffered ``readline`` could swallow several
        lines at once, and ``select`` would then wait for output that is already here.
        """
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                self.proc.kill()
                pytest.fail(f"child printed nothing for {timeout}s; lines so far: {self.lines[-5:]}")
            if self._sel.select(left):
                chunk = os.read(fd, 65536)
                if not chunk:
                    if not self._buffer:
                        return None
                    self._buffer += b"\n"
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        self.lines.append(line.decode())
        return self.lines[-1]

    def expect(self, prefix: str, timeout: float = 30.0) -> str:
        while True:
            line = self.read_line(timeout)
            if line is None:
                err = self.finish()[1]
                pytest.fail(f"child ended before printing {prefix!r}; stderr: {err[-2000:]}")
            if line.startswith(prefix):
                return line

    def expect_stderr(self, needle: str, timeout: float = 30.0) -> str:
        """Read stderr lines until one contains ``needle`` (stdout is not read meanwhile)."""
        assert self.proc.stderr is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stderr, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sel.select(deadline - time.monotonic()):
                line = self.proc.stderr.readline()
                if not line:
                    break
                self.err_lines.append(line.rstrip("\n"))
                if needle in line:
                    return line
        self.proc.kill()
        pytest.fail(f"child never wrote {needle!r} to stderr; got {self.err_lines[-5:]}")

    def send(self, text: str = "go") -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def finish(self, timeout: float = 60.0) -> tuple[int, str]:
        try:
            out, err = self.proc.communicate(timeout=timeout)
            out = self._buffer.decode() + out
            self._buffer = b""
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            pytest.fail(f"child did not finish in {timeout}s")
        self.lines.extend(out.splitlines())
        if self.stderr_path is not None:
            err = self.stderr_path.read_text(errors="replace")
        return self.proc.returncode, "\n".join([*self.err_lines, err or ""])


def run_job(args: list[str], timeout: float = 120.0) -> tuple[int, str, str]:
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          stdin=subprocess.DEVNULL)
    return proc.returncode, proc.stdout, proc.stderr


def mount(*args: str) -> bool:
    """``mount ARGS`` (root only); True if it worked."""
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@contextlib.contextmanager
def read_only_directory(path: Path) -> Iterator[None]:
    """Make ``path`` read-only for this block, for root too (which ignores permission bits): as root, a
    read-only bind mount of the directory on itself; otherwise ``chmod 555``. Skips if neither works."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o555)
        try:
            yield
        finally:
            path.chmod(mode)
        return
    if not mount("--bind", str(path), str(path)):
        pytest.skip("cannot bind-mount here (root ignores chmod)")
    try:
        if not mount("-o", "remount,bind,ro", str(path)):
            pytest.skip("cannot remount read-only here")
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)

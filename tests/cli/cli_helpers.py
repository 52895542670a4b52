"""Helpers for the ``syncpoint`` command's tests: stores of each kind, sample data, ways to run the CLI.

Stores: ``sqlite``, ``json`` and ``postgres`` (see ``helpers.require_pg``: skipped without a server, failed
under ``SYNCPOINT_REQUIRE_POSTGRES=1``). Each PostgreSQL test gets a fresh schema (``?schema=``), dropped
afterwards.
"""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from helpers import PG_URL, drop_pg_schema, require_pg, with_query

import syncpoint
from syncpoint.stores.base import Store

ROOT = Path(__file__).resolve().parents[2]
APPS = Path(__file__).resolve().parent / "apps"
KINDS = ("sqlite", "json", "postgres")


def need(kind: str) -> None:
    if kind == "postgres":
        require_pg()


class Stores:
    """Makes stores of any kind for one test; drops the PostgreSQL schemas it created afterwards."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.schemas: list[str] = []
        self.count = 0

    def url(self, kind: str) -> str:
        need(kind)
        self.count += 1
        if kind == "sqlite":
            return f"sqlite:{self.tmp_path / f'sqlite{self.count}' / 'syncpoint.db'}"
        if kind == "json":
            return f"json:{self.tmp_path / f'json{self.count}'}"
        schema = f"cli_{uuid.uuid4().hex[:12]}"
        self.schemas.append(schema)
        return with_query(PG_URL, schema=schema)

    def cleanup(self) -> None:
        if not self.schemas:
            return
        for schema in self.schemas:
            drop_pg_schema(schema)


# -- running the command ---------------------------------------------------------------------------------------
def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SYNCPOINT_STORE", "SYNCPOINT_PROGRESS_INTERVAL")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra)
    return env


def sp(*args: str, input: str | None = None, env: dict[str, str] | None = None,
       cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``python -m syncpoint ARGS`` in a real subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "syncpoint", *args], capture_output=True, text=True, input=input,
        env=env or clean_env(), cwd=cwd or ROOT, timeout=timeout,
        stdin=None if input is not None else subprocess.DEVNULL,
    )


@contextmanager
def opened(url: str) -> Iterator[Store]:
    store = syncpoint.open_store(url)
    try:
        yield store
    finally:
        store.close()


def app(name: str) -> str:
    return str(APPS / name)


# -- sample data ----------------------------------------------------------------------------------------------
class Retryable(Exception):
    retryable = True


def populate(url: str) -> dict[str, str]:
    """Runs of two jobs covering every field: statuses, keys, params, cursors, totals, failures, both ledger
    kinds, phases, state; returns {label: run_id}."""
    from syncpoint.errors import Stopped

    ids: dict[str, str] = {}
    store = syncpoint.open_store(url)
    try:
        job = syncpoint.Job("alpha", {"base": "https://example.org", "n": [1, 2]}, store=store)
        with job.run(key="2024-03-15", params={"who": "tëst", "depth": 2}) as run:
            ids["alpha-completed"] = run.run_id
            run.complete_phase("discovery")
            with run.task("pages") as task:
                task.set_total(3)
                for page in range(3):
                    task.set_cursor({"page": page + 1, "token": "ab/c"}, pages=1, records=10)
            with run.task("items:ü/1") as task:
                for i in range(25):
                    if i % 10 == 3:
                        task.item_failed(f"id-{i:03d}", f"HTTP 50{i % 4}", retryable=i % 2 == 0)
                    else:
                        task.item_done(f"id-{i:03d}")
            with run.task("marks") as task:
                mark = task.watermark(syncpoint.NEWEST_FIRST)
                stamp = datetime(2024, 3, 15, 10, 0, tzinfo=timezone(timedelta(hours=1)))
                for rid in ("r1", "r2", "r3"):
                    mark.advance(rid, stamp)
            run.complete_phase("pulls")
            run.state.set("last_id", {"id": 99, "at": "2024-03-15"})
            run.state.set("cursor", "tok-1")
        with job.run(max_items=5) as run:
            ids["alpha-partial"] = run.run_id
            task = run.task("items")
            task.set_total(100)
            for i in range(100):
                task.item_done(str(i))
        beta = syncpoint.Job("beta", store=store)
        with beta.run() as run:
            ids["beta-failed"] = run.run_id
            with run.task("boom").isolated() as task:
                task.item_failed("x1", "bad record", retryable=False)
                raise Retryable("server said no")
            run.task("never")
        with beta.run(new_run=True) as run:
            ids["beta-interrupted"] = run.run_id
            run.task("one").set_cursor(5, records=5)
            raise Stopped("stopped by SIGINT", 130)
    finally:
        store.close()
    return ids


class Holder:
    """``apps/hold_run.py``: a live run of ``job`` in another process, ended when we say so."""

    def __init__(self, url: str, job: str = "held") -> None:
        self.proc = subprocess.Popen(
            [sys.executable, app("hold_run.py"), url, job], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env=clean_env(), cwd=ROOT,
        )
        line = self._line()
        assert line.startswith("run "), f"holder said {line!r}; stderr: {self._stderr()}"
        self.run_id = line.split()[1]

    def _line(self, timeout: float = 60.0) -> str:
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout):
                self.proc.kill()
                pytest.fail(f"holder printed nothing in {timeout}s")
        return self.proc.stdout.readline().strip()

    def _stderr(self) -> str:
        if self.proc.poll() is None:
            return ""
        assert self.proc.stderr is not None
        return self.proc.stderr.read()

    def release(self) -> None:
        """Let the run end (through the pipe) and wait for the process to exit."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        assert self._line() == "released"
        self.proc.wait(timeout=60)
        assert self.proc.returncode == 0, self._stderr()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

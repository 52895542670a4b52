"""Many workers on one run (``syncpoint.distributed``): every figure is measured in the same run as its baseline.

    ratio workers8_vs_1_io           tasks/s with 8 worker processes over 1, through procrastinate and the real
                                     PostgreSQL, each task one request to a local HTTP server that answers
                                     after 50 ms (target >= 6)
    ratio worker_concurrency8_vs_1_io
                                     tasks/s with ONE worker process at ``fleet.work(concurrency=8)`` over the
                                     same at concurrency 1, same tasks (target >= 6: the store's small
                                     connection pool is not what limits a worker)
    ratio lease_commit_vs_plain_commit
                                     a page commit (a task's cursor) with the lease's epoch check over the same
                                     commit without it, on the PostgreSQL store (target <= 1.3)
    takeover after kill -9           seconds from a worker's kill -9 to another worker's commit of that task's
                                     next page, median of 5, next to the configured stall timeout

Run: ``python benchmarks/bench_distributed.py`` (``make bench`` runs it); needs PostgreSQL
(``SYNCPOINT_TEST_POSTGRES_URL``, default ``postgresql://postgres@127.0.0.1:5432/test``).
"""

from __future__ import annotations

import os
import selectors
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql
from slow_server import DELAY, slow_server

import syncpoint
from syncpoint.distributed import Fleet, WorkerRun
from syncpoint.model import RunRecord, RunStatus, TaskRecord, TaskStatus, utcnow
from syncpoint.stores.base import ChangeSet, LeaseFence
from syncpoint.stores.pg_leases import Holder, LeaseSql
from syncpoint.stores.postgres import PostgresStore

PG = os.environ.get("SYNCPOINT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
TASKS_PER_WORKER = int(os.environ.get("BENCH_FLEET_TASKS_PER_WORKER", "40"))
COMMITS = int(os.environ.get("BENCH_LEASE_COMMITS", "3000"))
STALL = 2.0
HERE = Path(__file__).resolve()


def store_url(schema: str) -> str:
    return f"{PG}{'&' if '?' in PG else '?'}schema={schema}"


def make_fleet(url: str, job_name: str) -> Fleet:
    job = syncpoint.Job(job_name, {}, store=url,
                        save_policy=syncpoint.SavePolicy(every_pages=1, every_items=1000, every_seconds=3600))
    return Fleet(job, stall_timeout=STALL)


# -- the worker process ---------------------------------------------------------------------------------
def worker(url: str, job_name: str, base: str, pages: int, page_delay: float, concurrency: int) -> int:
    fleet = make_fleet(url, job_name)
    client = httpx.Client(base_url=base) if base else None

    @fleet.task
    def work(run: WorkerRun, task: syncpoint.Task) -> None:
        if client is not None:
            client.get(f"/items/{task.name}").raise_for_status()
        cursor = task.page_cursor(first=0)
        for page in range(cursor.page, pages):
            run.checkpoint()
            time.sleep(page_delay)
            cursor.done(page)
            print(f"PAGE {task.name} {page} {run.epoch}", flush=True)

    print("WORKER", flush=True)
    return fleet.work(concurrency=concurrency)


class Workers:
    def __init__(self, url: str, job_name: str, n: int, *, base: str = "", pages: int = 0, delay: float = 0.0,
                 concurrency: int = 1):
        args = [sys.executable, str(HERE), "worker", url, job_name, base, str(pages), str(delay), str(concurrency)]
        self.procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) for _ in range(n)]
        self.sel = selectors.DefaultSelector()
        for proc in self.procs:
            assert proc.stdout is not None
            self.sel.register(proc.stdout, selectors.EVENT_READ, proc)
        self.buffers: dict[subprocess.Popen[bytes], bytes] = {proc: b"" for proc in self.procs}
        for _ in self.procs:
            assert self.line(60)[1] == "WORKER"

    def line(self, timeout: float) -> tuple[subprocess.Popen[bytes], str]:
        """The next line any worker printed (raw reads into our own buffers: a buffered reader could hold
        lines that ``select`` no longer reports)."""
        deadline = time.monotonic() + timeout
        while True:
            for proc, pending in self.buffers.items():
                if b"\n" in pending:
                    text, _, self.buffers[proc] = pending.partition(b"\n")
                    return proc, text.decode().strip()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no worker printed anything")
            for key, _ in self.sel.select(left):
                chunk = os.read(key.fileobj.fileno(), 65536)  # type: ignore[union-attr]
                if chunk:
                    self.buffers[key.data] += chunk
                else:
                    self.sel.unregister(key.fileobj)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def wait_completed(store: PostgresStore, run_id: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = store.get_run(run_id)
        if run is not None and run.status is not RunStatus.RUNNING:
            assert run.status is RunStatus.COMPLETED, run
            return
        time.sleep(0.01)  # a benchmark's poll of the outcome, not a synchronisation of the code under test
    raise TimeoutError(f"run {run_id} did not complete in {timeout} s")


def tasks_per_second(base: str, n: int, concurrency: int = 1) -> float:
    """Tasks per second of ``n`` worker processes, each running ``concurrency`` tasks at once."""
    schema = f"bench_fleet_{uuid.uuid4().hex[:10]}"
    url = store_url(schema)
    fleet = make_fleet(url, f"io{n}x{concurrency}")
    fleet.prepare()
    crew = Workers(url, f"io{n}x{concurrency}", n, base=base, concurrency=concurrency)
    try:
        fleet.task(lambda run, task: None)
        names = [f"t{i:05d}" for i in range(TASKS_PER_WORKER * n * concurrency)]
        started = time.perf_counter()
        run_id = fleet.start(names)
        wait_completed(fleet.store, run_id, 300)
        elapsed = time.perf_counter() - started
    finally:
        crew.stop()
        drop(schema, fleet)
    return len(names) / elapsed


def lease_commit_ratio() -> tuple[float, float]:
    schema = f"bench_lease_{uuid.uuid4().hex[:10]}"
    store = PostgresStore(store_url(schema))
    try:
        now = utcnow()
        store.apply(ChangeSet(runs=[RunRecord("r", "j", RunStatus.RUNNING, {}, "d", now, now)],
                              tasks=[TaskRecord("r", "leased", 0), TaskRecord("r", "plain", 1)]))
        sql_ = LeaseSql(schema)
        with store.transaction() as conn:
            sql_.add(conn, "r", "j", ["leased"])
            sql_.set_queue_job(conn, "r", "leased", 1)
            grant = sql_.take(conn, "r", "leased", 1, Holder("bench", os.getpid(), "bench"))
        assert grant is not None
        fence = LeaseFence("r", "leased", grant.epoch)

        def page(name: str, n: int) -> TaskRecord:
            return TaskRecord("r", name, 0 if name == "leased" else 1, status=TaskStatus.IN_PROGRESS,
                              cursor={"page": n}, pages=n, records=n * 100, updated_at=utcnow())

        plain: list[float] = []
        leased: list[float] = []
        for rnd in range(10):  # interleaved rounds: drift on the machine hits both alike
            t0 = time.perf_counter()
            for n in range(COMMITS // 10):
                store.apply(ChangeSet(tasks=[page("plain", rnd * 1000 + n)]))
            t1 = time.perf_counter()
            for n in range(COMMITS // 10):
                store.apply(ChangeSet(tasks=[page("leased", rnd * 1000 + n)], fence=fence))
            t2 = time.perf_counter()
            plain.append(t1 - t0)
            leased.append(t2 - t1)
        per = COMMITS // 10
        return statistics.median(plain) / per, statistics.median(leased) / per
    finally:
        store.close()
        drop(schema, None)


def takeover_seconds(trials: int) -> list[float]:
    schema = f"bench_take_{uuid.uuid4().hex[:10]}"
    url = store_url(schema)
    fleet = make_fleet(url, "takeover")
    fleet.prepare()
    fleet.task(lambda run, task: None)
    crew = Workers(url, "takeover", trials + 1, pages=10_000, delay=0.05)
    found: list[float] = []
    try:
        for trial in range(trials):
            name = f"slow{trial}"
            fleet.start([name])
            holder, text = crew.line(60)
            while not text.startswith(f"PAGE {name} "):
                holder, text = crew.line(60)
            holder.kill()
            killed = time.perf_counter()
            while True:
                proc, text = crew.line(60)
                if text.startswith(f"PAGE {name} ") and proc is not holder:
                    found.append(time.perf_counter() - killed)
                    break
            # the survivor keeps that task: end it by ending the run (its lease then refuses more commits)
            run_id = fleet.store.list_runs("takeover", limit=1)[0].run_id
            with psycopg.connect(PG, autocommit=True) as conn:
                conn.execute(sql.SQL("UPDATE {}.leases SET state = 'finished' WHERE run_id = %s")
                             .format(sql.Identifier(schema)), (run_id,))
    finally:
        crew.stop()
        drop(schema, fleet)
    return found


def drop(schema: str, fleet: Fleet | None) -> None:
    if fleet is not None:
        fleet.store.close()
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def main() -> None:
    with slow_server() as base:
        one = tasks_per_second(base, 1)
        eight = tasks_per_second(base, 8)
        threaded = tasks_per_second(base, 1, concurrency=8)
    print(f"io-bound tasks ({DELAY * 1000:.0f} ms each, {TASKS_PER_WORKER} per worker): 1 worker {one:,.1f}/s, "
          f"8 workers {eight:,.1f}/s, 1 worker at concurrency 8 {threaded:,.1f}/s")
    print(f"ratio workers8_vs_1_io = {eight / one:.2f}")
    print(f"ratio worker_concurrency8_vs_1_io = {threaded / one:.2f}")
    plain, leased = lease_commit_ratio()
    print(f"page commit on PostgreSQL: plain {plain * 1e6:,.0f} us, with the epoch check {leased * 1e6:,.0f} us "
          f"(median of 10 rounds of {COMMITS // 10})")
    print(f"ratio lease_commit_vs_plain_commit = {leased / plain:.2f}")
    takeovers = takeover_seconds(5)
    print(f"takeover after kill -9: median {statistics.median(takeovers):.2f} s "
          f"(min {min(takeovers):.2f}, max {max(takeovers):.2f}, n={len(takeovers)}) "
          f"with stall_timeout {STALL:g} s (heartbeat every {STALL / 3:.2f} s)")
    sys.stdout.flush()


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        a: list[Any] = sys.argv[2:]
        sys.exit(worker(a[0], a[1], a[2], int(a[3]), float(a[4]), int(a[5])))
    main()

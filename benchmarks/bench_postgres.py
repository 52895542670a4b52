"""PostgreSQL store against bare psycopg on the same server, in the same run.

    .venv/bin/python benchmarks/bench_postgres.py [--items 1000000] [--commits 2000]

Prints three ratios (plus the figures behind them). Both measure what a user's sync pays, through the public
API (``Job.run``, ``Task.item_done``, ``Task.set_cursor``), so they include the run's own work per commit
(building the change set, re-checking the job's advisory lock); the store's ``apply`` alone is printed
beside them for information.

``ratio pg_ledger_vs_raw_copy``: items/s of marking ``--items`` random (uuid4) IDs processed with
``task.item_done`` in one run (the default save policy: a commit every 10,000 items) over items/s of raw
psycopg ``COPY`` of the same IDs into an equivalent table (same columns, same primary key), one COPY and
one transaction per tenth of the IDs. The measurements are interleaved slice by slice, so that other load
on the machine hits both alike. Target >= 0.5.

``ratio pg_cursor_commit_vs_bare_upsert``: seconds per page of progress (``task.set_cursor(..., pages=1)``,
which commits: the default policy commits every page) over seconds per bare single-row ``INSERT ... ON
CONFLICT DO UPDATE`` of the same row into an equivalent table (``LIKE tasks INCLUDING ALL``), committed on
its own (autocommit: one round trip, the fastest bare form). Measured in alternating blocks so that drift
hits both. Target <= 1.5.

``ratio pg_ledger_lookup_1m_vs_empty``: seconds per 10,000 new (uuid4) IDs through ``task.iterate`` +
``task.item_done`` + the commit (a ledger lookup per batch of 500 IDs, the marks, the COPY) when the task's
ledger already holds 1,000,000 rows, over the same on an empty ledger; 100,000 rows is printed too. The
ledger tables have autovacuum off, so the planner never has statistics (what a bulk load meets). One run
on a fresh schema grows its ledger through the same calls; each of its 10k windows is measured against a
10k window on an empty ledger (another fresh schema), the two taken in turn in slices of 1,000 so that
other load on the machine hits both alike; each figure is the best of five windows. Target <= 1.5.

Each benchmark works in a fresh schema, dropped afterwards. ``SYNCPOINT_BENCH_POSTGRES_URL`` (else
``SYNCPOINT_TEST_POSTGRES_URL``, else ``postgresql://postgres@127.0.0.1:5432/test``) names the server.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql
from psycopg.types.json import Json

import syncpoint
from syncpoint.model import LedgerEntry, RunRecord, RunStatus, TaskRecord, TaskStatus, utcnow
from syncpoint.run import SavePolicy
from syncpoint.stores import mask_url
from syncpoint.stores.base import ChangeSet
from syncpoint.stores.postgres import PostgresStore

URL = os.environ.get(
    "SYNCPOINT_BENCH_POSTGRES_URL",
    os.environ.get("SYNCPOINT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
)


@contextmanager
def fresh_schema(prefix: str) -> Iterator[str]:
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        with psycopg.connect(URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def open_store(schema: str) -> tuple[PostgresStore, str]:
    store = PostgresStore(URL, schema=schema)
    now = utcnow()
    run = RunRecord("20250101-000000-abcdef", "bench", RunStatus.RUNNING, {}, "-", now, now)
    store.apply(ChangeSet(runs=[run], tasks=[TaskRecord(run.run_id, "items", 0, TaskStatus.IN_PROGRESS)]))
    return store, run.run_id


def raw_table(conn: psycopg.Connection[tuple[object, ...]], schema: str, name: str) -> sql.Composed:
    """An equivalent of the store's ledger table; returns the COPY statement for it."""
    table = sql.Identifier(schema, name)
    conn.execute(
        sql.SQL(
            'CREATE TABLE {} (task_id bigint NOT NULL, kind smallint NOT NULL, item_id text COLLATE "C" NOT NULL,'
            " outcome smallint NOT NULL, error text, PRIMARY KEY (task_id, kind, item_id))"
        ).format(table)
    )
    return sql.SQL("COPY {} (task_id, kind, item_id, outcome) FROM STDIN").format(table)


def raw_copy(conn: psycopg.Connection[tuple[object, ...]], copy_sql: sql.Composed, ids: list[str]) -> float:
    start = time.perf_counter()
    with conn.transaction(), conn.cursor().copy(copy_sql) as copy:
        for item_id in ids:
            copy.write_row((1, 0, item_id, 0))
    return time.perf_counter() - start


RUN_DEFAULT = SavePolicy().every_items


@contextmanager
def open_run(schema: str, job: str) -> Iterator[tuple[syncpoint.Run, syncpoint.Task]]:
    """A run on a fresh schema of the server, and its one task; the run ends partial (budget of 1 item)."""
    j = syncpoint.Job(job, store=with_schema(URL, schema))
    try:
        with j.run() as run:
            yield run, run.task("items")
    finally:
        j.close()


def with_schema(url: str, schema: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}schema={schema}"


def bench_ledger(ids: list[str], slices: int = 10) -> tuple[float, float]:
    """(ratio through the run, ratio of ``PostgresStore.apply`` alone) over raw COPY.

    The IDs are cut into ``slices``; each slice is COPYed raw (one COPY, one transaction), then COPYed raw
    again in transactions of the run's commit size (the floor for that commit size, for information), then
    marked through ``PostgresStore.apply`` in change sets of that size, then marked with ``task.item_done``
    in an open run: load from other processes on the machine hits all four alike.
    """
    raw_s = floor_s = apply_s = run_s = 0.0
    batch = RUN_DEFAULT
    with fresh_schema("bench_raw") as raw_schema, fresh_schema("bench_store") as store_schema, \
            fresh_schema("bench_run") as run_schema, psycopg.connect(URL, autocommit=True) as conn, \
            open_run(run_schema, "bench") as (run, task):
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(raw_schema)))
        copy_one, copy_batched = raw_table(conn, raw_schema, "one_copy"), raw_table(conn, raw_schema, "batched")
        store, run_id = open_store(store_schema)
        try:
            step = -(-len(ids) // slices)
            for first in range(0, len(ids), step):
                part = ids[first : first + step]
                raw_s += raw_copy(conn, copy_one, part)
                for offset in range(0, len(part), batch):
                    floor_s += raw_copy(conn, copy_batched, part[offset : offset + batch])
                for offset in range(0, len(part), batch):
                    chunk = part[offset : offset + batch]
                    changes = ChangeSet(ledger=[LedgerEntry(run_id, "items", i, True) for i in chunk])
                    start = time.perf_counter()
                    store.apply(changes)
                    apply_s += time.perf_counter() - start
                start = time.perf_counter()
                for item in part:
                    task.item_done(item)
                run.commit()
                run_s += time.perf_counter() - start
            assert store.ledger_counts(run_id, "items").ok == len(ids)
            assert run.store.ledger_counts(run.run_id, "items").ok == len(ids)
        finally:
            store.close()
    n = len(ids)
    print(f"raw psycopg COPY, one COPY per {step:,} IDs: {n / raw_s:,.0f} items/s")
    print(f"raw psycopg COPY, one COPY + commit per {batch:,} IDs: {n / floor_s:,.0f} items/s "
          f"(the floor for the run's commit size)")
    print(f"PostgresStore.apply alone, {batch:,} items per change set: {n / apply_s:,.0f} items/s")
    print(f"task.item_done in a run (a commit every {batch:,} items): {n / run_s:,.0f} items/s "
          f"({floor_s / run_s:.2f} of the floor)")
    return raw_s / run_s, raw_s / apply_s


TASK_COLUMNS = (
    "run_id", "name", "position", "status", "cursor", "pages", "records", "ok", "failed", "total", "error",
    "retryable", "started_at", "updated_at", "completed_at",
)


def bench_cursor(commits: int, rounds: int = 10) -> tuple[float, float]:
    """(seconds per page committed through a run, seconds per ``apply`` of the same change) over seconds
    per bare upsert of the same row shape."""
    with fresh_schema("bench_cursor") as schema, fresh_schema("bench_cursor_run") as run_schema, \
            psycopg.connect(URL, autocommit=True) as conn, open_run(run_schema, "cursor") as (run, task):
        store, run_id = open_store(schema)
        bare_table = sql.Identifier(schema, "bare_tasks")
        conn.execute(sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING ALL)").format(
            bare_table, sql.Identifier(schema, "tasks")))
        upsert = sql.SQL(
            "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT (run_id, name) DO UPDATE SET {}"
        ).format(
            bare_table,
            sql.SQL(", ").join(map(sql.Identifier, TASK_COLUMNS)),
            sql.SQL(", ").join(sql.Placeholder() for _ in TASK_COLUMNS),
            sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in TASK_COLUMNS[2:]),
        )
        ours = applied = bare = 0.0
        per_round = commits // rounds
        try:
            for _ in range(rounds):
                start = time.perf_counter()
                for page in range(per_round):
                    task.set_cursor({"page": page, "token": uuid.uuid4().hex}, pages=1)
                ours += time.perf_counter() - start
                start = time.perf_counter()
                for page in range(per_round):
                    cursor = {"page": page, "token": uuid.uuid4().hex}
                    record = TaskRecord(
                        run_id, "items", 0, TaskStatus.IN_PROGRESS, cursor=cursor, pages=page, updated_at=utcnow()
                    )
                    store.apply(ChangeSet(tasks=[record]))
                applied += time.perf_counter() - start
                start = time.perf_counter()
                for page in range(per_round):
                    cursor = {"page": page, "token": uuid.uuid4().hex}
                    row = (run_id, "items", 0, "in_progress", Json(cursor), page, 0, 0, 0, None, None, False, None,
                           utcnow(), None)
                    conn.execute(upsert, row)
                bare += time.perf_counter() - start
            assert run.store.get_tasks(run.run_id)[0].pages == rounds * per_round, "each page was committed"
        finally:
            store.close()
    n = rounds * per_round
    print(f"page committed via task.set_cursor in a run: {ours / n * 1e3:.3f} ms; PostgresStore.apply of the "
          f"same change alone: {applied / n * 1e3:.3f} ms; bare upsert of the same row into an equivalent table, "
          f"autocommit: {bare / n * 1e3:.3f} ms ({n:,} each, interleaved)")
    return ours / bare, applied / bare


def bench_lookup_growth(sizes: tuple[int, ...] = (100_000, 1_000_000), window: int = 10_000,
                        rounds: int = 5, slices: int = 10) -> dict[int, float]:
    """Seconds per ``window`` new IDs through ``task.iterate`` + ``item_done`` + commit on an empty ledger
    (key 0) and when the task's ledger holds each of ``sizes`` rows; the best of ``rounds`` windows.

    The big ledger is one run on a fresh schema, grown through the same calls. Each of its windows is
    measured against a window on an empty ledger (a run on another fresh schema, made for that window),
    cut into ``slices`` taken in turn, so that other load on the machine hits both alike.
    """
    best = {size: float("inf") for size in (0, *sizes)}
    with fresh_schema("bench_growth") as schema, open_run(schema, "growth") as (run, task):
        no_statistics(schema)
        run.commit()  # the task is in the store from here on: every batch asks the store, as on a resume
        rows = 0
        for size in sizes:
            while rows < size:  # grow the ledger the way a sync does; not measured
                fill = min(size - rows, 100_000)
                for item in task.iterate(uuid.uuid4().hex for _ in range(fill)):
                    task.item_done(item)
                run.commit()
                rows += fill
            for _ in range(rounds):
                with fresh_schema("bench_empty") as empty_schema, open_run(empty_schema, "growth") as (run0, task0):
                    no_statistics(empty_schema)
                    run0.commit()
                    empty = full = 0.0
                    for _ in range(slices):
                        empty += timed_window(run0, task0, window // slices, commit=False)
                        full += timed_window(run, task, window // slices, commit=False)
                    empty += timed_window(run0, task0, 0)
                    full += timed_window(run, task, 0)
                best[0], best[size] = min(best[0], empty), min(best[size], full)
                rows += window
        assert run.store.ledger_counts(run.run_id, "items").ok == rows
    shown = ", ".join(f"{size:,} rows: {seconds:.3f} s" for size, seconds in sorted(best.items()))
    print(f"{window:,} new IDs through task.iterate + item_done + commit, the ledger never analyzed, at {shown}")
    return best


def no_statistics(schema: str) -> None:
    """What a bulk load on a server with autovacuum off meets: the planner never gets statistics."""
    with psycopg.connect(URL, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER TABLE {} SET (autovacuum_enabled = false)").format(
            sql.Identifier(schema, "ledger")))


def timed_window(run: syncpoint.Run, task: syncpoint.Task, n: int, *, commit: bool = True) -> float:
    """Seconds to put ``n`` new IDs through ``task.iterate`` + ``item_done`` (and commit)."""
    ids = [uuid.uuid4().hex for _ in range(n)]
    start = time.perf_counter()
    for item in task.iterate(ids):
        task.item_done(item)
    if commit:
        run.commit()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--commits", type=int, default=2000)
    args = parser.parse_args()
    ids = [uuid.uuid4().hex for _ in range(args.items)]
    print(f"server: {mask_url(URL)}")
    through_run, apply_only = bench_ledger(ids)
    print(f"ratio pg_ledger_vs_raw_copy = {through_run:.2f}")
    print(f"(PostgresStore.apply alone: {apply_only:.2f})")
    growth = bench_lookup_growth()
    print(f"ratio pg_ledger_lookup_1m_vs_empty = {growth[1_000_000] / growth[0]:.2f}")
    through_run, apply_only = bench_cursor(args.commits)
    print(f"ratio pg_cursor_commit_vs_bare_upsert = {through_run:.2f}")
    print(f"(PostgresStore.apply alone: {apply_only:.2f})")


if __name__ == "__main__":
    main()

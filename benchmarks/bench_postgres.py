"""PostgreSQL store against bare psycopg on the same server, in the same run.

    .venv/bin/python benchmarks/bench_postgres.py [--items 1000000] [--batch 10000] [--commits 2000]

Prints two ratios (plus the figures behind them):

``ratio pg_ledger_vs_raw_copy``: items/s of marking ``--items`` random (uuid4) item IDs ok through the public
store API — ``PostgresStore.apply`` of change sets of ``--batch`` ledger entries, one commit each (10,000 per
commit, ``SavePolicy().every_items``, is what a run uses by default) — over items/s of raw psycopg
``COPY`` of the same IDs into an
equivalent table (same columns, same primary key), one COPY and one transaction per tenth of the IDs. The
measurements are interleaved slice by slice, so that other load on the machine hits both alike. For
information it also prints the floor for the commit size: raw COPY with one commit per ``--batch`` IDs. The
ratio times ``apply`` itself; a second line includes building the ``LedgerEntry`` objects (the caller's
cost). Target >= 0.5.

``ratio pg_cursor_commit_vs_bare_upsert``: seconds per commit of one task-cursor update (``apply`` of a
change set with one ``TaskRecord``) over seconds per bare single-row ``INSERT ... ON CONFLICT DO UPDATE`` of
the same row into an equivalent table (``LIKE tasks INCLUDING ALL``), committed on its own (autocommit: one
round trip, the fastest bare form). The two are measured in alternating blocks so that drift hits both.
Target <= 1.5.

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


def bench_ledger(ids: list[str], batch: int, slices: int = 10) -> tuple[float, float]:
    """(ratio of apply alone, ratio including building the LedgerEntry objects) over raw COPY.

    The IDs are cut into ``slices``; each slice is COPYed raw (one COPY, one transaction), then COPYed raw
    again in ``batch``-sized transactions (the floor for one commit per ``batch``, for information), then
    marked through the store: load from other processes on the machine hits all three alike.
    """
    raw_s = floor_s = apply_s = build_s = 0.0
    with fresh_schema("bench_raw") as raw_schema, fresh_schema("bench_store") as store_schema, \
            psycopg.connect(URL, autocommit=True) as conn:
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
                    start = time.perf_counter()
                    chunk = part[offset : offset + batch]
                    changes = ChangeSet(ledger=[LedgerEntry(run_id, "items", i, True) for i in chunk])
                    built = time.perf_counter()
                    store.apply(changes)
                    build_s += built - start
                    apply_s += time.perf_counter() - built
            assert store.ledger_counts(run_id, "items").ok == len(ids)
        finally:
            store.close()
    n = len(ids)
    default = " (the run default)" if batch == RUN_DEFAULT else ""
    print(f"raw psycopg COPY, one COPY per {step:,} IDs: {n / raw_s:,.0f} items/s")
    print(f"raw psycopg COPY, one COPY + commit per {batch:,} IDs: {n / floor_s:,.0f} items/s "
          f"(the floor for that commit size)")
    print(f"PostgresStore.apply, {batch:,} items per commit{default}: {n / apply_s:,.0f} items/s "
          f"({floor_s / apply_s:.2f} of the floor); with building the LedgerEntry objects: "
          f"{n / (apply_s + build_s):,.0f} items/s")
    return raw_s / apply_s, raw_s / (apply_s + build_s)


TASK_COLUMNS = (
    "run_id", "name", "position", "status", "cursor", "pages", "records", "ok", "failed", "total", "error",
    "retryable", "started_at", "updated_at", "completed_at",
)


def bench_cursor(commits: int, rounds: int = 10) -> float:
    """Seconds per cursor commit through the store over seconds per bare upsert of the same row shape."""
    with fresh_schema("bench_cursor") as schema, psycopg.connect(URL, autocommit=True) as conn:
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
        ours = bare = 0.0
        per_round = commits // rounds
        try:
            for _ in range(rounds):
                start = time.perf_counter()
                for page in range(per_round):
                    cursor = {"page": page, "token": uuid.uuid4().hex}
                    task = TaskRecord(
                        run_id, "items", 0, TaskStatus.IN_PROGRESS, cursor=cursor, pages=page, updated_at=utcnow()
                    )
                    store.apply(ChangeSet(tasks=[task]))
                ours += time.perf_counter() - start
                start = time.perf_counter()
                for page in range(per_round):
                    cursor = {"page": page, "token": uuid.uuid4().hex}
                    row = (run_id, "items", 0, "in_progress", Json(cursor), page, 0, 0, 0, None, None, False, None,
                           utcnow(), None)
                    conn.execute(upsert, row)
                bare += time.perf_counter() - start
        finally:
            store.close()
    n = rounds * per_round
    print(f"cursor commit via PostgresStore.apply: {ours / n * 1e3:.3f} ms; bare upsert of the same row into an "
          f"equivalent table, autocommit: {bare / n * 1e3:.3f} ms ({n:,} each, interleaved)")
    return ours / bare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=RUN_DEFAULT, help="ledger items per commit (default: the run's)")
    parser.add_argument("--commits", type=int, default=2000)
    args = parser.parse_args()
    ids = [uuid.uuid4().hex for _ in range(args.items)]
    print(f"server: {mask_url(URL)}")
    apply_only, with_build = bench_ledger(ids, args.batch)
    print(f"ratio pg_ledger_vs_raw_copy = {apply_only:.2f}")
    print(f"(including building the entries: {with_build:.2f})")
    print(f"ratio pg_cursor_commit_vs_bare_upsert = {bench_cursor(args.commits):.2f}")


if __name__ == "__main__":
    main()

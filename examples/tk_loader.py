#!/usr/bin/env python3
"""Load the Tweede Kamer's open data (OData v4) into SQLite, interruptibly and resumably.

    python examples/tk_loader.py --start-date 2024-06-01          # Ctrl+C or kill -9 at any time
    python examples/tk_loader.py --resume                         # the most recent incomplete run
    python examples/tk_loader.py --resume-run RUN --retry-failed  # also retry the records that failed
    python examples/tk_loader.py --new-run --start-date 2024-01-01
    python examples/tk_loader.py --list-runs
    python examples/tk_loader.py --cleanup --keep 3

Five loaders (load_zaken, load_documents, load_vergaderingen, load_agendapunten, load_activiteiten), one
syncpoint task each, each reading one entity set page by page (``$filter=GewijzigdOp ge …``, ``$count=true``,
following ``@odata.nextLink``) and upserting by ``Id`` into one table per entity in ``--db``. A record the
loader cannot map is a failed item (``syncpoint runs show RUN`` lists it); a loader whose requests fail
for good is a failed task, and the other loaders still run. ``--concurrency N`` writes N records of a page
at once (``run.map`` over ``task.pending``), each recorded in the ledger as it finishes; ``--parallel-loaders
N`` runs N loaders at once (``run.map`` over the run's pending tasks). See docs/EXAMPLES.md.
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Protocol

import click

import syncpoint
from syncpoint.http import HttpClient, HttpError, RetryPolicy, paginate_odata

DEFAULT_BASE_URL = "https://gegevensmagazijn.tweedekamer.nl/OData/v4/2.0"
JOB_NAME = "tk-loader"

# loader (task) name -> (entity set, destination table)
LOADERS: dict[str, tuple[str, str]] = {
    "load_zaken": ("Zaak", "zaak"),
    "load_documents": ("Document", "document"),
    "load_vergaderingen": ("Vergadering", "vergadering"),
    "load_agendapunten": ("Agendapunt", "agendapunt"),
    "load_activiteiten": ("Activiteit", "activiteit"),
}


@dataclass(frozen=True)
class Row:
    """One mapped record: what a destination stores."""

    id: str
    gewijzigd_op: str
    data: Mapping[str, Any]


class Destination(Protocol):
    """Where the loader writes. One method; see docs/EXAMPLES.md for a Neo4j version."""

    def upsert(self, table: str, rows: Sequence[Row]) -> None:
        """Store ``rows`` durably (committed) before returning; a row with a known Id replaces it."""


class SqliteDestination:
    """One table per entity: ``Id TEXT PRIMARY KEY, GewijzigdOp TEXT, data TEXT`` (the record as JSON).

    ``load_counter`` counts the upserts per (table, Id): how often a record was written, for tests and for
    seeing the redo window after a crash.

    Safe for concurrent writers (``--concurrency``): each ``upsert`` borrows a connection of its own from a
    small pool (SQLite connections are not for several threads at once) and returns it; the write
    transactions themselves take turns (``BEGIN IMMEDIATE``, WAL, a 30 s busy timeout).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._idle: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._all: list[sqlite3.Connection] = []
        self._mu = threading.Lock()
        self._tables: set[str] = set()
        with self._connection() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS load_counter (tbl TEXT, id TEXT, n INTEGER NOT NULL, "
                "PRIMARY KEY (tbl, id))"
            )

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        try:
            conn = self._idle.get_nowait()
        except queue.Empty:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA synchronous=FULL")
            with self._mu:
                self._all.append(conn)
        try:
            yield conn
        finally:
            self._idle.put(conn)

    def _ensure(self, conn: sqlite3.Connection, table: str) -> None:
        with self._mu:
            known = table in self._tables
        if not known:
            conn.execute(
                f'CREATE TABLE IF NOT EXISTS "{table}" (Id TEXT PRIMARY KEY, GewijzigdOp TEXT NOT NULL, data TEXT)'
            )
            with self._mu:
                self._tables.add(table)

    def upsert(self, table: str, rows: Sequence[Row]) -> None:
        if not rows:
            return
        with self._connection() as conn:
            self._ensure(conn, table)
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(
                    f'INSERT INTO "{table}" (Id, GewijzigdOp, data) VALUES (?, ?, ?) '
                    "ON CONFLICT (Id) DO UPDATE SET GewijzigdOp = excluded.GewijzigdOp, data = excluded.data",
                    [(r.id, r.gewijzigd_op, json.dumps(r.data, ensure_ascii=False)) for r in rows],
                )
                conn.executemany(
                    "INSERT INTO load_counter (tbl, id, n) VALUES (?, ?, 1) "
                    "ON CONFLICT (tbl, id) DO UPDATE SET n = n + 1",
                    [(table, r.id) for r in rows],
                )

    def close(self) -> None:
        with self._mu:
            for conn in self._all:
                conn.close()
            self._all.clear()


class UnmappableRecord(ValueError):
    """A record without a usable Id or GewijzigdOp: a failed item, not a failed loader."""

    retryable = False


def record_id(record: Any, fallback: str) -> str:
    if isinstance(record, dict) and isinstance(record.get("Id"), str) and record["Id"]:
        return str(record["Id"])
    return fallback


def map_record(record: Any) -> Row:
    """The row for one OData record, or ``UnmappableRecord`` saying why not."""
    if not isinstance(record, dict):
        raise UnmappableRecord(f"record is a {type(record).__name__}, not an object")
    rid = record.get("Id")
    if not isinstance(rid, str) or not rid:
        raise UnmappableRecord("record has no Id")
    changed = record.get("GewijzigdOp")
    if not isinstance(changed, str):
        raise UnmappableRecord(f"record {rid} has no GewijzigdOp")
    try:
        datetime.fromisoformat(changed[:-1] + "+00:00" if changed.endswith("Z") else changed)
    except ValueError:
        raise UnmappableRecord(f"record {rid}: GewijzigdOp {changed!r} is not a datetime") from None
    return Row(rid, changed, record)


def start_filter(value: str | None) -> str | None:
    """``--start-date`` as an OData datetime literal (a date means its midnight, UTC)."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date or datetime (YYYY-MM-DD[THH:MM:SS])") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def process(task: syncpoint.Task, table: str, dest: Destination, records: Sequence[Any], where: str) -> None:
    """Map and upsert the records not yet done, then record each in the ledger (after the commit)."""
    ids = [record_id(r, f"{where}#{i}") for i, r in enumerate(records)]
    skip = task.done_item_ids(ids)
    rows: list[Row] = []
    failures: list[tuple[str, Exception]] = []
    for rid, record in zip(ids, records, strict=True):
        if rid in skip:
            continue
        try:
            rows.append(map_record(record))
        except UnmappableRecord as exc:
            failures.append((rid, exc))
    dest.upsert(table, rows)  # committed before the ledger moves
    for row in rows:
        task.item_done(row.id)
    for rid, error in failures:
        task.item_failed(rid, error, retryable=False)
        task.run.log.warning("%s: record %s failed: %s", task.name, rid, error)


def process_concurrently(run: syncpoint.Run, task: syncpoint.Task, table: str, dest: Destination,
                         records: Sequence[Any], where: str, concurrency: int) -> None:
    """As ``process``, ``concurrency`` records at a time: each is mapped, upserted on its own and recorded
    in the ledger as it finishes (``run.map`` over ``task.pending``); an unmappable record fails for good."""

    def one(numbered: tuple[int, Any]) -> None:
        rid = record_id(numbered[1], f"{where}#{numbered[0]}")
        try:
            row = map_record(numbered[1])
        except UnmappableRecord as exc:
            task.run.log.warning("%s: record %s failed: %s", task.name, rid, exc)
            raise
        dest.upsert(table, [row])  # committed before run.map records the item done

    work = task.pending(list(enumerate(records)), key=lambda n: record_id(n[1], f"{where}#{n[0]}"))
    run.map(one, work, concurrency=concurrency)


def retry_failed_items(task: syncpoint.Task, client: HttpClient, entity: str, table: str, dest: Destination) -> None:
    """``--retry-failed``: fetch each failed record by key (``/Entity(Id)``) and load it again."""
    failed = [item_id for item_id, _error, _retryable in task.failed_items()]
    for start in range(0, len(failed), 100):
        batch = failed[start : start + 100]
        todo = set(batch) - task.done_item_ids(batch)
        for item_id in batch:
            if item_id not in todo:
                continue
            task.run.checkpoint()
            try:
                record = client.get_json(f"/{entity}({item_id})")
            except HttpError as exc:
                task.item_failed(item_id, exc)
                continue
            process(task, table, dest, [record], f"{entity}({item_id})")


def load(run: syncpoint.Run, task: syncpoint.Task, client: HttpClient, entity: str, table: str, dest: Destination,
         since: str | None, concurrency: int = 1) -> None:
    """One loader: page through the entity set from the task's cursor; the cursor is the next link.

    With ``concurrency`` > 1 the records of each page are written that many at a time; the cursor moves
    past the page only once every record of it is recorded (done, or failed for good)."""
    if run.retry_failed and task.record.failed:
        retry_failed_items(task, client, entity, table, dest)
    cursor = task.token_cursor()  # the next link; extra fields: the pages loaded and the start date
    if cursor.finished:
        return
    params: dict[str, Any] = {"$count": "true", "$orderby": "GewijzigdOp,Id"}
    if since is not None:
        params["$filter"] = f"GewijzigdOp ge {since}"
    number = int(cursor.extra.get("page", 0))
    for page in paginate_odata(client, f"/{entity}", params, resume=cursor.token):
        run.checkpoint()  # a stop asked for while the page was in flight: do not write it
        count = page.data.get("@odata.count") if isinstance(page.data, dict) else None
        if isinstance(count, int) and count != task.record.total:
            task.set_total(count)
        number += 1
        if concurrency > 1:
            process_concurrently(run, task, table, dest, page.items, f"{entity} page {number}", concurrency)
        else:
            process(task, table, dest, page.items, f"{entity} page {number}")
        cursor.done(page.next_state, records=len(page.items), extra={"page": number, "since": since})
        run.checkpoint()


def loader_names(only: str | None) -> list[str]:
    if not only:
        return list(LOADERS)
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = [n for n in names if n not in LOADERS]
    if unknown:
        raise click.BadParameter(f"unknown loader(s) {', '.join(unknown)}; choose from {', '.join(LOADERS)}")
    return names


def make_body(dest: Destination, names: Sequence[str], client_for: Callable[[syncpoint.Run], HttpClient],
              concurrency: int = 1, parallel_loaders: int = 1) -> Callable[[syncpoint.Run], None]:
    def body(run: syncpoint.Run) -> None:
        since = run.params.get("start_date")
        with client_for(run) as client:
            def load_one(task: syncpoint.Task) -> None:
                load(run, task, client, *LOADERS[task.name], dest, since, concurrency)

            # The loaders still to do, all registered first (the run knows its whole plan): complete ones
            # skipped (unless --retry-failed and they have failed records), failed ones offered again when
            # retryable (all with --retry-failed), those before --from skipped.
            if parallel_loaders > 1:  # each loader a task of run.map: started, then completed or failed alone
                run.map(load_one, run.pending_tasks(names), concurrency=parallel_loaders)
            else:
                for task in run.tasks(names):  # a safe point before each
                    with task.isolated():  # a loader that fails for good fails alone; the others still run
                        load_one(task)
        logging.getLogger("tk_loader").info("loaders: %s", ", ".join(
            f"{t.name} {t.status.value} ({t.record.ok} ok, {t.record.failed} failed)"
            for t in (run.task(name) for name in names)))

    return body


def tk_client(base_url: str, run: syncpoint.Run, retry: RetryPolicy) -> HttpClient:
    return HttpClient(base_url.rstrip("/"), headers={"Accept": "application/json"}, retry=retry, sleep=run.sleep,
                      checkpoint=run.checkpoint)


@click.command(cls=syncpoint.Command, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--base-url", default=DEFAULT_BASE_URL, show_default=True, help="The OData service root.")
@click.option("--db", default="tk.db", show_default=True, metavar="PATH", help="Destination SQLite file.")
@click.option("--start-date", metavar="DATE", help="Load records changed on/after DATE (GewijzigdOp ge DATE); "
              "remembered by the run, so --resume keeps it.")
@click.option("--loaders", metavar="LIST", help="Comma-separated loaders to run (default: all five).")
@click.option("--retry-wait", type=float, default=1.0, show_default=True, metavar="S",
              help="First backoff of a failed request.")
@click.option("--retry-attempts", type=click.IntRange(min=1), default=8, show_default=True, metavar="N",
              help="Attempts per request before a loader fails.")
@click.option("--concurrency", type=click.IntRange(1, 64), default=1, show_default=True, metavar="N",
              help="Records of a page written at once, each in its own transaction (threads); 1 writes a page "
                   "in one transaction. Worth raising for a destination with a round trip per write (Neo4j).")
@click.option("--parallel-loaders", type=click.IntRange(1, len(LOADERS)), default=1, show_default=True,
              metavar="N", help="Loaders (entity sets) run at once, each in a thread with its own cursor; worth "
              "raising when the API, not the destination, is the slow part.")
@syncpoint.click_options
def main(base_url: str, db: str, start_date: str | None, loaders: str | None, retry_wait: float,
         retry_attempts: int, concurrency: int, parallel_loaders: int, sync: syncpoint.RunOptions) -> None:
    """Load the Tweede Kamer's OData API into SQLite; interrupt at any time, continue with --resume."""
    logging.getLogger("httpx").setLevel(logging.WARNING)
    since = start_filter(start_date) or (start_filter(sync.start.isoformat()) if sync.start else None)
    if since is not None:
        sync = replace(sync, params={**sync.params, "start_date": since})
    names = loader_names(loaders)
    retry = RetryPolicy(initial_wait=retry_wait, max_wait=max(retry_wait, 30.0), jitter=min(1.0, retry_wait),
                        max_attempts=retry_attempts)
    job = syncpoint.Job.from_options(JOB_NAME, {"base_url": base_url.rstrip("/"), "db": db}, sync)
    dest = SqliteDestination(db)
    try:
        body = make_body(dest, names, lambda run: tk_client(base_url, run, retry), concurrency, parallel_loaders)
        code = job.execute(sync, body)
    finally:
        dest.close()
        job.close()
    raise SystemExit(code)


if __name__ == "__main__":
    main()

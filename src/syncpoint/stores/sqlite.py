"""The embedded default store: one SQLite file in WAL mode.

Durability: ``synchronous=NORMAL`` (the default) survives any process crash, ``kill -9`` included — a
commit is in the WAL before ``apply`` returns; only a power loss or kernel crash can drop the last
commits. ``?sync=full`` fsyncs every commit and survives power loss too, at roughly a tenth of the commit
rate (measured here: 3.3k vs 33k commits/s).

Inspection (``read_only=True``, what ``syncpoint runs list`` and the other read-only commands use) creates,
migrates and writes nothing (``PRAGMA query_only``). Where the file or its directory cannot be written it
opens the file ``mode=ro``, so it works on a store another user owns or on a read-only mount. In WAL mode
a reader needs the ``-shm`` file beside the database: SQLite creates it if it can, and reads a read-only
one when a writer left it there (a live run). When neither is possible (a read-only directory and no
process has the database open: no ``-wal``, no ``-shm``), nothing can be writing it, and the database is
read as ``immutable`` — a snapshot; a run starting meanwhile is not seen by that command.
``create=False`` refuses to create a store that does not exist (exit 64, naming it).

Care taken, after python-diskcache: a connection is never carried across ``fork`` (we reopen when the pid
changes); writes take ``BEGIN IMMEDIATE`` so a writer never upgrades a read lock and deadlocks; a busy
database is retried for a bounded time (``busy_timeout``) before it is reported as locked. Ledger rows are
keyed by a small integer task ID and sorted within each batch, because inserting random-order keys into
the B-tree is an order of magnitude slower than near-sequential ones once the table outgrows the cache.
"""

from __future__ import annotations

import operator
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from syncpoint import codec
from syncpoint.errors import CorruptState, LockHolder, SchemaTooNew, StoreError, StoreUnavailable, UsageError
from syncpoint.model import (
    FailedItem,
    LedgerCounts,
    LedgerEntry,
    LedgerKind,
    PhaseRecord,
    ProgressSample,
    RunHead,
    RunRecord,
    RunStatus,
    StateEntry,
    TaskRecord,
    TaskStatus,
)
from syncpoint.stores.base import ChangeSet, ItemOutcome, JobLock, Store
from syncpoint.stores.filelock import LockDirectory

SCHEMA_VERSION = 2  # 2: progress samples and the runs_latest index (_SCHEMA_2)
_ITEM_ID, _TASK_KIND = operator.itemgetter(2), operator.itemgetter(0, 1)  # of a ledger row
CACHE_KIB = 65536  # 64 MiB of page cache at most; memory does not grow with the ledger beyond it
WAL_AUTOCHECKPOINT_PAGES = 10000  # ~40 MiB of WAL between checkpoints (SQLite's default is 1,000 pages)
_LOOKUP_CHUNK = 500  # bound parameters per IN (...) query; SQLite's default limit is 32766

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, job TEXT NOT NULL, key TEXT, status TEXT NOT NULL,
    config TEXT NOT NULL, config_digest TEXT NOT NULL, params TEXT NOT NULL,
    started_at TEXT NOT NULL, updated_at TEXT NOT NULL, ended_at TEXT,
    attempts INTEGER NOT NULL, error TEXT, exit_code INTEGER
);
CREATE INDEX IF NOT EXISTS runs_by_job ON runs (job, started_at);
CREATE TABLE IF NOT EXISTS tasks (
    id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, name TEXT NOT NULL, position INTEGER NOT NULL,
    status TEXT NOT NULL, cursor TEXT, pages INTEGER NOT NULL, records INTEGER NOT NULL,
    ok INTEGER NOT NULL, failed INTEGER NOT NULL, total INTEGER, error TEXT, retryable INTEGER NOT NULL,
    started_at TEXT, updated_at TEXT, completed_at TEXT,
    UNIQUE (run_id, name)
);
CREATE TABLE IF NOT EXISTS phases (
    run_id TEXT NOT NULL, name TEXT NOT NULL, position INTEGER NOT NULL, completed_at TEXT,
    PRIMARY KEY (run_id, name)
);
CREATE TABLE IF NOT EXISTS ledger (
    task_id INTEGER NOT NULL, kind INTEGER NOT NULL, item_id TEXT NOT NULL,
    outcome INTEGER NOT NULL, error TEXT,
    PRIMARY KEY (task_id, kind, item_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS state (
    job TEXT NOT NULL, key TEXT NOT NULL, value TEXT, updated_at TEXT NOT NULL,
    PRIMARY KEY (job, key)
);
"""

# Schema 2 (the dashboard), which a version-1 file gains when it is next opened: progress samples, and an
# index that answers ``latest_runs`` (each job's newest runs, without their configs) from the index alone.
_SCHEMA_2 = [
    """CREATE TABLE IF NOT EXISTS samples (
    run_id TEXT NOT NULL, slot INTEGER NOT NULL, at TEXT NOT NULL, items_ok INTEGER NOT NULL,
    items_failed INTEGER NOT NULL, records INTEGER NOT NULL, pages INTEGER NOT NULL,
    PRIMARY KEY (run_id, slot)
) WITHOUT ROWID""",
    """CREATE INDEX IF NOT EXISTS runs_latest ON runs (job, started_at DESC, run_id DESC, status, updated_at, ended_at,
    key, attempts, exit_code, error)""",
]

_TASK_COLUMNS = (
    "run_id, name, position, status, cursor, pages, records, ok, failed, total, error, retryable, "
    "started_at, updated_at, completed_at"
)
_STATUSES = {s.value: s for s in RunStatus}
# The jobs that have runs, by a skip-scan of the runs_by_job index: one seek per job instead of reading an
# index entry per run (100,000 runs of 1,000 jobs: 1,000 seeks).
_RUN_JOBS = (
    "WITH RECURSIVE j(job) AS (SELECT min(job) FROM runs UNION ALL "
    "SELECT (SELECT min(job) FROM runs WHERE job > j.job) FROM j WHERE j.job IS NOT NULL) "
    "SELECT job FROM j WHERE job IS NOT NULL"
)
_HEAD_COLUMNS = "run_id, job, status, started_at, updated_at, ended_at, key, attempts, error, exit_code"
_RUN_COLUMNS = (
    "run_id, job, key, status, config, config_digest, params, started_at, updated_at, ended_at, "
    "attempts, error, exit_code"
)


class SQLiteStore(Store):
    """Checkpoints in one SQLite file; job locks are ``flock``-ed files beside it."""

    def __init__(
        self, path: str | os.PathLike[str], *, synchronous: str = "normal", read_only: bool = False,
        create: bool = True,
    ) -> None:
        if synchronous not in ("normal", "full"):
            raise StoreError(f"sqlite sync must be 'normal' or 'full', not {synchronous!r}")
        self.path = Path(path)
        self.location = str(self.path)
        self.read_only = read_only
        if (read_only or not create) and not self.path.is_file():
            raise UsageError(
                f"no checkpoint store at {self.path}; a job's first run creates it (or `syncpoint db migrate`): "
                "run this where your job keeps its checkpoints, or pass --store URL / --checkpoint-dir DIR"
            )
        self._synchronous = synchronous.upper()
        self._locks = LockDirectory(self.path.parent / f"{self.path.name}.locks")
        self._mutex = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._task_ids: dict[tuple[str, str], int] = {}
        self._connect()

    # -- connection ----------------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        self._task_ids.clear()
        if self.read_only:
            conn = self._open_read_only()
            self._conn, self._pid = conn, os.getpid()
            return conn
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(
                f"cannot create the checkpoint directory {self.path.parent}: {exc.strerror}; "
                "choose a writable --checkpoint-dir"
            ) from None
        with self._translate():
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
            try:
                conn.execute("PRAGMA busy_timeout = 10000")
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if mode != "wal":
                    raise StoreUnavailable(f"{self.path}: cannot switch SQLite to WAL mode (got {mode!r})")
                conn.execute(f"PRAGMA synchronous = {self._synchronous}")
                # A bigger page cache and fewer WAL checkpoints: ledgers of random IDs touch most leaf pages
                # of their B-tree in every commit, and each checkpoint syncs the database file.
                conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
                conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")
                self._migrate(conn)
            except BaseException:
                conn.close()
                raise
        self._conn, self._pid = conn, os.getpid()
        return conn

    def _open_read_only(self) -> sqlite3.Connection:
        """Where we could write: an ordinary connection with ``query_only`` (so that, like any last reader, it
        checkpoints and removes the ``-wal`` and ``-shm`` files it made when it closes; a ``mode=ro``
        connection would leave them behind). Elsewhere ``mode=ro``, and ``immutable`` only where WAL mode
        leaves no other way and nobody has the file open."""
        uri = self.path.resolve().as_uri()
        with self._translate():
            if os.access(self.path, os.W_OK) and os.access(self.path.parent, os.W_OK):
                conn = self._connect_uri(f"{uri}?mode=rw")
                conn.execute("PRAGMA query_only = ON")
                return conn
            try:
                return self._connect_uri(f"{uri}?mode=ro")
            except sqlite3.OperationalError as exc:
                wal = self.path.with_name(self.path.name + "-wal")
                if "unable to open" not in str(exc) or wal.exists():
                    raise
            return self._connect_uri(f"{uri}?mode=ro&immutable=1")

    def _connect_uri(self, uri: str) -> sqlite3.Connection:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False, timeout=10.0)
        try:
            conn.execute("PRAGMA busy_timeout = 10000")
            conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
            try:
                row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            except sqlite3.OperationalError as exc:
                if "no such table" not in str(exc):
                    raise
                row = None
            if row is None:
                raise UsageError(
                    f"{self.path} holds no syncpoint checkpoints yet; a job's first run creates them "
                    "(or `syncpoint db migrate`)"
                )
            if int(row[0]) > SCHEMA_VERSION:
                raise SchemaTooNew(
                    f"{self.path} was written by a newer syncpoint (schema {row[0]}, this one knows "
                    f"{SCHEMA_VERSION}); upgrade syncpoint"
                )
        except BaseException:
            conn.close()
            raise
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is not None and int(row[0]) > SCHEMA_VERSION:
                raise SchemaTooNew(
                    f"{self.path} was written by a newer syncpoint (schema {row[0]}, this one knows "
                    f"{SCHEMA_VERSION}); upgrade syncpoint"
                )
            if row is None or int(row[0]) < SCHEMA_VERSION:
                for statement in _SCHEMA_2:
                    conn.execute(statement)
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    @contextmanager
    def _translate(self) -> Iterator[None]:
        """Map sqlite3's errors to the public ones, in one place."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            text = str(exc)
            if "locked" in text or "busy" in text:
                raise StoreUnavailable(
                    f"{self.path} is locked by another program (waited 10 s); close it and retry"
                ) from None
            if "readonly" in text or "read-only" in text:
                raise StoreUnavailable(f"{self.path} is read-only; make the checkpoint directory writable") from None
            if "disk is full" in text or "disk I/O" in text:
                raise StoreError(f"cannot write {self.path}: {text}; free some space and resume") from None
            if "unable to open" in text:
                raise StoreUnavailable(f"cannot open {self.path}: {text}; check the path and permissions") from None
            if "malformed" in text or "not a database" in text:
                raise self._corrupt(text) from None
            raise StoreError(f"{self.path}: {text}") from None
        except sqlite3.DatabaseError as exc:
            raise self._corrupt(str(exc)) from None

    def _corrupt(self, detail: str) -> CorruptState:
        return CorruptState(
            f"checkpoint database {self.path} is corrupt ({detail}); it was left untouched: "
            "move it aside to start over, or restore it from a backup"
        )

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        with self._mutex, self._translate():
            yield self._connect()

    def close(self) -> None:
        with self._mutex:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    # -- the one write path --------------------------------------------------------------------------
    def apply(self, changes: ChangeSet) -> None:
        if not changes:
            return
        if self.read_only:
            raise StoreError(f"{self.path} was opened read-only (for inspection); nothing was written")
        if changes.fence is not None:
            raise UsageError(f"{type(self).__name__} has no task leases; many workers on one run need PostgreSQL")
        with self._mutex, self._translate():
            conn = self._connect()
            conn.execute("BEGIN IMMEDIATE")
            try:
                self._write(conn, changes)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                self._task_ids.clear()  # ids cached inside the rolled-back transaction are void
                raise

    def _write(self, conn: sqlite3.Connection, changes: ChangeSet) -> None:
        for run_id in changes.run_deletes:
            self._delete_run(conn, run_id)
        if changes.runs:
            conn.executemany(
                f"INSERT OR REPLACE INTO runs ({_RUN_COLUMNS}) VALUES ({_marks(13)})",
                [_run_row(r) for r in changes.runs],
            )
        if changes.tasks:
            conn.executemany(
                f"INSERT INTO tasks ({_TASK_COLUMNS}) VALUES ({_marks(15)}) "
                "ON CONFLICT (run_id, name) DO UPDATE SET "
                + ", ".join(f"{c} = excluded.{c}" for c in _TASK_COLUMNS.split(", ")[2:]),
                [_task_row(t) for t in changes.tasks],
            )
        if changes.phases:
            conn.executemany(
                "INSERT OR REPLACE INTO phases VALUES (?, ?, ?, ?)",
                [(p.run_id, p.name, p.position, codec.ts(p.completed_at)) for p in changes.phases],
            )
        for clear in changes.ledger_clears:
            conn.execute(
                "DELETE FROM ledger WHERE task_id = ? AND kind = ?",
                (self._task_id(conn, clear.run_id, clear.task), int(clear.kind)),
            )
        if changes.ledger:
            conn.executemany("INSERT OR REPLACE INTO ledger VALUES (?, ?, ?, ?, ?)", self._ledger_rows(conn, changes))
        for delete in changes.state_deletes:
            if delete.key is None:
                conn.execute("DELETE FROM state WHERE job = ?", (delete.job,))
            else:
                conn.execute("DELETE FROM state WHERE job = ? AND key = ?", (delete.job, delete.key))
        if changes.state:
            conn.executemany(
                "INSERT OR REPLACE INTO state VALUES (?, ?, ?, ?)",
                [(s.job, s.key, codec.dumps(s.value), codec.ts(s.updated_at)) for s in changes.state],
            )
        if changes.samples:
            conn.executemany(
                "INSERT OR REPLACE INTO samples VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(p.run_id, p.slot, codec.ts(p.at), p.items_ok, p.items_failed, p.records, p.pages)
                 for p in changes.samples],
            )

    def _ledger_rows(self, conn: sqlite3.Connection, changes: ChangeSet) -> list[tuple[Any, ...]]:
        """Rows sorted by key: near-sequential B-tree inserts are far cheaper than random-order ones."""
        task_ids: dict[tuple[str, str], int] = {}
        rows = []
        # a hot loop (10,000s of entries per commit): unpacked tuples, ItemOutcome's values inlined
        for run_id, task, item_id, ok, error, retryable, kind in changes.ledger:
            task_id = task_ids.get((run_id, task))
            if task_id is None:
                task_id = task_ids[(run_id, task)] = self._task_id(conn, run_id, task)
            rows.append((task_id, int(kind), item_id, 0 if ok else 1 if retryable else 2, error))
        # By (task_id, kind, item_id) in two stable passes, which is twice as fast as one pass on a 3-tuple key
        # (the second pass is linear on the usual one-task batch); stable: of two entries for one ID, the
        # later still wins.
        rows.sort(key=_ITEM_ID)
        rows.sort(key=_TASK_KIND)
        return rows

    def _task_id(self, conn: sqlite3.Connection, run_id: str, task: str) -> int:
        cached = self._task_ids.get((run_id, task))
        if cached is not None:
            return cached
        row = conn.execute("SELECT id FROM tasks WHERE run_id = ? AND name = ?", (run_id, task)).fetchone()
        if row is None:
            raise StoreError(f"ledger entry for unknown task {task!r} of run {run_id}")
        self._task_ids[(run_id, task)] = row[0]
        return int(row[0])

    def _delete_run(self, conn: sqlite3.Connection, run_id: str) -> None:
        conn.execute("DELETE FROM ledger WHERE task_id IN (SELECT id FROM tasks WHERE run_id = ?)", (run_id,))
        conn.execute("DELETE FROM tasks WHERE run_id = ?", (run_id,))
        conn.execute("DELETE FROM phases WHERE run_id = ?", (run_id,))
        conn.execute("DELETE FROM samples WHERE run_id = ?", (run_id,))
        conn.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))
        self._task_ids = {k: v for k, v in self._task_ids.items() if k[0] != run_id}

    # -- reads ---------------------------------------------------------------------------------------
    def get_run(self, run_id: str) -> RunRecord | None:
        with self._reading() as conn:
            row = conn.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            return None if row is None else self._run(row)

    def list_runs(
        self,
        job: str | None = None,
        *,
        statuses: Sequence[RunStatus] | None = None,
        key: str | None = None,
        limit: int | None = None,
    ) -> list[RunRecord]:
        where, args = [], []  # type: tuple[list[str], list[Any]]
        if job is not None:
            where.append("job = ?")
            args.append(job)
        if statuses is not None:
            where.append(f"status IN ({_marks(len(statuses))})" if statuses else "0")
            args.extend(s.value for s in statuses)
        if key is not None:
            where.append("key = ?")
            args.append(key)
        sql = f"SELECT {_RUN_COLUMNS} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY started_at DESC, run_id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        with self._reading() as conn:
            return [self._run(row) for row in conn.execute(sql, args)]

    def latest_runs(
        self, per_job: int = 1, *, statuses: Sequence[RunStatus] | None = None, jobs: Sequence[str] | None = None
    ) -> list[RunHead]:
        """One indexed query per job (``runs_by_job``), all under one read: ~10 µs a job."""
        where, args = "", []  # type: tuple[str, list[Any]]
        if statuses is not None:
            where = f" AND status IN ({_marks(len(statuses))})" if statuses else " AND 0"
            args = [s.value for s in statuses]
        sql = (f"SELECT {_HEAD_COLUMNS} FROM runs WHERE job = ?{where} "
               "ORDER BY started_at DESC, run_id DESC LIMIT ?")
        with self._reading() as conn:
            names = [r[0] for r in conn.execute(_RUN_JOBS)] if jobs is None else sorted(set(jobs))
            rows = [row for job in names for row in conn.execute(sql, (job, *args, per_job))]
        parse, status = datetime.fromisoformat, _STATUSES.__getitem__  # thousands of rows: no enum calls
        try:
            return [
                RunHead(r[0], r[1], status(r[2]), parse(r[3]), parse(r[4]), parse(r[5]) if r[5] else None, r[6],
                        r[7], r[8], r[9])
                for r in rows
            ]
        except (KeyError, ValueError, TypeError) as exc:
            raise self._corrupt(f"bad run row: {exc}") from None

    def run_counts(self) -> dict[tuple[str, RunStatus], int]:
        with self._reading() as conn:
            rows = conn.execute("SELECT job, status, count(*) FROM runs GROUP BY job, status").fetchall()
        return {(job, RunStatus(status)): int(n) for job, status, n in rows}

    def get_samples(self, run_id: str) -> list[ProgressSample]:
        with self._reading() as conn:
            rows = conn.execute(
                "SELECT run_id, slot, at, items_ok, items_failed, records, pages FROM samples WHERE run_id = ? "
                "ORDER BY at, slot", (run_id,),
            ).fetchall()
        found = []
        for r in rows:
            at = codec.parse_ts(r[2])
            assert at is not None
            found.append(ProgressSample(r[0], r[1], at, r[3], r[4], r[5], r[6]))
        return found

    def get_tasks(self, run_id: str) -> list[TaskRecord]:
        with self._reading() as conn:
            rows = conn.execute(
                f"SELECT {_TASK_COLUMNS} FROM tasks WHERE run_id = ? ORDER BY position, name", (run_id,)
            ).fetchall()
            return [self._task(row) for row in rows]

    def get_phases(self, run_id: str) -> list[PhaseRecord]:
        with self._reading() as conn:
            rows = conn.execute(
                "SELECT run_id, name, position, completed_at FROM phases WHERE run_id = ? ORDER BY position",
                (run_id,),
            ).fetchall()
            return [PhaseRecord(r[0], r[1], r[2], codec.parse_ts(r[3])) for r in rows]

    def _known_task_id(self, conn: sqlite3.Connection, run_id: str, task: str) -> int | None:
        try:
            return self._task_id(conn, run_id, task)
        except StoreError:
            return None

    def ledger_lookup(
        self, run_id: str, task: str, item_ids: Sequence[str], kind: LedgerKind = LedgerKind.ITEMS
    ) -> dict[str, ItemOutcome]:
        found: dict[str, ItemOutcome] = {}
        with self._reading() as conn:
            task_id = self._known_task_id(conn, run_id, task)
            if task_id is None:
                return found
            unique = sorted(set(item_ids))
            for start in range(0, len(unique), _LOOKUP_CHUNK):
                chunk = unique[start : start + _LOOKUP_CHUNK]
                rows = conn.execute(
                    "SELECT item_id, outcome FROM ledger WHERE task_id = ? AND kind = ? "
                    f"AND item_id IN ({_marks(len(chunk))})",
                    (task_id, int(kind), *chunk),
                )
                found.update((item, ItemOutcome(outcome)) for item, outcome in rows)
        return found

    def ledger_counts(self, run_id: str, task: str, kind: LedgerKind = LedgerKind.ITEMS) -> LedgerCounts:
        with self._reading() as conn:
            task_id = self._known_task_id(conn, run_id, task)
            if task_id is None:
                return LedgerCounts(0, 0)
            ok, total = conn.execute(
                "SELECT coalesce(sum(outcome = 0), 0), count(*) FROM ledger WHERE task_id = ? AND kind = ?",
                (task_id, int(kind)),
            ).fetchone()
            return LedgerCounts(int(ok), int(total) - int(ok))

    def ledger_failed(self, run_id: str, task: str) -> Iterator[FailedItem]:
        for entry in self.iter_ledger(run_id, task):
            if not entry.ok:
                yield FailedItem(entry.item_id, entry.error, entry.retryable)

    def iter_ledger(self, run_id: str, task: str, kind: LedgerKind = LedgerKind.ITEMS) -> Iterator[LedgerEntry]:
        """Streams in pages keyed on the last item ID, so neither memory nor a held read grows with it."""
        last: str | None = None
        while True:
            with self._reading() as conn:
                task_id = self._known_task_id(conn, run_id, task)
                if task_id is None:
                    return
                after = "" if last is None else "AND item_id > ? "
                rows = conn.execute(
                    f"SELECT item_id, outcome, error FROM ledger WHERE task_id = ? AND kind = ? {after}"
                    "ORDER BY item_id LIMIT 5000",
                    (task_id, int(kind)) if last is None else (task_id, int(kind), last),
                ).fetchall()
            if not rows:
                return
            for item_id, outcome, error in rows:
                yield LedgerEntry(
                    run_id, task, item_id, outcome == ItemOutcome.OK, error,
                    outcome == ItemOutcome.FAILED_RETRYABLE, kind,
                )
            last = rows[-1][0]

    def get_state(self, job: str) -> list[StateEntry]:
        with self._reading() as conn:
            rows = conn.execute(
                "SELECT job, key, value, updated_at FROM state WHERE job = ? ORDER BY key", (job,)
            ).fetchall()
        result = []
        for r in rows:
            updated = codec.parse_ts(r[3])
            assert updated is not None
            result.append(StateEntry(r[0], r[1], codec.decode_or_corrupt(r[2], str(self.path)), updated))
        return result

    def list_jobs(self) -> list[str]:
        with self._reading() as conn:
            jobs = {r[0] for r in conn.execute(_RUN_JOBS)}
            jobs.update(r[0] for r in conn.execute("SELECT DISTINCT job FROM state"))
        return sorted(jobs)

    # -- locks ---------------------------------------------------------------------------------------
    def lock(self, job: str, run_id: str | None = None) -> JobLock:
        return self._locks.acquire(job, run_id)

    def lock_holder(self, job: str) -> LockHolder | None:
        return self._locks.holder(job)

    # -- row mapping ---------------------------------------------------------------------------------
    def _run(self, row: Sequence[Any]) -> RunRecord:
        try:
            started = codec.parse_ts(row[7])
            updated = codec.parse_ts(row[8])
            assert started is not None and updated is not None
            return RunRecord(
                run_id=row[0], job=row[1], key=row[2], status=RunStatus(row[3]),
                config=codec.decode_or_corrupt(row[4], str(self.path)), config_digest=row[5],
                params=codec.decode_or_corrupt(row[6], str(self.path)),
                started_at=started, updated_at=updated, ended_at=codec.parse_ts(row[9]),
                attempts=row[10], error=row[11], exit_code=row[12],
            )
        except (ValueError, TypeError, AssertionError) as exc:
            raise self._corrupt(f"bad run row: {exc}") from None

    def _task(self, row: Sequence[Any]) -> TaskRecord:
        try:
            return TaskRecord(
                run_id=row[0], name=row[1], position=row[2], status=TaskStatus(row[3]),
                cursor=codec.decode_or_corrupt(row[4], str(self.path)) if row[4] is not None else None,
                pages=row[5], records=row[6], ok=row[7], failed=row[8], total=row[9], error=row[10],
                retryable=bool(row[11]), started_at=codec.parse_ts(row[12]),
                updated_at=codec.parse_ts(row[13]), completed_at=codec.parse_ts(row[14]),
            )
        except (ValueError, TypeError) as exc:
            raise self._corrupt(f"bad task row: {exc}") from None


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def _run_row(r: RunRecord) -> tuple[Any, ...]:
    return (
        r.run_id, r.job, r.key, r.status.value, codec.dumps(r.config), r.config_digest, codec.dumps(r.params),
        codec.ts(r.started_at), codec.ts(r.updated_at), codec.ts(r.ended_at), r.attempts, r.error, r.exit_code,
    )


def _task_row(t: TaskRecord) -> tuple[Any, ...]:
    return (
        t.run_id, t.name, t.position, t.status.value, None if t.cursor is None else codec.dumps(t.cursor),
        t.pages, t.records, t.ok, t.failed, t.total, t.error, int(t.retryable),
        codec.ts(t.started_at), codec.ts(t.updated_at), codec.ts(t.completed_at),
    )

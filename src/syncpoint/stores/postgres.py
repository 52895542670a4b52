"""The PostgreSQL store: a schema of its own, numbered migrations, many processes and machines.

    PostgresStore("postgresql://user:pw@host/db?schema=crawler")

Writes: every ``ChangeSet`` commits in ONE transaction on a pooled connection (``psycopg_pool``, 1 to 4
connections). Ledger entries are rows, written with a binary ``COPY`` straight into the ledger table under a
savepoint; when some of the IDs are already there (a resume re-marks its redo window, a retry turns failed
into ok) the savepoint is rolled back and the batch is upserted instead (``INSERT ... SELECT FROM unnest(...)
ON CONFLICT DO UPDATE``), and that task stays on the upsert path for a few batches. Measured here with random
IDs and 1,000 items per commit, the COPY path has about 1.5x the upsert's throughput and reaches ~0.85 of a
bare COPY + commit per 1,000 IDs (``benchmarks/bench_postgres.py``). Every change set takes one round trip
for its statements and the commit, plus two per ledger COPY; one that is a single row (a cursor update) is
one autocommit statement.

Connection loss (server restart, ``pg_terminate_backend``, failover): ``apply`` and the reads retry with
exponential backoff for ``retry_for`` seconds (``?retry=SECONDS``, default 30), then raise
``StoreUnavailable``. Retrying ``apply`` is safe because applying a change set twice gives the same state.

Locks: a session advisory lock on a 64-bit key derived from schema and job, held on a dedicated connection
(not from the pool, where the session would silently move or vanish) for the whole run. The server drops it
when the holder's session ends, ``kill -9`` included. The holder writes host, pid and start time into the
``locks`` table; that row is trusted only while its backend really holds the lock (``pg_locks``).
``PostgresJobLock.check()`` tells a run whether it still holds the lock (re-taking it after a lost
connection; ``JobLocked`` if another process took it meanwhile).

``apply_in(conn, changes)`` writes a change set on the caller's own psycopg connection, inside the caller's
transaction and without committing, so a checkpoint and the user's rows commit together.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus
from psycopg.rows import tuple_row
from psycopg_pool import ConnectionPool, PoolTimeout

from syncpoint import codec
from syncpoint.errors import (
    CorruptState,
    JobLocked,
    LeaseLost,
    LockHolder,
    StoreError,
    StoreUnavailable,
    UsageError,
)
from syncpoint.model import (
    FailedItem,
    LeaseInfo,
    LeaseState,
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
    utcnow,
)
from syncpoint.names import check_job_name
from syncpoint.stores import pg_migrations as pgm
from syncpoint.stores.base import ChangeSet, ItemOutcome, JobLock, LedgerClear, Store

__all__ = ["PostgresJobLock", "PostgresStore"]

logger = logging.getLogger(__name__)
T = TypeVar("T")
Conn = psycopg.Connection[Any]
Statement = tuple[bytes, list[tuple[Any, ...]]]
LedgerRow = tuple[int, str, int, "str | None"]  # kind, item_id, outcome, error

_PAGE = 5000  # rows per page when streaming a ledger
_COPY_MIN = 64  # smaller ledger batches are upserted in the final pipeline (a COPY costs two round trips)
_UPSERT_AFTER_CONFLICT = 8  # batches of a task that skip COPY after its COPY met existing IDs
LEASE_LOST = "SPL01"  # raised by lease_fence (migration 003)
_TRANSIENT_STATES = {"40001", "40P01", "53300", "57P01", "57P02", "57P03"}
_SAVEPOINT, _RELEASE = "SAVEPOINT syncpoint_ledger", "RELEASE SAVEPOINT syncpoint_ledger"
_ROLLBACK_TO = "ROLLBACK TO SAVEPOINT syncpoint_ledger"
# how a change set is framed: our own transaction, or a savepoint inside the caller's (apply_in)
_OWN = ("BEGIN", "COMMIT", ("ROLLBACK",))
_NESTED = (
    "SAVEPOINT syncpoint_apply",
    "RELEASE SAVEPOINT syncpoint_apply",
    ("ROLLBACK TO SAVEPOINT syncpoint_apply", "RELEASE SAVEPOINT syncpoint_apply"),
)

_RUN_COLUMNS = (
    "run_id, job, status, config, config_digest, started_at, updated_at, key, params, ended_at, attempts, "
    "error, exit_code"
)
_RUN_VALUES = "%s, %s, %s, %s::json, %s, %s, %s, %s, %s::json, %s, %s, %s, %s"
_TASK_COLUMNS = (
    "run_id, name, position, status, cursor, pages, records, ok, failed, total, error, retryable, "
    "started_at, updated_at, completed_at"
)
_TASK_VALUES = "%s, %s, %s, %s, %s::json, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s"
# the same, typed: a VALUES list in a SELECT takes no types from the target columns (a NULL would be text)
_TASK_TYPED = (
    "%s::text, %s::text, %s::int8, %s::text, %s::json, %s::int8, %s::int8, %s::int8, %s::int8, %s::int8, "
    "%s::text, %s::bool, %s::timestamptz, %s::timestamptz, %s::timestamptz"
)
# Ledger reads name the task ID as a scalar subquery (a constant to the planner, so ``ORDER BY item_id``
# walks the primary key in order), never as a join: on a table no ANALYZE has seen (autovacuum off, a bulk
# load), a join made the planner fetch every row of the task and filter or sort them, per query.
_TASK_ID = "(SELECT id FROM {s}.tasks WHERE run_id = %s AND name = %s)"
_LEDGER_FILTER = f"WHERE l.task_id = {_TASK_ID} AND l.kind = %s::int2"
_KEEPALIVES = (
    "SELECT set_config('tcp_keepalives_idle', '30', false), set_config('tcp_keepalives_interval', '10', false),"
    " set_config('tcp_keepalives_count', '3', false)"
)


def _updates(columns: str, skip: int) -> str:
    return ", ".join(f"{c} = EXCLUDED.{c}" for c in columns.split(", ")[skip:])


class Queries:
    """Every statement, composed once per schema; the schema is always a quoted ``sql.Identifier``."""

    def __init__(self, schema: str) -> None:
        self._s = sql.Identifier(schema)
        q = self.q
        self.delete_runs = [
            q("DELETE FROM {s}.ledger WHERE task_id IN (SELECT id FROM {s}.tasks WHERE run_id = ANY(%s::text[]))"),
            q("DELETE FROM {s}.tasks WHERE run_id = ANY(%s::text[])"),
            q("DELETE FROM {s}.phases WHERE run_id = ANY(%s::text[])"),
            q("DELETE FROM {s}.samples WHERE run_id = ANY(%s::text[])"),  # migration 002
            q("DELETE FROM {s}.lease_grants WHERE run_id = ANY(%s::text[])"),  # migration 003
            q("DELETE FROM {s}.leases WHERE run_id = ANY(%s::text[])"),
            q("DELETE FROM {s}.runs WHERE run_id = ANY(%s::text[])"),
        ]
        self.upsert_run = q(
            f"INSERT INTO {{s}}.runs ({_RUN_COLUMNS}) VALUES ({_RUN_VALUES}) "
            f"ON CONFLICT (run_id) DO UPDATE SET {_updates(_RUN_COLUMNS, 1)}"
        )
        self.upsert_task = q(
            f"INSERT INTO {{s}}.tasks ({_TASK_COLUMNS}) VALUES ({_TASK_VALUES}) "
            f"ON CONFLICT (run_id, name) DO UPDATE SET {_updates(_TASK_COLUMNS, 2)}"
        )
        self.upsert_phase = q(
            "INSERT INTO {s}.phases (run_id, name, position, completed_at) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (run_id, name) DO UPDATE SET position = EXCLUDED.position, "
            "completed_at = EXCLUDED.completed_at"
        )
        self.task_ids = q(
            "SELECT run_id, name, id FROM {s}.tasks WHERE (run_id, name) IN "
            "(SELECT * FROM unnest(%s::text[], %s::text[])) FOR KEY SHARE"
        )
        self.clear = q(
            "DELETE FROM {s}.ledger WHERE task_id = (SELECT id FROM {s}.tasks WHERE run_id = %s AND name = %s) "
            "AND kind = %s::int2"
        )
        self.ledger_copy = q("COPY {s}.ledger (task_id, kind, item_id, outcome, error) FROM STDIN (FORMAT BINARY)")
        self.ledger_upsert = q(
            "INSERT INTO {s}.ledger (task_id, kind, item_id, outcome, error) "
            "SELECT %s::int8, u.* FROM unnest(%s::int2[], %s::text[], %s::int2[], %s::text[]) AS u "
            "ON CONFLICT (task_id, kind, item_id) DO UPDATE SET outcome = EXCLUDED.outcome, error = EXCLUDED.error"
        )
        self.delete_state = q("DELETE FROM {s}.state WHERE job = %s")
        self.delete_state_key = q("DELETE FROM {s}.state WHERE job = %s AND key = %s")
        self.upsert_state = q(
            "INSERT INTO {s}.state (job, key, value, updated_at) VALUES (%s, %s, %s::json, %s) "
            "ON CONFLICT (job, key) DO UPDATE SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at"
        )
        # progress samples and overviews (migration 002; the dashboard)
        self.upsert_sample = q(
            "INSERT INTO {s}.samples (run_id, slot, at, items_ok, items_failed, records, pages) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (run_id, slot) DO UPDATE SET at = EXCLUDED.at, "
            "items_ok = EXCLUDED.items_ok, items_failed = EXCLUDED.items_failed, records = EXCLUDED.records, "
            "pages = EXCLUDED.pages"
        )
        self.get_samples = q(
            "SELECT run_id, slot, at, items_ok, items_failed, records, pages FROM {s}.samples WHERE run_id = %s "
            "ORDER BY at, slot"
        )
        self.latest_runs = q(
            "SELECT r.* FROM (SELECT DISTINCT job FROM {s}.runs WHERE %s::text[] IS NULL OR job = ANY(%s::text[])) j "
            "CROSS JOIN LATERAL "
            "(SELECT x.run_id, x.job, x.status, x.started_at, x.updated_at, x.ended_at, x.key, x.attempts, x.error, "
            "x.exit_code FROM {s}.runs x WHERE x.job = j.job "
            "AND (%s::text[] IS NULL OR x.status = ANY(%s::text[])) "
            "ORDER BY x.started_at DESC, x.run_id DESC LIMIT %s) r ORDER BY r.job, r.started_at DESC, r.run_id DESC"
        )
        # task leases (migration 003; syncpoint.distributed)
        self.lease_fence = q("SELECT {s}.lease_fence(%s, %s, %s, %s, %s)")
        # a page of a leased task's progress: the fence and the task's row in one autocommit statement (one
        # round trip, no transaction block); the fence raises before the row is written if the lease is gone
        self.fenced_task_upsert = q(
            f"INSERT INTO {{s}}.tasks ({_TASK_COLUMNS}) SELECT * FROM (VALUES ({_TASK_TYPED})) AS v "
            f"WHERE {{s}}.lease_fence(%s, %s, %s, %s, %s) "
            f"ON CONFLICT (run_id, name) DO UPDATE SET {_updates(_TASK_COLUMNS, 2)}"
        )
        self.finish_run = q("SELECT {s}.finish_run_if_done(%s)")
        # a task failed for good says so even when its commit carries no task record (a bound transaction was
        # rolled back, and the failure's record with it); after the task upserts, before the run's ending
        self.task_failed = q(
            "UPDATE {s}.tasks SET status = 'failed', retryable = %s, completed_at = clock_timestamp(), "
            "error = coalesce(error, 'the task failed for good; see the worker''s log') "
            "WHERE run_id = %s AND name = %s AND (status <> 'failed' OR retryable <> %s)"
        )
        self.leases = q(
            "SELECT run_id, task, state, epoch, host, pid, worker, leased_at, heartbeat_at, queued_at, commits, "
            "failures, takeovers, clock_timestamp(), stall_timeout FROM {s}.leases WHERE run_id = %s ORDER BY task"
        )
        self.run_counts = q("SELECT job, status, count(*) FROM {s}.runs GROUP BY job, status")
        self.select_runs = q(f"SELECT {_RUN_COLUMNS} FROM {{s}}.runs")
        self.get_run = q(f"SELECT {_RUN_COLUMNS} FROM {{s}}.runs WHERE run_id = %s")
        self.get_tasks = q(f"SELECT {_TASK_COLUMNS} FROM {{s}}.tasks WHERE run_id = %s ORDER BY position, name")
        self.get_task = q(f"SELECT {_TASK_COLUMNS} FROM {{s}}.tasks WHERE run_id = %s AND name = %s")
        self.get_phases = q(
            "SELECT run_id, name, position, completed_at FROM {s}.phases WHERE run_id = %s ORDER BY position, name"
        )
        # One primary-key probe per ID, whatever the planner believes about the table: the LIMIT keeps the
        # LATERAL subquery from being flattened into a join, and a probe with all three key columns equal
        # can only be answered by the index. (``item_id = ANY(...)`` was applied as a filter over every row
        # of the task when the table had no statistics: 35 s instead of 0.8 s for 100k items.)
        self.ledger_lookup = q(
            f"SELECT k.item_id, l.outcome FROM {_TASK_ID} AS t(id), unnest(%s::text[]) AS k(item_id), "
            "LATERAL (SELECT x.outcome FROM {s}.ledger x WHERE x.task_id = t.id AND x.kind = %s::int2 "
            'AND x.item_id = k.item_id COLLATE "C" LIMIT 1) AS l'
        )
        self.ledger_counts = q(
            f"SELECT count(*) FILTER (WHERE l.outcome = 0), count(*) FROM {{s}}.ledger l {_LEDGER_FILTER}"
        )
        page = f"SELECT l.item_id, l.outcome, l.error FROM {{s}}.ledger l {_LEDGER_FILTER}"
        self.ledger_first_page = q(f"{page} ORDER BY l.item_id LIMIT %s")
        self.ledger_next_page = q(f"{page} AND l.item_id > %s ORDER BY l.item_id LIMIT %s")
        self.get_state = q("SELECT job, key, value, updated_at FROM {s}.state WHERE job = %s ORDER BY key")
        self.list_jobs = q("SELECT job FROM {s}.runs UNION SELECT job FROM {s}.state ORDER BY 1")
        self.lock_write = q(
            "INSERT INTO {s}.locks (job, host, pid, since, run_id, backend_pid) "
            "VALUES (%s, %s, %s, %s, %s, pg_backend_pid()) ON CONFLICT (job) DO UPDATE SET host = EXCLUDED.host, "
            "pid = EXCLUDED.pid, since = EXCLUDED.since, run_id = EXCLUDED.run_id, backend_pid = EXCLUDED.backend_pid"
        )
        self.lock_clear = q("DELETE FROM {s}.locks WHERE job = %s AND backend_pid = pg_backend_pid()")
        self.lock_holder = q(
            "SELECT h.host, h.pid, h.since, h.run_id, coalesce(h.backend_pid = l.pid, false) "
            "FROM pg_catalog.pg_locks l LEFT JOIN {s}.locks h ON h.job = %s "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 AND l.classid::int8 = %s "
            "AND l.objid::int8 = %s "
            "AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()) LIMIT 1"
        )

    def q(self, text: str) -> bytes:
        """``text`` (constant: input never becomes SQL) with the quoted schema, rendered once to bytes."""
        return sql.SQL(text).format(s=self._s).as_bytes(None)

    def list_runs(
        self, job: str | None, statuses: Sequence[RunStatus] | None, key: str | None, limit: int | None
    ) -> tuple[sql.Composed, list[Any]]:
        where: list[sql.Composable] = []
        args: list[Any] = []
        for column, value in (("job", job), ("key", key)):
            if value is not None:
                where.append(sql.SQL("{} = %s").format(sql.Identifier(column)))
                args.append(value)
        if statuses is not None:
            where.append(sql.SQL("status = ANY(%s::text[])"))
            args.append([s.value for s in statuses])
        parts: list[sql.Composable] = [sql.SQL(self.select_runs.decode())]
        if where:
            parts += [sql.SQL(" WHERE "), sql.SQL(" AND ").join(where)]
        parts.append(sql.SQL(" ORDER BY started_at DESC, run_id DESC"))
        if limit is not None and limit >= 0:  # a negative limit means none, as in SQLite
            parts.append(sql.SQL(" LIMIT %s"))
            args.append(limit)
        return sql.Composed(parts), args

    def plan(self, changes: ChangeSet) -> Plan:
        """Turn a change set into statements (all values bound), in the order ``ChangeSet`` documents."""
        plan = Plan()
        fence = changes.fence
        plan.fenced_in_caller = fence is not None
        if fence is not None:  # first: nothing else of the change set may land without the lease
            plan.head.append((self.lease_fence, [(fence.run_id, fence.task, fence.epoch, fence.end, fence.failed)]))
        if changes.run_deletes:
            plan.head += [(query, [(list(changes.run_deletes),)]) for query in self.delete_runs]
        for query, rows in (
            (self.upsert_run, [_run_row(r) for r in changes.runs]),
            (self.upsert_task, [_task_row(t) for t in changes.tasks]),
            (self.upsert_phase, [(p.run_id, p.name, p.position, p.completed_at) for p in changes.phases]),
        ):
            if rows:
                plan.head.append((query, rows))
        keys = {(clear.run_id, clear.task): None for clear in changes.ledger_clears}
        tasks: dict[tuple[str, str], dict[tuple[int, str], LedgerRow]] = {}
        # a later entry for the same ID replaces an earlier one; unpacked, not attribute reads: 10,000s per commit
        for run_id, task, item_id, ok, error, retryable, kind_enum in changes.ledger:
            batch = tasks.get((run_id, task))
            if batch is None:
                batch = tasks[run_id, task] = {}
                keys[run_id, task] = None
            kind = int(kind_enum)
            batch[kind, item_id] = (kind, item_id, 0 if ok else 1 if retryable else 2, error)
        # sorted by (kind, item_id), unique (so None never meets str): near-sequential B-tree inserts
        plan.ledger = {key: sorted(batch.values()) for key, batch in tasks.items()}
        plan.task_keys, plan.clears = list(keys), list(changes.ledger_clears)
        for delete in changes.state_deletes:
            if delete.key is None:
                plan.tail.append((self.delete_state, [(delete.job,)]))
            else:
                plan.tail.append((self.delete_state_key, [(delete.job, delete.key)]))
        if changes.state:
            rows = [(s.job, s.key, codec.dumps(s.value), s.updated_at) for s in changes.state]
            plan.tail.append((self.upsert_state, rows))
        if changes.samples:
            rows = [(p.run_id, p.slot, p.at, p.items_ok, p.items_failed, p.records, p.pages) for p in changes.samples]
            plan.tail.append((self.upsert_sample, rows))
        if (fence is not None and fence.end is None and len(changes.tasks) == 1 and not plan.task_keys
                and len(plan.head) == 2 and not plan.tail):
            plan.fenced = (self.fenced_task_upsert, (*_task_row(changes.tasks[0]), *plan.head[0][1][0]))
        if fence is not None and fence.end == LeaseState.FINISHED.value:  # last: sees this commit's task rows
            if fence.failed:
                plan.tail.append((self.task_failed, [(fence.retryable, fence.run_id, fence.task, fence.retryable)]))
            plan.tail.append((self.finish_run, [(fence.run_id,)]))
        return plan


@dataclass
class Plan:
    head: list[Statement] = field(default_factory=list)  # run deletes, runs, tasks, phases
    task_keys: list[tuple[str, str]] = field(default_factory=list)  # tasks the clears and the ledger name
    clears: list[LedgerClear] = field(default_factory=list)
    ledger: dict[tuple[str, str], list[LedgerRow]] = field(default_factory=dict)  # deduplicated, sorted
    tail: list[Statement] = field(default_factory=list)  # state deletes, state
    fenced: tuple[bytes, tuple[Any, ...]] | None = None  # a leased task's page: one statement with its fence
    fenced_in_caller: bool = False  # a fence at all (what apply_in must let the server's idle timeout see)

    def single_statement(self) -> tuple[bytes, tuple[Any, ...]] | None:
        """The one statement of a one-row change set, which then needs no explicit transaction."""
        if self.fenced is not None:
            return self.fenced
        statements = self.head + self.tail
        if self.task_keys or len(statements) != 1 or len(statements[0][1]) != 1:
            return None
        return statements[0][0], statements[0][1][0]


def _run_row(r: RunRecord) -> tuple[Any, ...]:
    return (
        r.run_id, r.job, r.status.value, codec.dumps(r.config), r.config_digest, r.started_at, r.updated_at,
        r.key, codec.dumps(r.params), r.ended_at, r.attempts, r.error, r.exit_code,
    )


def _task_row(t: TaskRecord) -> tuple[Any, ...]:
    return (
        t.run_id, t.name, t.position, t.status.value, None if t.cursor is None else codec.dumps(t.cursor),
        t.pages, t.records, t.ok, t.failed, t.total, t.error, t.retryable, t.started_at, t.updated_at,
        t.completed_at,
    )


def is_transient(exc: BaseException) -> bool:
    """A lost or refused connection, a restart, a deadlock: worth retrying an idempotent operation."""
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = exc.sqlstate
    return state is None or state.startswith("08") or state in _TRANSIENT_STATES


class _Retry(Exception):  # internal control flow, never leaves this module
    def __init__(self, exc: psycopg.Error, detail: str) -> None:
        super().__init__(detail)
        self.exc, self.detail = exc, detail


@contextlib.contextmanager
def _translate(target: pgm.PgTarget, *, retry: bool = False) -> Iterator[None]:
    """Map psycopg's errors to the public ones, in one place (with ``retry``, transient ones to ``_Retry``)."""
    try:
        yield
    except psycopg.Error as exc:
        detail = target.scrub(pgm.error_detail(exc))
        if is_transient(exc):
            if retry:
                raise _Retry(exc, detail) from None
            raise StoreUnavailable(pgm.unavailable_message(target, exc)) from None
        if exc.sqlstate == LEASE_LOST:
            raise LeaseLost(pgm.first_line(str(exc))) from None
        if isinstance(exc, psycopg.errors.UndefinedTable):
            detail += "; was the schema dropped? reopen the store to recreate it"
        raise StoreError(f"{target.location}: {detail}") from None


class PostgresStore(Store):
    """Checkpoints in a PostgreSQL schema (default ``syncpoint``); see the module docstring."""

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        retry_for: float | None = None,
        migrate: bool | None = None,
        max_connections: int = 4,
        read_only: bool = False,
        create: bool = True,
    ) -> None:
        """``read_only``: for inspection: creates and migrates nothing, and every transaction is read-only;
        ``create=False``: a schema without a store is an error (exit 64) instead of being created."""
        self.target = pgm.parse_url(url, schema=schema)
        self.schema = self.target.schema
        self.location = self.target.location
        self.retry_for = self.target.retry_for if retry_for is None else retry_for
        self.queries = Queries(self.schema)
        self.read_only = read_only
        self._max = max_connections
        self._mutex = threading.Lock()
        self._conflicts: dict[tuple[str, str], int] = {}
        self._orphans: list[ConnectionPool] = []  # pools inherited across fork: never used, never closed
        self._pid = os.getpid()
        self.connection_losses = 0  # counted by _retrying; a lock re-checks itself after one
        with pgm.connect(self.target, autocommit=True) as conn, _translate(self.target):
            self._dbname = conn.info.dbname
            auto_migrate = self.target.auto_migrate if migrate is None else migrate
            self._open_schema(conn, auto_migrate and not read_only, create and not read_only)
        self._pool_obj: ConnectionPool | None = self._new_pool()

    def _open_schema(self, conn: Conn, auto_migrate: bool, create: bool) -> None:
        found = pgm.check_current(conn, self.schema, self.location)
        if found.current is None and not create:
            raise UsageError(pgm.missing_message(conn, self.schema, self.location))
        if found.pending and auto_migrate:
            pgm.migrate_on(conn, self.schema, where=self.location)
        elif found.pending:
            raise StoreError(
                f"{self.location} needs migration ({', '.join(found.pending)}); run `syncpoint db migrate`"
            )

    # -- connections ---------------------------------------------------------------------------------
    def _new_pool(self) -> ConnectionPool:
        pool = ConnectionPool(
            self.target.conninfo, min_size=1, max_size=self._max, kwargs={"autocommit": True},
            configure=_configure_read_only if self.read_only else _configure, open=False,
            name=f"syncpoint-{self.schema}", timeout=max(self.retry_for, 0.1),
        )
        pool.open(wait=False)
        return pool

    def _pool(self) -> ConnectionPool:
        with self._mutex:
            if self._pool_obj is None:
                raise StoreError(f"{self.location} is closed")
            if self._pid != os.getpid():  # never use a parent's sockets after fork: start afresh
                self._orphans.append(self._pool_obj)
                self._pool_obj, self._pid = self._new_pool(), os.getpid()
            return self._pool_obj

    def close(self) -> None:
        with self._mutex:
            pool, self._pool_obj = self._pool_obj, None
        if pool is not None and self._pid == os.getpid():
            pool.close()

    def _retrying(self, fn: Callable[[Conn], T]) -> T:
        """Run ``fn`` on a pooled connection; on a lost connection retry with backoff for ``retry_for``."""
        deadline = time.monotonic() + self.retry_for
        delay = 0.05
        while True:
            try:
                with _translate(self.target, retry=True):
                    pool = self._pool()
                    with pool.connection(timeout=max(deadline - time.monotonic(), 0.05)) as conn:
                        return fn(conn)
            except _Retry as retry:
                self.connection_losses += 1
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise StoreUnavailable(self._gave_up(retry)) from None
                logger.warning("%s: %s; retrying in %.2f s", self.location, retry.detail, min(delay, remaining))
                time.sleep(min(delay, remaining))
                delay = min(delay * 2, 2.0)
                self._pool().check()  # drop idle connections that died with the server

    def _gave_up(self, retry: _Retry) -> str:
        detail = retry.detail
        if isinstance(retry.exc, PoolTimeout):  # the pool hides why it cannot connect: ask directly
            try:
                psycopg.connect(self.target.conninfo, connect_timeout=2).close()
            except psycopg.Error as exc:
                detail = pgm.error_detail(exc)
        return self.target.scrub(
            f"lost the connection to the PostgreSQL store {self.location} and could not get it back within "
            f"{self.retry_for:g} s ({detail}); is the server running? check the URL"
        )

    # -- the one write path --------------------------------------------------------------------------
    def apply(self, changes: ChangeSet) -> None:
        if not changes:
            return
        if self.read_only:
            raise StoreError(f"{self.location} was opened read-only (for inspection); nothing was written")
        plan = self.queries.plan(changes)
        single = plan.single_statement()
        if single is not None:  # autocommit: the statement is its own transaction, one round trip
            self._retrying(lambda conn: conn.execute(*single))
        else:
            self._retrying(lambda conn: self._write(conn, plan, _OWN))

    def apply_in(self, connection: object, changes: ChangeSet) -> None:
        """Write ``changes`` in the caller's transaction on ``connection`` (same database); never commits.

        The caller's transaction must be open (``with conn.transaction():``, or any non-autocommit
        connection). The change set is written under a savepoint, so if it fails, nothing of it remains and
        the caller's own work is still usable. Driver errors on the caller's connection propagate unchanged.
        """
        if not isinstance(connection, psycopg.Connection):
            raise TypeError(f"apply_in needs a psycopg.Connection, got {type(connection).__name__}")
        status = connection.info.transaction_status
        if status == TransactionStatus.INERROR:
            raise StoreError("apply_in: the caller's transaction has already failed; roll it back first")
        if status == TransactionStatus.IDLE and connection.autocommit:
            raise StoreError("apply_in needs an open transaction: call it inside `with conn.transaction():`")
        if connection.info.dbname != self._dbname:
            raise StoreError(
                f"apply_in needs a connection to the store's database {self._dbname!r}, "
                f"not {connection.info.dbname!r}"
            )
        if changes:
            try:
                self._write(connection, self.queries.plan(changes), _NESTED)
            except psycopg.Error as exc:
                if exc.sqlstate == LEASE_LOST:
                    raise LeaseLost(pgm.first_line(str(exc))) from None
                raise

    def _write(self, conn: Conn, plan: Plan, frame: tuple[str, str, tuple[str, ...]]) -> None:
        """Write ``plan`` between ``frame``'s begin and end statements (BEGIN/COMMIT or a savepoint).

        Round trips: a change set without ledger entries (a page of cursor progress) takes one in all;
        with ledger entries, one for everything before the ledger rows (with the task-ID lookup), two per
        ledger COPY, and one for the rest and the commit.
        """
        begin, end, abort = frame
        # Inside the caller's transaction, a fenced change set leaves the lease row locked until the caller
        # commits; the fence sets an idle-in-transaction timeout so that a caller paused there cannot hold it
        # for ever. The server arms that timeout only after a statement outside a pipeline: the last one is.
        settle = end if frame is _NESTED and plan.fenced_in_caller else None
        try:
            if plan.task_keys:
                self._write_with_ledger(conn, plan, begin, end if settle is None else None)
            else:
                cur = conn.cursor(row_factory=tuple_row)
                with conn.pipeline():
                    cur.execute(begin)
                    for query, rows in plan.head + plan.tail:
                        cur.executemany(query, rows)
                    if settle is None:
                        cur.execute(end)
            if settle is not None:
                conn.execute(settle)
        except BaseException:
            with contextlib.suppress(psycopg.Error):
                for statement in abort:
                    conn.execute(statement)
            raise

    def _write_with_ledger(self, conn: Conn, plan: Plan, begin: str, end: str | None) -> None:
        cur = conn.cursor(row_factory=tuple_row)
        lookup = conn.cursor(row_factory=tuple_row)
        copies = [key for key, rows in plan.ledger.items() if len(rows) >= _COPY_MIN and self._copy_ok(key)]
        with conn.pipeline():
            cur.execute(begin)
            for query, rows in plan.head:
                cur.executemany(query, rows)
            keys = plan.task_keys
            lookup.execute(self.queries.task_ids, ([k[0] for k in keys], [k[1] for k in keys]))
            for clear in plan.clears:
                cur.execute(self.queries.clear, (clear.run_id, clear.task, int(clear.kind)))
            if copies:
                cur.execute(_SAVEPOINT)
            task_ids = self._task_ids(lookup, plan.task_keys)  # the one sync so far
        upserts = [key for key in plan.ledger if key not in copies]
        for n, key in enumerate(copies):
            if n:
                cur.execute(_SAVEPOINT)
            if not self._copy(conn, task_ids[key], plan.ledger[key]):
                upserts.append(key)
                with self._mutex:
                    self._conflicts[key] = _UPSERT_AFTER_CONFLICT
        with conn.pipeline():
            if copies:
                cur.execute(_RELEASE)
            for key in upserts:
                columns = [list(column) for column in zip(*plan.ledger[key], strict=True)]
                cur.execute(self.queries.ledger_upsert, (task_ids[key], *columns))
            for query, rows in plan.tail:
                cur.executemany(query, rows)
            if end is not None:
                cur.execute(end)

    def _copy_ok(self, key: tuple[str, str]) -> bool:
        """False for a few batches after a COPY of this task's ledger met IDs already there."""
        with self._mutex:
            skip = self._conflicts.pop(key, 0)
            if skip > 1:
                self._conflicts[key] = skip - 1
        return not skip

    def _copy(self, conn: Conn, task_id: int, rows: list[LedgerRow]) -> bool:
        """COPY new ledger rows (under the caller's savepoint); False, rolled back, if some IDs exist."""
        try:
            with conn.cursor().copy(self.queries.ledger_copy) as copy:
                copy.set_types(["int8", "int2", "text", "int2", "text"])
                for kind, item_id, outcome, error in rows:
                    copy.write_row((task_id, kind, item_id, outcome, error))
            return True
        except psycopg.errors.UniqueViolation:
            conn.execute(_ROLLBACK_TO)
            return False

    @staticmethod
    def _task_ids(cur: psycopg.Cursor[tuple[Any, ...]], keys: list[tuple[str, str]]) -> dict[Any, int]:
        """The IDs of the tasks ``keys`` names, fetched from ``cur``; an unknown task is an error."""
        found = {(run_id, name): int(task_id) for run_id, name, task_id in cur.fetchall()}
        for run_id, task in keys:
            if (run_id, task) not in found:
                raise StoreError(f"ledger entry for unknown task {task!r} of run {run_id}")
        return found

    # -- reads ---------------------------------------------------------------------------------------
    def _fetch(self, query: bytes | sql.Composed, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        return self._retrying(lambda conn: conn.cursor(row_factory=tuple_row).execute(query, args).fetchall())

    def get_run(self, run_id: str) -> RunRecord | None:
        rows = self._fetch(self.queries.get_run, (run_id,))
        return self._run(rows[0]) if rows else None

    def list_runs(
        self,
        job: str | None = None,
        *,
        statuses: Sequence[RunStatus] | None = None,
        key: str | None = None,
        limit: int | None = None,
    ) -> list[RunRecord]:
        query, args = self.queries.list_runs(job, statuses, key, limit)
        return [self._run(row) for row in self._fetch(query, args)]

    def latest_runs(
        self, per_job: int = 1, *, statuses: Sequence[RunStatus] | None = None, jobs: Sequence[str] | None = None
    ) -> list[RunHead]:
        wanted = None if statuses is None else [s.value for s in statuses]
        names = None if jobs is None else list(jobs)
        rows = self._fetch(self.queries.latest_runs, (names, names, wanted, wanted, per_job))
        try:
            return [RunHead(r[0], r[1], RunStatus(r[2]), *r[3:]) for r in rows]
        except ValueError as exc:
            raise CorruptState(f"{self.location}: bad run row: {exc}") from None

    def run_counts(self) -> dict[tuple[str, RunStatus], int]:
        rows = self._fetch(self.queries.run_counts, ())
        return {(job, RunStatus(status)): int(n) for job, status, n in rows}

    def get_samples(self, run_id: str) -> list[ProgressSample]:
        return [ProgressSample(*row) for row in self._fetch(self.queries.get_samples, (run_id,))]

    def get_tasks(self, run_id: str) -> list[TaskRecord]:
        return [self._task(row) for row in self._fetch(self.queries.get_tasks, (run_id,))]

    def get_task(self, run_id: str, name: str) -> TaskRecord | None:
        rows = self._fetch(self.queries.get_task, (run_id, name))
        return self._task(rows[0]) if rows else None

    def leases(self, run_id: str) -> list[LeaseInfo]:
        return [
            LeaseInfo(run_id, task, LeaseState(state), int(epoch), *rest)
            for run_id, task, state, epoch, *rest in self._fetch(self.queries.leases, (run_id,))
        ]

    def connect(self, **options: Any) -> Conn:
        """A new connection of your own to the store's database, not pooled, not in autocommit (see
        ``Store.connect``); an unreachable server is ``StoreUnavailable``, in one line, password masked."""
        return pgm.connect(self.target, **options)

    @contextlib.contextmanager
    def connection(self) -> Iterator[Conn]:
        """A pooled autocommit connection (each statement its own transaction), errors the store's usual ones;
        not retried."""
        if self.read_only:
            raise StoreError(f"{self.location} was opened read-only (for inspection); nothing was written")
        with _translate(self.target), self._pool().connection() as conn:
            yield conn

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Conn]:
        """A pooled connection inside a transaction, committed at the end of the block (rolled back on error).

        Not retried: the caller's block is not known to be idempotent. Errors are the store's usual ones."""
        if self.read_only:
            raise StoreError(f"{self.location} was opened read-only (for inspection); nothing was written")
        with _translate(self.target), self._pool().connection() as conn, conn.transaction():
            yield conn

    def get_phases(self, run_id: str) -> list[PhaseRecord]:
        return [PhaseRecord(*row) for row in self._fetch(self.queries.get_phases, (run_id,))]

    def ledger_lookup(
        self, run_id: str, task: str, item_ids: Sequence[str], kind: LedgerKind = LedgerKind.ITEMS
    ) -> dict[str, ItemOutcome]:
        unique = sorted(set(item_ids))
        if not unique:
            return {}
        rows = self._fetch(self.queries.ledger_lookup, (run_id, task, unique, int(kind)))
        return {item_id: ItemOutcome(outcome) for item_id, outcome in rows}

    def ledger_counts(self, run_id: str, task: str, kind: LedgerKind = LedgerKind.ITEMS) -> LedgerCounts:
        ok, total = self._fetch(self.queries.ledger_counts, (run_id, task, int(kind)))[0]
        return LedgerCounts(int(ok), int(total) - int(ok))

    def ledger_failed(self, run_id: str, task: str) -> Iterator[FailedItem]:
        for entry in self.iter_ledger(run_id, task):
            if not entry.ok:
                yield FailedItem(entry.item_id, entry.error, entry.retryable)

    def iter_ledger(self, run_id: str, task: str, kind: LedgerKind = LedgerKind.ITEMS) -> Iterator[LedgerEntry]:
        """Streams in pages keyed on the last item ID: bounded memory, each page retried on its own."""
        rows = self._fetch(self.queries.ledger_first_page, (run_id, task, int(kind), _PAGE))
        while True:
            for item_id, outcome, error in rows:
                yield LedgerEntry(
                    run_id, task, item_id, outcome == ItemOutcome.OK, error,
                    outcome == ItemOutcome.FAILED_RETRYABLE, kind,
                )
            if len(rows) < _PAGE:
                return
            rows = self._fetch(self.queries.ledger_next_page, (run_id, task, int(kind), rows[-1][0], _PAGE))

    def get_state(self, job: str) -> list[StateEntry]:
        return [StateEntry(*row) for row in self._fetch(self.queries.get_state, (job,))]

    def list_jobs(self) -> list[str]:
        return [row[0] for row in self._fetch(self.queries.list_jobs, ())]

    # -- locks ---------------------------------------------------------------------------------------
    def lock(self, job: str, run_id: str | None = None) -> PostgresJobLock:
        return PostgresJobLock(self, check_job_name(job), run_id)

    def lock_holder(self, job: str) -> LockHolder | None:
        key = pgm.advisory_key(self.schema, check_job_name(job))
        rows = self._fetch(self.queries.lock_holder, (job, key >> 32 & 0xFFFFFFFF, key & 0xFFFFFFFF))
        if not rows:
            return None
        host, pid, since, run_id, named = rows[0]
        return LockHolder(host, pid, since, run_id) if named else LockHolder("?", 0, "?")

    # -- row mapping ---------------------------------------------------------------------------------
    def _run(self, row: Sequence[Any]) -> RunRecord:
        try:
            return RunRecord(
                run_id=row[0], job=row[1], status=RunStatus(row[2]), config=row[3], config_digest=row[4],
                started_at=row[5], updated_at=row[6], key=row[7], params=row[8], ended_at=row[9],
                attempts=row[10], error=row[11], exit_code=row[12],
            )
        except ValueError as exc:
            raise CorruptState(f"{self.location}: bad run row: {exc}") from None

    def _task(self, row: Sequence[Any]) -> TaskRecord:
        try:
            return TaskRecord(
                run_id=row[0], name=row[1], position=row[2], status=TaskStatus(row[3]), cursor=row[4],
                pages=row[5], records=row[6], ok=row[7], failed=row[8], total=row[9], error=row[10],
                retryable=row[11], started_at=row[12], updated_at=row[13], completed_at=row[14],
            )
        except ValueError as exc:
            raise CorruptState(f"{self.location}: bad task row: {exc}") from None


class PostgresJobLock(JobLock):
    """A job's advisory lock, held on a dedicated connection for the whole run."""

    def __init__(self, store: PostgresStore, job: str, run_id: str | None) -> None:
        self.store, self.job, self.run_id = store, job, run_id
        self.key = pgm.advisory_key(store.schema, job)
        self._losses_seen = store.connection_losses
        self._conn: Conn | None = self._take()

    def _take(self) -> Conn:
        """Connect, try the lock, name ourselves; ``JobLocked`` (naming the holder) if someone has it."""
        conn = pgm.connect(self.store.target, autocommit=True)
        try:
            with _translate(self.store.target):
                conn.execute(_KEEPALIVES)  # so the server also notices a vanished machine, not only a process
                self._try_lock(conn)
                since = self.since = utcnow().isoformat(timespec="seconds")
                args = (self.job, socket.gethostname(), os.getpid(), since, self.run_id)
                conn.execute(self.store.queries.lock_write, args)
            return conn
        except BaseException:
            conn.close()
            raise

    def _try_lock(self, conn: Conn, wait: float = 1.0) -> None:
        """Take the lock or raise ``JobLocked`` naming the holder.

        A holder that has just taken the lock writes its name a moment later (and one that has just let go
        leaves the lock free): for up to ``wait`` seconds, an unnamed holder is asked again, and a freed
        lock tried again, so that the loser of a race says who won instead of "not written its name yet".
        """
        deadline = time.monotonic() + wait
        while True:
            got = conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
            if got and got[0]:
                return
            holder = self.store.lock_holder(self.job)
            named = holder is not None and holder.pid != 0
            if named or time.monotonic() >= deadline:
                raise JobLocked(self.job, holder if named else None)
            time.sleep(0.01)

    @property
    def held(self) -> bool:
        return self._conn is not None

    def set_run(self, run_id: str) -> None:
        self.run_id = run_id
        if self._conn is not None:
            args = (self.job, socket.gethostname(), os.getpid(), self.since, run_id)
            with _translate(self.store.target):
                self._conn.execute(self.store.queries.lock_write, args)

    def check(self) -> bool:
        """Confirm the lock before a commit: True if held all along, False if it was lost and re-taken.

        Free while nothing happened (see ``_may_be_lost``): the lock is held until the server ends its
        session, and a session the server ended has said so on the socket.

        After a lost connection (server restart, terminated backend) the lock is re-taken within the
        store's ``retry_for``; if another process took it meanwhile this raises ``JobLocked``, and if the
        server stays unreachable, ``StoreUnavailable``. On False, re-read the run's state before trusting
        what is held in memory: another process may have run in between.
        """
        if self._conn is None:
            raise StoreError(f"the lock on job {self.job!r} was released")
        if not self._may_be_lost():
            return True
        self._losses_seen = self.store.connection_losses
        try:
            self._conn.execute("SELECT 1")
            return True
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            detail = self.store.target.scrub(pgm.first_line(str(exc)))
            logger.warning("%s: lost the lock on job %r (%s); re-taking it", self.store.location, self.job, detail)
            self._conn.close()
            self._conn = None
        deadline = time.monotonic() + self.store.retry_for
        delay = 0.05
        while True:
            try:
                self._conn = self._take()
                return False
            except StoreUnavailable:
                if time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _may_be_lost(self) -> bool:
        """Whether to ask the server; called before every commit, so free in the common case.

        The lock's session is idle between commits: the server sends it nothing unless it ends it (the
        termination notice, then EOF), so a readable socket means trouble. A lost connection that left no
        trace here (a network partition) also broke the store's own connections, which ``_retrying``
        counts; after one, the next check asks the server.
        """
        assert self._conn is not None
        if self._conn.closed or self.store.connection_losses != self._losses_seen:
            return True
        readable, _, _ = select.select([self._conn.fileno()], [], [], 0)
        return bool(readable)

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.execute(self.store.queries.lock_clear, (self.job,))
            conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))  # now, not when the backend exits
        except psycopg.Error:
            pass  # the connection is gone, and with it the lock
        finally:
            conn.close()


def _configure(conn: Conn) -> None:
    conn.execute("SET TIME ZONE 'UTC'")


def _configure_read_only(conn: Conn) -> None:
    conn.execute("SET TIME ZONE 'UTC'")
    conn.execute("SET default_transaction_read_only = on")  # the server, too, refuses any write

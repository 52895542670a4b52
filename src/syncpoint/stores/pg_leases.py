"""Task leases in the PostgreSQL store's schema (migration 003): the statements, run on a caller's connection.

Every function here takes a psycopg connection inside the caller's transaction (``PostgresStore.transaction``)
so that a lease change commits together with what goes with it: the task rows and the queue jobs of a fan-out,
the reaper's new queue job. The commit-time check (``lease_fence``) is part of the store's own write path
(``ChangeSet.fence``), not of this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

Conn = psycopg.Connection[Any]


@dataclass(frozen=True)
class Grant:
    """A lease just granted: the epoch every commit must name, and the task's failed attempts so far."""

    epoch: int
    failures: int


@dataclass(frozen=True)
class Holder:
    """Who takes a lease: shown by ``syncpoint status`` and ``runs show``."""

    host: str
    pid: int
    worker: str
    stall_timeout: float | None = None


class LeaseSql:
    """The lease statements for one schema (a quoted identifier: input never becomes SQL)."""

    def __init__(self, schema: str) -> None:
        self._s = sql.Identifier(schema)

    def _q(self, text: str) -> sql.Composed:
        return sql.SQL(text).format(s=self._s)

    def add(self, conn: Conn, run_id: str, job: str, tasks: Sequence[str]) -> list[str]:
        """Queue a lease for each task that has none yet; the names that were new (to defer a job for each)."""
        rows = conn.execute(
            self._q(
                "INSERT INTO {s}.leases (run_id, task, job, state, queued_at) "
                "SELECT %s, t, %s, 'queued', clock_timestamp() FROM unnest(%s::text[]) AS t "
                "ON CONFLICT (run_id, task) DO NOTHING RETURNING task"
            ),
            (run_id, job, list(tasks)),
        ).fetchall()
        return [str(r[0]) for r in rows]

    def reopen(self, conn: Conn, run_id: str, tasks: Sequence[str]) -> list[str]:
        """Queue the finished leases of ``tasks`` again with their failures forgotten (a retry of an ended
        run); the names reopened. The epoch goes on growing, so the fence still tells every grant apart."""
        rows = conn.execute(
            self._q(
                "UPDATE {s}.leases SET state = 'queued', failures = 0, queue_job = NULL, "
                "queued_at = clock_timestamp() "
                "WHERE run_id = %s AND task = ANY(%s::text[]) AND state = 'finished' RETURNING task"
            ),
            (run_id, list(tasks)),
        ).fetchall()
        return sorted(str(r[0]) for r in rows)

    def lock_running(self, conn: Conn, run_id: str) -> bool:
        """Lock the run's row for this transaction if it is still running; False if it has ended.

        The first statement of a fan-out that adds tasks to an existing run: the commit that finishes the
        run's last lease ends the run under this same row lock, so tasks are either added before (and the run
        waits for them) or refused after — never added to a run that has just ended, where no worker would
        take them."""
        row = conn.execute(
            self._q("SELECT 1 FROM {s}.runs WHERE run_id = %s AND status = 'running' FOR UPDATE"), (run_id,)
        ).fetchone()
        return row is not None

    def set_queue_job(self, conn: Conn, run_id: str, task: str, queue_job: int) -> None:
        conn.execute(
            self._q("UPDATE {s}.leases SET queue_job = %s WHERE run_id = %s AND task = %s"),
            (queue_job, run_id, task),
        )

    def take(self, conn: Conn, run_id: str, task: str, queue_job: int, holder: Holder) -> Grant | None:
        """Grant the lease to ``holder`` with the next epoch, if ``queue_job`` is the job that may take it now
        (None: the job is stale — the task finished, or was handed to a newer job)."""
        row = conn.execute(
            self._q(
                # one statement: the grant, then its audit row — made from the UPDATE's result, so after the
                # row lock, and granted_at is later than any commit of the previous epoch
                "WITH taken AS (UPDATE {s}.leases SET epoch = epoch + 1, state = 'leased', host = %s, pid = %s, "
                "worker = %s, stall_timeout = %s, leased_at = clock_timestamp(), heartbeat_at = clock_timestamp() "
                "WHERE run_id = %s AND task = %s AND queue_job = %s AND state <> 'finished' "
                "RETURNING run_id, task, epoch, failures, host, pid), "
                "granted AS (INSERT INTO {s}.lease_grants (run_id, task, epoch, granted_at, host, pid) "
                "SELECT run_id, task, epoch, clock_timestamp(), host, pid FROM taken ON CONFLICT DO NOTHING) "
                "SELECT epoch, failures FROM taken"
            ),
            (holder.host, holder.pid, holder.worker, holder.stall_timeout, run_id, task, queue_job),
        ).fetchone()
        if row is None:
            return None
        epoch = int(row[0])
        return Grant(epoch, int(row[1]))

    def heartbeat(self, conn: Conn, held: Sequence[tuple[str, str, int]]) -> set[tuple[str, str, int]]:
        """Refresh the heartbeat of the leases still held at their epochs; the ones that were lost."""
        if not held:
            return set()
        rows = conn.execute(
            self._q(
                "UPDATE {s}.leases l SET heartbeat_at = clock_timestamp() "
                "FROM unnest(%s::text[], %s::text[], %s::int8[]) AS h(run_id, task, epoch) "
                "WHERE l.run_id = h.run_id AND l.task = h.task AND l.epoch = h.epoch AND l.state = 'leased' "
                "RETURNING l.run_id, l.task, l.epoch"
            ),
            ([h[0] for h in held], [h[1] for h in held], [h[2] for h in held]),
        ).fetchall()
        alive = {(str(r[0]), str(r[1]), int(r[2])) for r in rows}
        return set(held) - alive

    def touch_runs(self, conn: Conn, run_ids: Sequence[str]) -> None:
        """Move the ``updated_at`` of the running runs ``run_ids``: workers commit tasks, not the run's record,
        and without this a shared run's ``updated`` and duration would stand at its fan-out until it ends.

        Its own statement on an autocommit connection, after the heartbeat (never in its transaction): it
        holds no lease row while it waits for a run row, so it cannot deadlock with a commit that holds a
        lease and ends the run; and a run row locked by such a commit is skipped, not waited for.
        """
        if not run_ids:
            return
        conn.execute(
            self._q(
                "UPDATE {s}.runs SET updated_at = clock_timestamp() WHERE run_id IN (SELECT run_id FROM {s}.runs "
                "WHERE run_id = ANY(%s::text[]) AND status = 'running' AND updated_at < clock_timestamp() "
                "FOR UPDATE SKIP LOCKED)"
            ),
            (sorted(set(run_ids)),),
        )

    def stalled(self, conn: Conn, job: str, stall_timeout: float) -> list[tuple[str, str]]:
        """Leases to hand to a new queue job, locked for this transaction (others skip them):

        - held, but no heartbeat for the holder's own stall timeout (stored with the lease; ``stall_timeout``,
          the caller's, for a lease that has none): the holder is dead, paused or cut off — a fleet with a
          long stall timeout is not taken over by a worker configured with a shorter one;
        - queued for ``stall_timeout`` seconds while their queue job is no longer waiting (a worker died
          between fetching the job and taking the lease, or the job was deleted or cancelled)."""
        rows = conn.execute(
            self._q(
                "SELECT l.run_id, l.task FROM {s}.leases l "
                "WHERE l.job = %s AND l.state <> 'finished' AND ("
                " (l.state = 'leased' AND l.heartbeat_at < clock_timestamp()"
                "  - make_interval(secs => coalesce(l.stall_timeout, %s))) OR"
                " (l.state = 'queued' AND l.queued_at < clock_timestamp() - make_interval(secs => %s) AND NOT EXISTS"
                "  (SELECT 1 FROM procrastinate_jobs j WHERE j.id = l.queue_job AND j.status = 'todo')))"
                " ORDER BY l.run_id, l.task FOR UPDATE OF l SKIP LOCKED"
            ),
            (job, stall_timeout, stall_timeout),
        ).fetchall()
        return [(str(r[0]), str(r[1])) for r in rows]

    def requeue(self, conn: Conn, run_id: str, task: str, queue_job: int) -> None:
        """Hand a stalled lease to a new queue job: its holder, if alive, is fenced from now on."""
        conn.execute(
            self._q(
                "UPDATE {s}.leases SET queue_job = %s, queued_at = clock_timestamp(), "
                "takeovers = takeovers + CASE WHEN state = 'leased' THEN 1 ELSE 0 END, state = 'queued' "
                "WHERE run_id = %s AND task = %s"
            ),
            (queue_job, run_id, task),
        )

    def open_count(self, conn: Conn, job: str) -> int:
        """How many of the job's leases are not finished (0: every distributed run of the job is done)."""
        row = conn.execute(
            self._q("SELECT count(*) FROM {s}.leases WHERE job = %s AND state <> 'finished'"), (job,)
        ).fetchone()
        return int(row[0]) if row else 0

    def ever_queued(self, conn: Conn, job: str) -> bool:
        """Whether any task of the job was ever queued in this store (a worker told to work until done on a
        store without any is most likely pointed at the wrong one)."""
        return conn.execute(self._q("SELECT EXISTS (SELECT 1 FROM {s}.leases WHERE job = %s)"), (job,)).fetchone() \
            == (True,)

    def late_commits(self, conn: Conn, run_id: str) -> list[tuple[str, int]]:
        """(task, epoch) of every epoch that committed after the next epoch was granted: a fenced commit that
        landed. Always empty while the fence holds; the reliability tests check it from the store."""
        rows = conn.execute(
            self._q(
                "SELECT g.task, g.epoch FROM {s}.lease_grants g JOIN {s}.lease_grants n "
                "ON n.run_id = g.run_id AND n.task = g.task AND n.epoch = g.epoch + 1 "
                "WHERE g.run_id = %s AND g.last_commit_at > n.granted_at ORDER BY 1, 2"
            ),
            (run_id,),
        ).fetchall()
        return [(str(r[0]), int(r[1])) for r in rows]

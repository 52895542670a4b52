"""The fence in the store's one write path: a commit names its lease's epoch and lands only while that epoch
holds the lease, in the same transaction; the audit of grants shows from the store alone that none landed late."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
from helpers import PG_URL, drop_pg_schema, require_pg, store_url, with_query

from syncpoint.errors import LeaseLost, UsageError
from syncpoint.model import LeaseState, RunRecord, RunStatus, TaskRecord, TaskStatus, utcnow
from syncpoint.stores import open_store
from syncpoint.stores.base import ChangeSet, LeaseFence
from syncpoint.stores.pg_leases import Holder, LeaseSql
from syncpoint.stores.postgres import PostgresStore

HOLDER = Holder("host-a", 4242, "host-a:4242")


@pytest.fixture
def store() -> Iterator[PostgresStore]:
    require_pg()
    schema = f"sp_fence_{uuid.uuid4().hex[:12]}"
    opened = PostgresStore(with_query(PG_URL, schema=schema))
    yield opened
    opened.close()
    drop_pg_schema(schema)


def leased_run(store: PostgresStore, *, tasks: int = 1) -> RunRecord:
    now = utcnow()
    run = RunRecord("r1", "j", RunStatus.RUNNING, {}, "d", now, now)
    records = [TaskRecord("r1", f"t{n}", n, updated_at=now) for n in range(tasks)]
    store.apply(ChangeSet(runs=[run], tasks=records))
    sql = LeaseSql(store.schema)
    with store.transaction() as conn:
        for name in sql.add(conn, "r1", "j", [r.name for r in records]):
            sql.set_queue_job(conn, "r1", name, 1)
    return run


def take(store: PostgresStore, task: str = "t0", queue_job: int = 1) -> int:
    with store.transaction() as conn:
        grant = LeaseSql(store.schema).take(conn, "r1", task, queue_job, HOLDER)
    assert grant is not None
    return grant.epoch


def progress(task: str, pages: int, **fence: object) -> ChangeSet:
    record = TaskRecord("r1", task, 0, status=TaskStatus.IN_PROGRESS, cursor={"page": pages}, pages=pages)
    return ChangeSet(tasks=[record], fence=LeaseFence("r1", task, **fence))  # type: ignore[arg-type]


def test_a_commit_under_the_current_epoch_lands_and_a_stale_epoch_writes_nothing(store: PostgresStore) -> None:
    leased_run(store)
    first = take(store)
    store.apply(progress("t0", 3, epoch=first))
    assert store.get_tasks("r1")[0].cursor == {"page": 3}
    with store.transaction() as conn:  # the reaper hands the lease to a new queue job; a new worker takes it
        LeaseSql(store.schema).requeue(conn, "r1", "t0", 2)
    second = take(store, queue_job=2)
    assert second == first + 1
    with pytest.raises(LeaseLost, match=r"lost the lease on task t0 of run r1: this worker holds epoch 1"):
        store.apply(progress("t0", 9, epoch=first))  # the worker presumed dead comes back
    assert store.get_tasks("r1")[0].cursor == {"page": 3}  # nothing of the refused commit landed
    store.apply(progress("t0", 4, epoch=second))
    lease = store.leases("r1")[0]
    assert (lease.state, lease.epoch, lease.commits, lease.takeovers, lease.host) == (
        LeaseState.LEASED, 2, 2, 1, "host-a")
    with store.transaction() as conn:
        assert LeaseSql(store.schema).late_commits(conn, "r1") == []


def test_a_job_that_is_not_the_lease_s_current_one_takes_nothing(store: PostgresStore) -> None:
    leased_run(store)
    with store.transaction() as conn:
        assert LeaseSql(store.schema).take(conn, "r1", "t0", 99, HOLDER) is None
    assert store.leases("r1")[0].state is LeaseState.QUEUED


def test_a_refused_commit_in_a_bound_transaction_rolls_back_with_the_caller_s_rows(store: PostgresStore) -> None:
    leased_run(store)
    epoch = take(store)
    with psycopg.connect(PG_URL) as conn:
        conn.execute(f'CREATE TABLE "{store.schema}".dest (id int)')
        conn.commit()
        conn.execute(f'INSERT INTO "{store.schema}".dest VALUES (1)')
        with pytest.raises(LeaseLost):
            store.apply_in(conn, progress("t0", 1, epoch=epoch + 5))
        conn.rollback()
        assert conn.execute(f'SELECT count(*) FROM "{store.schema}".dest').fetchone() == (0,)


def test_the_finishing_commit_of_the_last_lease_ends_the_run_once(store: PostgresStore) -> None:
    leased_run(store, tasks=2)
    a, b = take(store, "t0"), take(store, "t1")
    done = replace(progress("t0", 1, epoch=a, end="finished"))
    done.tasks[0] = replace(done.tasks[0], status=TaskStatus.COMPLETED)
    store.apply(done)
    assert store.get_run("r1").status is RunStatus.RUNNING  # type: ignore[union-attr]
    # failed for good after its last attempt, in a commit without its task record (a rolled-back bound one)
    store.apply(progress("t1", 1, epoch=b, end="finished", failed=True, retryable=True))
    run = store.get_run("r1")
    assert run is not None and run.status is RunStatus.FAILED and run.exit_code == 1
    assert run.error == ("1 of 2 task(s) failed with retryable errors after their last attempt; "
                         "see syncpoint runs show r1")
    assert [t.status for t in store.get_tasks("r1")] == [TaskStatus.COMPLETED, TaskStatus.FAILED]
    with pytest.raises(LeaseLost):  # a finished lease takes no commit
        store.apply(progress("t1", 2, epoch=b))


def test_the_keeper_keeps_the_shared_run_s_updated_time_current_and_never_waits_for_its_row(
        store: PostgresStore) -> None:
    """Workers commit tasks, not the run's record: after each heartbeat the keeper moves the run's
    ``updated_at`` (``touch_runs``), so ``runs list`` and the dashboard show a shared run's duration growing.
    It never waits for the run's row: a commit that holds a lease row and ends the run locks that row, and a
    keeper that held lease rows while waiting for it could deadlock with it; a locked row is skipped."""
    from datetime import timedelta

    from syncpoint.report import duration_seconds

    hour_ago = utcnow() - timedelta(hours=1)
    leased_run(store)
    store.apply(ChangeSet(runs=[RunRecord("r1", "j", RunStatus.RUNNING, {}, "d", hour_ago, hour_ago)]))
    epoch = take(store)
    sql = LeaseSql(store.schema)
    with store.connection() as conn:
        assert sql.heartbeat(conn, [("r1", "t0", epoch + 1)]) == {("r1", "t0", epoch + 1)}  # not held: lost
        assert sql.heartbeat(conn, [("r1", "t0", epoch)]) == set()
    assert store.get_run("r1").updated_at == hour_ago  # type: ignore[union-attr]  # a heartbeat alone: no

    with psycopg.connect(PG_URL) as locker:  # a commit that ends the run holds its row
        locker.execute(f'SELECT 1 FROM "{store.schema}".runs WHERE run_id = %s FOR UPDATE', ("r1",))
        with store.connection() as conn:
            conn.execute("SET lock_timeout = '2s'")  # a wait for the row fails here instead of hanging the test
            try:
                sql.touch_runs(conn, ["r1"])  # skipped, not waited for (the lock is held until the rollback)
            finally:
                conn.execute("RESET lock_timeout")
        locker.rollback()
    assert store.get_run("r1").updated_at == hour_ago  # type: ignore[union-attr]

    with store.connection() as conn:
        sql.touch_runs(conn, ["r1", "r1"])
    run = store.get_run("r1")
    assert run is not None and duration_seconds(run) >= 3599 and utcnow() - run.updated_at < timedelta(minutes=1)
    ended = replace(run, status=RunStatus.COMPLETED, updated_at=hour_ago, ended_at=hour_ago)
    store.apply(ChangeSet(runs=[ended]))
    with store.connection() as conn:
        sql.touch_runs(conn, ["r1"])
    assert store.get_run("r1").updated_at == hour_ago  # type: ignore[union-attr]  # an ended run stays ended


def test_a_held_lease_is_taken_over_after_its_holder_s_stall_timeout_not_the_reaper_s(
        store: PostgresStore) -> None:
    """Liveness counts a holder alive for twice its own stall timeout; the reaper must not take its lease over
    sooner because the reaping worker was configured with a shorter one."""
    leased_run(store)
    sql = LeaseSql(store.schema)
    with store.transaction() as conn:
        assert sql.take(conn, "r1", "t0", 1, Holder("host-b", 77, "host-b:77", 300.0)) is not None
    with store.connection() as conn:
        conn.execute(f'UPDATE "{store.schema}".leases SET heartbeat_at = clock_timestamp() - interval \'10 s\'')
    with store.transaction() as conn:
        assert sql.stalled(conn, "j", 1.0) == []  # silent for 10 s of its 300: alive
    with store.connection() as conn:
        conn.execute(f'UPDATE "{store.schema}".leases SET stall_timeout = 5')
    with store.transaction() as conn:
        assert sql.stalled(conn, "j", 60.0) == [("r1", "t0")]  # silent for twice its 5 s: taken over
    with store.connection() as conn:
        conn.execute(f'UPDATE "{store.schema}".leases SET stall_timeout = NULL')
    with store.transaction() as conn:
        assert sql.stalled(conn, "j", 1.0) == [("r1", "t0")]  # a lease that does not say: the reaper's


def test_the_audit_finds_a_commit_that_landed_after_the_next_grant(store: PostgresStore) -> None:
    """The check the reliability tests rely on can fail: a commit stamped after its successor's grant."""
    leased_run(store)
    take(store)
    with store.transaction() as conn:
        conn.execute(f'INSERT INTO "{store.schema}".lease_grants (run_id, task, epoch, granted_at, commits, '
                     "last_commit_at) VALUES ('r1', 't0', 2, now(), 0, NULL)")
        conn.execute(f'UPDATE "{store.schema}".lease_grants SET last_commit_at = now() + interval \'1 second\' '
                     "WHERE epoch = 1")
        assert LeaseSql(store.schema).late_commits(conn, "r1") == [("t0", 1)]


@pytest.mark.parametrize("kind", ["sqlite", "json"])
def test_stores_without_leases_refuse_a_fenced_commit(kind: str, tmp_path: Path) -> None:
    with open_store(store_url(kind, tmp_path)) as embedded:
        with pytest.raises(UsageError, match="many workers on one run need PostgreSQL"):
            embedded.apply(progress("t0", 1, epoch=1))
        assert embedded.leases("r1") == []


@pytest.mark.parametrize("kind", ["sqlite", "json", "postgres"])
def test_get_task_reads_one_task_of_a_run(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    opened = request.getfixturevalue("store") if kind == "postgres" else open_store(store_url(kind, tmp_path))
    now = utcnow()
    opened.apply(ChangeSet(runs=[RunRecord("r1", "j", RunStatus.RUNNING, {}, "d", now, now)],
                           tasks=[TaskRecord("r1", "a", 0, cursor={"page": 1}), TaskRecord("r1", "b", 1)]))
    found = opened.get_task("r1", "a")
    assert found is not None and (found.name, found.cursor, found.position) == ("a", {"page": 1}, 0)
    assert opened.get_task("r1", "zz") is None and opened.get_task("nope", "a") is None


def test_a_worker_paused_inside_a_fenced_commit_is_cut_off_after_the_stall_timeout(store: PostgresStore) -> None:
    """The fence locks the lease row until its transaction ends; a worker stopped between the fence and its
    COMMIT (SIGSTOP, a partition) must not hold it for ever: the server ends that session after the lease's
    stall timeout, which releases the row for the next grant."""
    leased_run(store)
    epoch = take(store)
    with store.transaction() as conn:  # the holder's fleet's stall timeout: 1 s
        conn.execute(f'UPDATE "{store.schema}".leases SET stall_timeout = 1.0')
    with psycopg.connect(PG_URL) as paused:
        store.apply_in(paused, progress("t0", 1, epoch=epoch))  # fenced, and then idle in its transaction
        pid = paused.info.backend_pid
        deadline = time.monotonic() + 15
        with psycopg.connect(PG_URL, autocommit=True) as watcher:
            while time.monotonic() < deadline:
                alive = watcher.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
                if alive is None:
                    break
                time.sleep(0.1)  # polling the server for the session's end, bounded by the deadline
            assert alive is None, "the paused session still holds the lease row"
        with pytest.raises(psycopg.Error, match="idle-in-transaction timeout"):
            paused.execute("SELECT 1")
    with store.transaction() as conn:  # the row is free: the reaper and the next grant can have it
        LeaseSql(store.schema).requeue(conn, "r1", "t0", 2)
    assert take(store, queue_job=2) == epoch + 1
    assert store.get_tasks("r1")[0].cursor is None  # the paused commit never landed

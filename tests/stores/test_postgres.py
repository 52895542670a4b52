"""PostgreSQL-only behaviour: locks across processes, lost connections, migrations, schemas, secrets.

The shared test server is never restarted: a server that goes away and comes back is simulated with a small
TCP proxy in front of it (``Proxy``), which the test stops and starts again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from helpers import with_query
from psycopg import sql

from syncpoint.errors import InvalidName, JobLocked, SchemaTooNew, StoreError, StoreUnavailable
from syncpoint.model import LedgerEntry, RunRecord, RunStatus, StateEntry, TaskRecord, utcnow
from syncpoint.stores import open_store
from syncpoint.stores import pg_migrations as pgm
from syncpoint.stores.base import ChangeSet, ItemOutcome
from syncpoint.stores.postgres import PostgresStore

pytestmark = pytest.mark.postgres

SECRET = "s3cret-Pa55"
NOWHERE = "postgresql://nobody@127.0.0.1:1/db"


# -- helpers --------------------------------------------------------------------------------------------
class Proxy:
    """A TCP forwarder to the test server that can be stopped (all connections cut) and started again."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = 0
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._sockets = self._sockets, []
        if listener is not None:
            listener.close()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    server.close()
                    return
                self._sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    @staticmethod
    def _pump(a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                ready, _, _ = select.select([a, b], [], [], 1.0)
                for src in ready:
                    data = src.recv(65536)
                    if not data:
                        return
                    (b if src is a else a).sendall(data)
        except (OSError, ValueError):
            return
        finally:
            for sock in (a, b):
                with contextlib.suppress(OSError):
                    sock.close()


@pytest.fixture
def proxy(pg_url: str) -> Iterator[Proxy]:
    parts = urlsplit(pg_url)
    p = Proxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    p.start()
    yield p
    p.stop()


def via(url: str, port: int, password: str | None = SECRET) -> str:
    """``url`` pointed at ``port`` on 127.0.0.1, with a password (trust auth never asks for it)."""
    parts = urlsplit(url)
    user = parts.username or "postgres"
    auth = f"{user}:{password}" if password else user
    return urlunsplit(parts._replace(netloc=f"{auth}@127.0.0.1:{port}"))


def run_and_task(run_id: str = "20240101-000000-aaaaaa") -> ChangeSet:
    now = utcnow()
    return ChangeSet(
        runs=[RunRecord(run_id, "job", RunStatus.RUNNING, {}, "d", now, now)],
        tasks=[TaskRecord(run_id, "t1", 0)],
    )


def marks(run_id: str, ids: list[str]) -> ChangeSet:
    return ChangeSet(ledger=[LedgerEntry(run_id, "t1", i, True) for i in ids])


def terminate(url: str, application_name: str) -> int:
    """Terminate the sessions named ``application_name`` and wait (up to 5 s) until they are gone."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE application_name = %s",
            (application_name,),
        ).fetchall()
    return len(rows)


def wait_for_line(proc: subprocess.Popen[str], expected: str, timeout: float = 30.0) -> None:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, f"the subprocess did not print {expected!r} within {timeout} s"
    line = proc.stdout.readline().strip()
    assert line == expected, f"subprocess said {line!r}; stderr: {proc.stderr.read() if proc.stderr else ''}"


HOLDER = textwrap.dedent(
    """
    import sys
    from syncpoint.stores.postgres import PostgresStore
    store = PostgresStore(sys.argv[1])
    lock = store.lock("job", "20240101-000000-bbbbbb")
    print("locked", flush=True)
    sys.stdin.read()  # hold until killed (or stdin closes)
    """
)


# -- locks across processes -----------------------------------------------------------------------------
def test_a_second_process_is_refused_and_kill_9_frees_the_lock_at_once(pg_schema_url):
    store = PostgresStore(pg_schema_url, retry_for=3)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, pg_schema_url],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_for_line(holder, "locked")
        with pytest.raises(JobLocked) as caught:
            store.lock("job")
        named = caught.value.holder
        assert named is not None
        assert (named.pid, named.host, named.run_id) == (holder.pid, socket.gethostname(), "20240101-000000-bbbbbb")
        assert f"pid {holder.pid} on {socket.gethostname()}" in str(caught.value)
        assert caught.value.exit_code == 75
        assert store.lock_holder("job") == named

        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
        killed = time.monotonic()
        lock = None
        while lock is None:  # the server sees the closed socket; poll, bounded
            try:
                lock = store.lock("job", "20240101-000000-cccccc")
            except JobLocked:
                assert time.monotonic() - killed < 5, "the dead holder's lock was not released within 5 s"
                time.sleep(0.01)
        assert time.monotonic() - killed < 5
        now_held = store.lock_holder("job")
        assert now_held is not None and now_held.pid == os.getpid()
        lock.release()
        assert store.lock_holder("job") is None
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        store.close()


def test_a_stale_holder_row_is_not_trusted(pg_url, pg_schema_url):
    store = PostgresStore(pg_schema_url)
    with store.lock("job", "20240101-000000-dddddd"):
        pass
    with psycopg.connect(pg_url, autocommit=True) as conn:  # a row left behind, as after a crash
        conn.execute(
            sql.SQL("INSERT INTO {} VALUES ('job', 'ghost', 1, 'x', NULL, 1)").format(
                sql.Identifier(store.schema, "locks")
            )
        )
    assert store.lock_holder("job") is None
    with store.lock("job") as lock:
        assert lock is not None
    store.close()


def test_the_loser_of_a_race_names_a_holder_that_has_just_taken_the_lock(pg_url, pg_schema_url):
    """The winner takes the advisory lock, then writes its name: a loser that asks in between is answered
    with the name once it is there (within a second), not with "it has not written its name yet"."""
    store = PostgresStore(pg_schema_url)
    store.lock("job").release()  # the schema exists
    key = pgm.advisory_key(store.schema, "job")
    asked = "l.locktype = 'advisory'"  # a line of the store's lock-holder query

    def name_after_the_loser_asked(holder: psycopg.Connection) -> None:
        with psycopg.connect(pg_url, autocommit=True) as watcher:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                seen = watcher.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND pid <> %s "
                    "AND strpos(query, %s) > 0", (holder.info.backend_pid, asked)).fetchone()
                if seen and seen[0]:
                    break
            holder.execute(store.queries.lock_write, ("job", "racer", 4242, "2026-12-01T00:00:00", None))

    with psycopg.connect(pg_url, autocommit=True) as holder:
        assert holder.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone() == (True,)
        namer = threading.Thread(target=name_after_the_loser_asked, args=(holder,))
        namer.start()
        try:
            with pytest.raises(JobLocked) as caught:
                store.lock("job")
        finally:
            namer.join(timeout=15)
        assert caught.value.holder is not None and (caught.value.holder.host, caught.value.holder.pid) == (
            "racer", 4242), str(caught.value)
        assert "pid 4242 on racer" in str(caught.value)
    store.close()


# -- lost connections -----------------------------------------------------------------------------------
def test_apply_and_reads_survive_terminated_backends(pg_url, pg_schema, caplog):
    app = f"sp_test_{uuid.uuid4().hex[:8]}"
    url = with_query(via(pg_url, urlsplit(pg_url).port or 5432), schema=pg_schema, application_name=app)
    store = PostgresStore(url, retry_for=10)
    run_id = "20240101-000000-aaaaaa"
    store.apply(run_and_task(run_id))
    ids = [uuid.uuid4().hex for _ in range(600)]
    store.apply(marks(run_id, ids[:200]))
    caplog.set_level(logging.WARNING)
    for chunk in (ids[200:400], ids[400:600]):
        assert terminate(pg_url, app) >= 1
        store.apply(marks(run_id, chunk))  # retried on a new connection
    assert terminate(pg_url, app) >= 1
    assert store.ledger_counts(run_id, "t1").ok == 600  # a read retried too
    assert store.ledger_lookup(run_id, "t1", ids) == dict.fromkeys(ids, ItemOutcome.OK)
    assert "retrying" in caplog.text
    assert SECRET not in caplog.text
    store.close()


def test_lock_check_retakes_a_lock_whose_connection_died(pg_url, pg_schema):
    app = f"sp_test_{uuid.uuid4().hex[:8]}"
    url = with_query(pg_url, schema=pg_schema, application_name=app)
    store = PostgresStore(url, retry_for=5)
    other = PostgresStore(with_query(pg_url, schema=pg_schema))
    lock = store.lock("job", "20240101-000000-aaaaaa")
    assert lock.check() is True
    assert terminate(pg_url, app) >= 1  # the server drops the lock with the session
    assert lock.check() is False  # ... and check() took it again
    assert store.lock_holder("job") is not None
    with pytest.raises(JobLocked):
        other.lock("job")

    assert terminate(pg_url, app) >= 1
    stolen = None
    deadline = time.monotonic() + 5
    while stolen is None:
        try:
            stolen = other.lock("job", "20240101-000000-eeeeee")
        except JobLocked:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    with pytest.raises(JobLocked) as caught:
        lock.check()
    assert caught.value.holder is not None and caught.value.holder.run_id == "20240101-000000-eeeeee"
    stolen.release()
    lock.release()
    store.close()
    other.close()


def test_server_gone_then_back(pg_url, pg_schema, proxy, caplog):
    url = with_query(via(pg_url, proxy.port), schema=pg_schema)
    store = PostgresStore(url, retry_for=1)
    run_id = "20240101-000000-aaaaaa"
    store.apply(run_and_task(run_id))
    store.apply(marks(run_id, ["a"]))
    caplog.set_level(logging.WARNING)

    proxy.stop()
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as caught:
        store.apply(marks(run_id, ["b"]))
    assert time.monotonic() - started < 10
    message = str(caught.value)
    assert "\n" not in message
    assert SECRET not in message and "***" in message
    assert f"127.0.0.1:{proxy.port}" in message and "within 1 s" in message
    with pytest.raises(StoreUnavailable):
        store.get_run(run_id)

    proxy.start()  # the server is back: the next calls reconnect within their retry window
    store.retry_for = 15
    store.apply(marks(run_id, ["c"]))
    assert store.ledger_lookup(run_id, "t1", ["a", "b", "c"]) == {"a": ItemOutcome.OK, "c": ItemOutcome.OK}
    assert SECRET not in caplog.text
    store.close()


def test_unreachable_server_at_open_names_the_store_and_masks_the_password():
    url = f"postgresql://alice:{SECRET}@127.0.0.1:1/db?schema=crawler"
    for opener in (PostgresStore, open_store):
        with pytest.raises(StoreUnavailable) as caught:
            opener(url)
        message = str(caught.value)
        assert "\n" not in message
        assert SECRET not in message
        assert "postgresql://alice:***@127.0.0.1:1/db?schema=crawler" in message
        assert "is the server running? check the URL" in message
    target = pgm.parse_url(url)
    assert target.location == "postgresql://alice:***@127.0.0.1:1/db?schema=crawler"
    assert SECRET not in repr(target)
    with pytest.raises(StoreUnavailable) as caught:
        pgm.status(url)
    assert SECRET not in str(caught.value)


def test_location_masks_the_password_and_names_the_schema(pg_url, pg_schema, proxy):
    store = PostgresStore(with_query(via(pg_url, proxy.port), schema=pg_schema, sslmode="disable"))
    assert SECRET not in store.location
    assert store.location == f"postgresql://postgres:***@127.0.0.1:{proxy.port}/test?sslmode=disable&schema={pg_schema}"
    store.close()


# -- migrations and schemas -----------------------------------------------------------------------------
SHIPPED = [m.name for m in pgm.available()]  # 001_initial, 002_progress_samples, ...
LATEST = pgm.available()[-1].version


def test_migrate_twice_is_a_no_op_and_status_reports(pg_url, pg_schema):
    assert SHIPPED[:2] == ["001_initial", "002_progress_samples"]
    fresh = pgm.status(pg_url, pg_schema)
    assert (fresh.applied, fresh.pending, fresh.current) == ([], SHIPPED, None)
    assert not fresh.up_to_date and not fresh.too_new and fresh.latest >= 2
    assert pgm.migrate(with_query(pg_url, schema=pg_schema)) == SHIPPED
    assert pgm.migrate(pg_url, pg_schema) == []
    done = pgm.status(pg_url, pg_schema)
    assert (done.applied, done.pending, done.current) == (SHIPPED, [], LATEST)
    assert done.up_to_date
    PostgresStore(pg_url, schema=pg_schema).close()  # opening a migrated schema migrates nothing
    assert pgm.status(pg_url, pg_schema) == done


def test_concurrent_migrations_do_not_collide(pg_url, pg_schema):
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def go() -> None:
        try:
            results.append(pgm.migrate(pg_url, pg_schema))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=go) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(results) == [[], [], [], SHIPPED]


def test_pending_migrations_from_a_directory(pg_url, pg_schema, tmp_path):
    for shipped in (Path(pgm.__file__).parent / "migrations").glob("*.sql"):
        (tmp_path / shipped.name).write_text(shipped.read_text())
    extra = f"{LATEST + 1:03d}_extra"
    (tmp_path / f"{extra}.sql").write_text("CREATE TABLE {schema}.extra (x integer);\n")
    (tmp_path / "README.txt").write_text("not a migration")
    assert pgm.migrate(pg_url, pg_schema) == SHIPPED
    found = pgm.status(pg_url, pg_schema, directory=tmp_path)
    assert (found.applied, found.pending, found.latest) == (SHIPPED, [extra], LATEST + 1)
    assert pgm.migrate(pg_url, pg_schema, directory=tmp_path) == [extra]
    assert pgm.migrate(pg_url, pg_schema, directory=tmp_path) == []
    # the shipped code does not know the extra migration: the schema is newer than it
    with pytest.raises(SchemaTooNew, match="newer syncpoint"):
        PostgresStore(pg_url, schema=pg_schema)


def test_a_schema_migrated_by_a_newer_syncpoint_is_refused(pg_url, pg_schema):
    PostgresStore(pg_url, schema=pg_schema).close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("INSERT INTO {} (version, name) VALUES (999, '999_future')").format(
                sql.Identifier(pg_schema, "schema_migrations")
            )
        )
    with pytest.raises(SchemaTooNew) as caught:
        PostgresStore(pg_url, schema=pg_schema)
    assert "was migrated by a newer syncpoint" in str(caught.value) and "999_future" in str(caught.value)
    with pytest.raises(SchemaTooNew):
        pgm.migrate(pg_url, pg_schema)
    assert pgm.status(pg_url, pg_schema).too_new


def test_migrate_false_refuses_a_pending_schema(pg_url, pg_schema):
    with pytest.raises(StoreError, match="syncpoint db migrate"):
        PostgresStore(pg_url, schema=pg_schema, migrate=False)
    with pytest.raises(StoreError, match="syncpoint db migrate"):
        PostgresStore(with_query(pg_url, schema=pg_schema, migrate="false"))
    pgm.migrate(pg_url, pg_schema)
    PostgresStore(pg_url, schema=pg_schema, migrate=False).close()


def test_custom_schema_name(pg_url, pg_schemas):
    name = pg_schemas.new("crawler")
    store = open_store(with_query(pg_url, schema=name))
    assert isinstance(store, PostgresStore) and store.schema == name
    assert store.location.endswith(f"schema={name}")
    store.apply(run_and_task())
    with psycopg.connect(pg_url) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (name,))}
    assert {"runs", "tasks", "phases", "ledger", "state", "locks", "schema_migrations"} <= tables
    assert len(store.list_runs()) == 1
    store.close()


@pytest.mark.parametrize("bad", ["Crawler", "a-b", "1abc", "pg_mine", 'x"; DROP SCHEMA public; --', "", "a" * 64])
def test_bad_schema_names_are_refused(bad):
    with pytest.raises(InvalidName):
        PostgresStore(NOWHERE, schema=bad)


def test_values_are_never_sql(pg_url, pg_schema):
    store = PostgresStore(pg_url, schema=pg_schema)
    evil = "x'); DROP TABLE runs; --"
    now = utcnow()
    store.apply(ChangeSet(
        runs=[RunRecord(evil, "job", RunStatus.RUNNING, {evil: evil}, evil, now, now, key=evil)],
        tasks=[TaskRecord(evil, evil, 0, cursor=evil)],
        ledger=[LedgerEntry(evil, evil, evil, False, evil)],
        state=[StateEntry("job", evil, evil, now)],
    ))
    assert store.list_runs(key=evil)[0].run_id == evil
    assert [e.item_id for e in store.iter_ledger(evil, evil)] == [evil]
    store.close()


# -- apply_in: the caller's transaction -----------------------------------------------------------------
def test_apply_in_commits_and_rolls_back_with_the_callers_transaction(pg_url, pg_schema):
    store = PostgresStore(pg_url, schema=pg_schema)
    store.apply(run_and_task("20240101-000000-aaaaaa"))
    table = sql.Identifier(pg_schema, "user_rows")
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE TABLE {} (id text PRIMARY KEY)").format(table))
        with conn.transaction():
            conn.execute(sql.SQL("INSERT INTO {} VALUES ('kept')").format(table))
            store.apply_in(conn, marks("20240101-000000-aaaaaa", [f"k{i}" for i in range(100)]))
            assert store.ledger_counts("20240101-000000-aaaaaa", "t1").ok == 0  # not committed yet
        assert store.ledger_counts("20240101-000000-aaaaaa", "t1").ok == 100

        with pytest.raises(RuntimeError), conn.transaction():
            conn.execute(sql.SQL("INSERT INTO {} VALUES ('lost')").format(table))
            store.apply_in(conn, marks("20240101-000000-aaaaaa", ["lost"]))
            raise RuntimeError("the user's batch failed")
        assert store.ledger_lookup("20240101-000000-aaaaaa", "t1", ["lost"]) == {}

        with conn.transaction():  # our failure rolls back our part only; the caller's rows still commit
            conn.execute(sql.SQL("INSERT INTO {} VALUES ('mine')").format(table))
            with pytest.raises(StoreError, match="unknown task"):
                store.apply_in(conn, ChangeSet(ledger=[LedgerEntry("20240101-000000-aaaaaa", "nope", "x", True)]))
        rows = {r[0] for r in conn.execute(sql.SQL("SELECT id FROM {}").format(table))}
        assert rows == {"kept", "mine"}

        with pytest.raises(StoreError, match="open transaction"):
            store.apply_in(conn, marks("20240101-000000-aaaaaa", ["x"]))  # autocommit, no transaction
    with psycopg.connect(pg_url) as conn:  # not autocommit: the caller commits
        store.apply_in(conn, marks("20240101-000000-aaaaaa", ["late"]))
        conn.commit()
    assert store.ledger_lookup("20240101-000000-aaaaaa", "t1", ["late"]) == {"late": ItemOutcome.OK}
    with pytest.raises(TypeError):
        store.apply_in(object(), ChangeSet())
    store.close()


# -- ledger reads that do not depend on statistics ------------------------------------------------------
def _ledger_rows_read(plan: dict[str, object]) -> int:
    """The most rows any scan of the ledger in ``plan`` produced, over all its loops."""
    here = 0
    if plan.get("Relation Name") == "ledger" or plan.get("Index Name") == "ledger_pkey":
        here = int(plan["Actual Rows"]) * int(plan["Actual Loops"])  # type: ignore[call-overload]
    children = plan.get("Plans", [])
    assert isinstance(children, list)
    return max([here, *(_ledger_rows_read(child) for child in children)])


def test_ledger_reads_use_the_key_on_a_table_without_statistics(pg_url, pg_schema):
    """Issue 11 item 6: with autovacuum off nothing ANALYZEs a fresh ledger, and the planner believed the task
    had a handful of rows: each lookup of 500 IDs read (and filtered) all of the task's rows, and each page of
    ``iter_ledger`` sorted them all. The store's queries must read only the rows they return."""
    run_id, n = "20240101-000000-aaaaaa", 20_000
    store = PostgresStore(pg_url, schema=pg_schema)
    store.apply(run_and_task(run_id))
    ids = sorted(f"id-{uuid.uuid4().hex}" for _ in range(n))
    with psycopg.connect(pg_url, autocommit=True) as conn:
        ledger = sql.Identifier(pg_schema, "ledger")
        conn.execute(sql.SQL("ALTER TABLE {} SET (autovacuum_enabled = false)").format(ledger))
        task_id = conn.execute(sql.SQL("SELECT id FROM {}").format(sql.Identifier(pg_schema, "tasks"))).fetchone()
        assert task_id is not None
        with conn.cursor().copy(sql.SQL("COPY {} (task_id, kind, item_id, outcome) FROM STDIN").format(ledger)) as cp:
            for item_id in ids:
                cp.write_row((task_id[0], 0, item_id, 0))
        probe = ids[::200] + [f"new-{i}" for i in range(400)]
        executed: list[tuple[bytes, tuple[object, ...]]] = []  # every read the store sends, as it sends it
        fetch = store._fetch
        store._fetch = lambda query, args: executed.append((query, tuple(args))) or fetch(query, args)  # type: ignore[method-assign]
        assert store.ledger_lookup(run_id, "t1", probe) == {i: ItemOutcome.OK for i in ids[::200]}
        assert [e.item_id for e in store.iter_ledger(run_id, "t1")] == ids
        assert len(executed) == 1 + n // 5000 + 1
        for query, args in executed:
            [[plan]] = conn.execute(b"EXPLAIN (ANALYZE, FORMAT JSON) " + query, args).fetchone()
            read = _ledger_rows_read(plan["Plan"])
            wanted = len(probe) if any(isinstance(a, list) for a in args) else 5000  # a lookup, or a page
            assert read <= wanted, f"read {read:,} ledger rows for {wanted:,}: {query.decode()}"
    store.close()

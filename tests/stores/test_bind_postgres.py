"""``Run.bind``: the checkpoint commits inside the destination's own PostgreSQL transaction."""

from __future__ import annotations

import psycopg
import pytest

import syncpoint


def _rows(url: str, schema: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute(f'SELECT id FROM "{schema}".dest ORDER BY id')]


def test_rows_and_checkpoint_commit_together(pg_url: str, pg_schema: str, pg_schema_url: str) -> None:
    job = syncpoint.Job("bound", store=pg_schema_url,
                        save_policy=syncpoint.SavePolicy(every_items=3, every_pages=10**6, every_seconds=3600))
    with psycopg.connect(pg_url) as conn:
        conn.execute(f'CREATE TABLE IF NOT EXISTS "{pg_schema}".dest (id TEXT PRIMARY KEY)')
        conn.commit()
        with pytest.raises(RuntimeError, match="dies between"), job.run() as run:
            run.bind(conn)
            task = run.task("t")
            for i in range(7):
                conn.execute(f'INSERT INTO "{pg_schema}".dest VALUES (%s)', (str(i),))
                task.item_done(str(i))
            conn.execute(f'INSERT INTO "{pg_schema}".dest VALUES (%s)', ("half-written",))
            raise RuntimeError("the sync dies between two safe points")
    assert run.exit_code == 1
    # Items 0-5 committed with their checkpoint (two commits of 3); item 6 and the half-written row were
    # rolled back together with the progress that would have covered item 6.
    assert _rows(pg_url, pg_schema) == ["0", "1", "2", "3", "4", "5"]
    stored = job.store.get_tasks(run.run_id)[0]
    assert stored.ok == 6
    assert set(job.store.ledger_lookup(run.run_id, "t", [str(i) for i in range(7)])) == {str(i) for i in range(6)}
    assert job.store.get_run(run.run_id).status is syncpoint.RunStatus.FAILED  # type: ignore[union-attr]
    job.close()


def test_bind_needs_a_store_that_can_join(tmp_path: object) -> None:
    job = syncpoint.Job("plain", store=f"sqlite:{tmp_path}/x.db")
    with job.run() as run, pytest.raises(syncpoint.UsageError, match="cannot commit inside another transaction"):
        run.bind(object())
    assert run.exit_code == 0


def test_store_connect_gives_a_connection_of_ones_own_to_bind(pg_schema: str, pg_schema_url: str) -> None:
    """``job.store.connect()``: the store's database without knowing its URL, not in autocommit (as ``bind``
    needs), the driver's options passed on; rows and checkpoint then commit together through it."""
    job = syncpoint.Job("own-connection", store=pg_schema_url)
    with job.store.connect(options="-c statement_timeout=4321") as conn:
        assert not conn.autocommit
        assert conn.execute("SHOW statement_timeout").fetchone() == ("4321ms",)
        conn.execute(f'CREATE TABLE "{pg_schema}".dest (id TEXT PRIMARY KEY)')
        conn.commit()
        with job.run() as run:
            run.bind(conn)
            task = run.task("t")
            conn.execute(f'INSERT INTO "{pg_schema}".dest VALUES (%s)', ("a",))
            task.item_done("a")
    assert run.exit_code == 0 and conn.closed
    assert job.store.get_tasks(run.run_id)[0].ok == 1
    with job.store.connect() as other:
        assert other.execute(f'SELECT id FROM "{pg_schema}".dest').fetchall() == [("a",)]
    job.close()


def test_store_connect_is_postgresql_only(tmp_path: object) -> None:
    with syncpoint.open_store(f"sqlite:{tmp_path}/x.db") as store, \
            pytest.raises(syncpoint.UsageError, match="need the PostgreSQL store"):
        store.connect()

"""PostgreSQL faults: the server terminates the job's backends mid-run (pg_terminate_backend).

- the store's pool and the lock reconnect within ``?retry=``; the run goes on and completes with every
  record (or, if it cannot, stops with one line and exit 1) — never a traceback;
- the job's lock connection is terminated and another process starts the job meanwhile: the two never
  write the same run at once (regression: the lost advisory lock was never re-checked);
- the destination connection bound with ``Run.bind`` is terminated: one line, exit 1, nothing half
  committed, and a resume completes (regression: a traceback from the rollback of a dead connection).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from crashloop import HOOKED_JOB, ROOT, new_pg_schema, pg_exec, source_ids
from helpers import PG_URL, drop_pg_schema, with_query

import syncpoint

pytestmark = pytest.mark.postgres
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
sys.path.insert(0, str(ROOT / "tests"))
from helpers import Child  # noqa: E402


@pytest.fixture
def schema(pg_ready: str) -> object:
    name = new_pg_schema()
    yield name
    drop_pg_schema(name)


def _url(schema: str, app: str) -> str:
    return with_query(PG_URL, schema=schema, retry="5", application_name=app)


def _terminate(app: str) -> int:
    rows = pg_exec("SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity WHERE application_name = %s",
                   app, fetch=True)
    return int(rows[0][0])  # type: ignore[arg-type]


def _job(url: str, dest: Path, *extra: str) -> list[str]:
    return [str(HOOKED_JOB), "--mode", "items", "--total", "100", "--page-size", "10", "--commit-items", "10",
            "--store", url, "--dest", str(dest), "--no-progress", *extra]


def test_terminated_backends_mid_run_reconnect_and_complete(schema: str, tmp_path: Path) -> None:
    app = f"spf_{uuid.uuid4().hex[:12]}"
    dest = tmp_path / "dest.txt"
    child = Child(_job(_url(schema, app), dest, "--gate"), env=ENV)
    child.expect("READY")
    for page in range(3):
        child.send()
        assert child.expect("PAGE") == f"PAGE {page}"
    assert _terminate(app) >= 1  # the pool's connections and the lock's
    assert child.proc.stdin is not None
    child.proc.stdin.close()  # the gate stops waiting: the run goes on through the reconnect
    child.proc.stdin = None
    code, err = child.finish()
    assert "Traceback" not in err, err
    assert code == 0, err
    lines = dest.read_text().split()
    assert set(lines) == set(source_ids(100)) and len(lines) == 100


def test_a_lost_lock_is_rechecked_before_the_next_commit(schema: str, tmp_path: Path) -> None:
    """Regression: a run whose lock connection was terminated went on committing without the lock,
    while a second process could take the lock and run the same job: two writers."""
    first_app, dest = f"spf_{uuid.uuid4().hex[:12]}", tmp_path / "dest.txt"
    first = Child(_job(_url(schema, first_app), dest, "--gate", "--resume"), env=ENV)
    first.expect("READY")
    first.send()
    first.expect("PAGE 0")
    # Terminate only the lock's backend (the one holding the advisory lock).
    killed = pg_exec(
        "SELECT count(pg_terminate_backend(a.pid, 5000)) FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid "
        "WHERE a.application_name = %s AND l.locktype = 'advisory'", first_app, fetch=True)
    assert killed[0][0] == 1
    second = subprocess.run([sys.executable, *_job(_url(schema, "spf_second"), dest, "--resume")],
                            capture_output=True, text=True, timeout=120, env=ENV, stdin=subprocess.DEVNULL)
    assert second.returncode == 0, second.stderr  # the lock was free: the second process ran the job
    assert first.proc.stdin is not None
    first.proc.stdin.close()
    first.proc.stdin = None
    code, err = first.finish()
    assert "Traceback" not in err, err
    # The first process must notice that it lost the lock and that the run moved on without it.
    assert code in (1, 75), err
    assert "lock" in err
    store = syncpoint.Job("counting", store=_url(schema, "spf_check")).store
    try:
        runs = store.list_runs("counting")
        assert len(runs) == 1 and runs[0].status is syncpoint.RunStatus.COMPLETED  # not overwritten
        assert all(t.status is syncpoint.TaskStatus.COMPLETED for t in store.get_tasks(runs[0].run_id))
        assert store.ledger_counts(runs[0].run_id, "items").ok == 100
    finally:
        store.close()


def test_bound_destination_connection_terminated(schema: str) -> None:
    """Regression: when the bound connection died, the rollback of the dead connection raised a raw
    psycopg error out of the run (a traceback) instead of one line and exit 1."""
    url = with_query(PG_URL, schema=schema, retry="2")
    job = syncpoint.Job("bound", store=url,
                        save_policy=syncpoint.SavePolicy(every_items=5, every_pages=10**6, every_seconds=3600))
    insert = f'INSERT INTO "{schema}".dest (job, id) VALUES (%s, %s)'
    with psycopg.connect(PG_URL) as conn:
        with job.run() as run:
            run.bind(conn)
            task = run.task("t")
            for i in range(7):
                conn.execute(insert, ("bound", str(i)))
                task.item_done(str(i))
            pg_exec("SELECT pg_terminate_backend(%s, 5000)", conn.info.backend_pid)
        # The final commit in __exit__ met the dead connection: one error, exit 1, no exception.
        assert run.exit_code == 1
        assert "bound destination connection failed" in str(run.error)
    rows = sorted(str(r[0]) for r in pg_exec(f'SELECT id FROM "{schema}".dest', fetch=True))
    assert rows == ["0", "1", "2", "3", "4"]  # committed with their checkpoint; 5 and 6 rolled back
    assert set(job.store.ledger_lookup(run.run_id, "t", [str(i) for i in range(7)])) == set(rows)
    job.close()

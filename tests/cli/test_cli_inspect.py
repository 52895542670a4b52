"""Inspection creates, migrates and writes nothing (issue 11 items 7 and 8).

A read-only command (``runs list/show``, ``status``, ``state show``, ``export``, ``db status``) on a store
that does not exist — a typo in ``?schema=``, the wrong directory — ends with exit 64 and one line naming
it and ``syncpoint db migrate``, and leaves no schema, file or directory behind. On a store whose files
cannot be written (another user's, a read-only mount) the same commands work. Real subprocesses; the real
PostgreSQL server.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import psycopg
import pytest
from cli_helpers import Holder, Stores, need, populate, sp
from helpers import PG_URL, read_only_directory

INSPECTION = [
    ("runs", "list"),
    ("runs", "show", "20240101-000000-aaaaaa"),
    ("status",),
    ("state", "show", "alpha"),
    ("export", "-o", "{tmp}/dump.jsonl"),
]
WRITERS = [("runs", "delete", "20240101-000000-aaaaaa", "--yes"), ("runs", "cleanup", "--keep", "1", "--yes"),
           ("state", "reset", "alpha", "--yes")]


def one_line_64(proc: subprocess.CompletedProcess[str], names: str) -> None:
    assert proc.returncode == 64, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("syncpoint: error: "), proc.stderr
    assert names in proc.stderr and "syncpoint db migrate" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def schema_exists(name: str) -> bool:
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (name,)).fetchone() is not None


@pytest.mark.parametrize("kind", ["sqlite", "json", "postgres"])
def test_commands_never_create_a_missing_store(kind: str, stores: Stores, tmp_path: Path) -> None:
    need(kind)
    url = stores.url(kind)
    where = url.split("schema=")[1] if kind == "postgres" else url.split(":", 1)[1]
    commands = [*INSPECTION, *WRITERS] + ([("db", "status")] if kind == "postgres" else [])
    for command in commands:
        args = [a.replace("{tmp}", str(tmp_path)) for a in command]
        one_line_64(sp("--store", url, *args), where)
        if kind == "postgres":
            assert not schema_exists(where), f"{command} created schema {where}"
        else:
            assert not Path(where).exists(), f"{command} created {where}"
    assert not (tmp_path / "dump.jsonl").exists()
    created = sp("--store", url, "db", "migrate")  # the documented way to create it ahead of a first run
    assert created.returncode == 0, created.stderr
    listed = sp("--store", url, "runs", "list", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == [], listed.stderr


def test_postgres_inspection_names_an_empty_schema_and_leaves_it_empty(stores: Stores) -> None:
    url = stores.url("postgres")
    schema = url.split("schema=")[1]
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    proc = sp("--store", url, "runs", "list")
    one_line_64(proc, f"schema {schema} has no syncpoint store")
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = %s", (schema,)).fetchone()
    assert tables == (0,)


# -- a store that cannot be written -------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["sqlite", "json"])
def test_a_read_only_store_can_be_inspected(kind: str, stores: Stores, tmp_path: Path) -> None:
    url = stores.url(kind)
    ids = populate(url)
    directory = Path(url.split(":", 1)[1])
    directory = directory.parent if kind == "sqlite" else directory
    before = sorted(p.name for p in directory.rglob("*"))
    with read_only_directory(directory):
        listed = sp("--store", url, "runs", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        assert {r["run_id"] for r in json.loads(listed.stdout)} == set(ids.values())
        shown = sp("--store", url, "runs", "show", ids["alpha-completed"], "--json")
        assert shown.returncode == 0 and json.loads(shown.stdout)["run"]["run_id"] == ids["alpha-completed"]
        assert sp("--store", url, "status").returncode == 0
        state = sp("--store", url, "state", "show", "alpha", "--json")
        assert state.returncode == 0 and {e["key"] for e in json.loads(state.stdout)} == {"cursor", "last_id"}
        dump = sp("--store", url, "export", "-o", str(tmp_path / "dump.jsonl"))
        assert dump.returncode == 0, dump.stderr
    assert sorted(p.name for p in directory.rglob("*")) == before  # nothing created beside it
    assert ids["beta-failed"] in (tmp_path / "dump.jsonl").read_text()


def test_a_read_only_sqlite_store_with_a_live_run_can_be_inspected(stores: Stores) -> None:
    """The writer's -wal and -shm exist and cannot be written by the reader: SQLite reads them read-only
    and sees what the live run committed; ``status`` finds its lock through a read-only descriptor."""
    url = stores.url("sqlite")
    populate(url)
    holder = Holder(url, "alpha")
    try:
        with read_only_directory(Path(url.split(":", 1)[1]).parent):
            proc = sp("--store", url, "status", "--json")
            assert proc.returncode == 0, proc.stderr
            [entry] = json.loads(proc.stdout)["runs"]
            assert entry["run_id"] == holder.run_id and entry["live"] is True
            assert entry["lock"]["pid"] == holder.proc.pid and entry["records"] == 30
            listed = sp("--store", url, "runs", "list", "--json")
            assert listed.returncode == 0 and holder.run_id in {r["run_id"] for r in json.loads(listed.stdout)}
        holder.release()
    finally:
        holder.kill()


@pytest.mark.parametrize("kind", ["sqlite", "json"])
def test_inspection_leaves_no_files_behind(kind: str, stores: Stores, tmp_path: Path) -> None:
    """A read-only open that can write must still clean up after itself (SQLite: ``-wal``/``-shm``)."""
    url = stores.url(kind)
    populate(url)
    directory = Path(url.split(":", 1)[1])
    directory = directory.parent if kind == "sqlite" else directory
    before = sorted(str(p) for p in directory.rglob("*"))
    for command in (("runs", "list"), ("runs", "show", "../x"), ("status",), ("state", "show", "alpha")):
        assert sp("--store", url, *command).returncode in (0, 64)
        assert sorted(str(p) for p in directory.rglob("*")) == before, command

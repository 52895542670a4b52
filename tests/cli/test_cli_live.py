"""A run that a live process works on is never deleted or cleaned up; its job's lock means exit 75.

The live run is held by ``apps/hold_run.py`` in another process, synchronised through its pipes only.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cli_helpers import Holder, clean_env, opened, populate, sp
from click.testing import Result

from syncpoint.model import RunStatus


@pytest.fixture
def holder(store_url: str) -> Iterator[Holder]:
    populate(store_url)
    held = Holder(store_url, "alpha")  # a live run of a job that also has finished runs
    try:
        yield held
    finally:
        held.kill()


def test_delete_refuses_a_live_run_exit_75(store_url: str, holder: Holder) -> None:
    proc = sp("--store", store_url, "runs", "delete", holder.run_id, "--yes")
    assert proc.returncode == 75, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("syncpoint: error: ")
    assert holder.run_id in proc.stderr and f"pid {holder.proc.pid}" in proc.stderr
    with opened(store_url) as store:
        assert store.get_run(holder.run_id) is not None
    holder.release()
    proc = sp("--store", store_url, "runs", "delete", holder.run_id, "--yes")
    assert proc.returncode == 0, proc.stderr
    with opened(store_url) as store:
        assert store.get_run(holder.run_id) is None


def test_cleanup_never_removes_a_live_run(store_url: str, holder: Holder, invoke: Callable[..., Result]) -> None:
    result = invoke("--store", store_url, "runs", "cleanup", "--keep", "0", "--include-resumable", "--yes", "--json")
    assert result.exit_code == 0, result.stderr
    removed = {r["run_id"] for r in json.loads(result.stdout)["removed"]}
    assert holder.run_id not in removed and len(removed) == 4
    result = invoke("--store", store_url, "runs", "cleanup", "--keep", "0", "--status", "running", "--yes")
    assert result.exit_code == 0 and "deleted 0 run(s)" in result.stdout
    with opened(store_url) as store:
        assert [r.run_id for r in store.list_runs()] == [holder.run_id]
    holder.release()


def test_status_and_show_see_the_live_run(store_url: str, holder: Holder, invoke: Callable[..., Result]) -> None:
    proc = sp("--store", store_url, "status", "--json")
    assert proc.returncode == 0, proc.stderr
    [entry] = json.loads(proc.stdout)["runs"]
    assert entry["run_id"] == holder.run_id and entry["status"] == RunStatus.RUNNING.value
    assert entry["live"] is True and entry["lock"]["pid"] == holder.proc.pid
    assert entry["current"] == [{"task": "pages", "cursor": {"page": 3}, "records": 30, "ok": 0, "failed": 0,
                                 "total": 10, "updated_at": entry["current"][0]["updated_at"]}]
    assert entry["tasks_done"] == 0 and entry["tasks_total"] == 1 and entry["records"] == 30
    table = invoke("--store", store_url, "status", "alpha")
    assert holder.run_id in table.stdout and f"pid {holder.proc.pid}" in table.stdout
    shown = json.loads(invoke("--store", store_url, "runs", "show", holder.run_id, "--json").stdout)
    assert shown["live"] is True
    holder.release()
    after = json.loads(invoke("--store", store_url, "status", "--json").stdout)
    assert after["runs"] == []


def test_a_stale_run_beside_the_live_one_is_not_live_anywhere(store_url: str, holder: Holder,
                                                               invoke: Callable[..., Result]) -> None:
    """The job's lock holder works on its own run: an older run of the job still marked running (its process
    was killed, and the holder started a new run) is stale in ``status`` and ``runs show`` alike — the rule
    that lets ``runs delete`` remove it — not live because someone holds the job's lock."""
    from datetime import timedelta

    from syncpoint.model import RunRecord, utcnow
    from syncpoint.stores.base import ChangeSet

    then = utcnow() - timedelta(hours=1)
    stale = RunRecord("20200101-000000-aaaaaa", "alpha", RunStatus.RUNNING, {}, "d", then, then)
    with opened(store_url) as store:
        store.apply(ChangeSet(runs=[stale]))
    live = {e["run_id"]: e["live"] for e in json.loads(sp("--store", store_url, "status", "--json").stdout)["runs"]}
    assert live == {holder.run_id: True, stale.run_id: False}
    shown = invoke("--store", store_url, "runs", "show", stale.run_id, "--json")
    assert json.loads(shown.stdout)["live"] is False
    wide = {**clean_env(), "COLUMNS": "200"}
    text = " ".join(sp("--store", store_url, "runs", "show", stale.run_id, env=wide).stdout.split())
    assert "no — its process is gone" in text
    assert "no — stale, resume it" in " ".join(sp("--store", store_url, "status", "alpha", env=wide).stdout.split())
    deleted = sp("--store", store_url, "runs", "delete", stale.run_id, "--yes")
    assert deleted.returncode == 0, deleted.stderr


def test_state_reset_and_import_refuse_a_locked_job(store_url: str, holder: Holder, tmp_path: Path,
                                                   invoke: Callable[..., Result]) -> None:
    result = invoke("--store", store_url, "state", "reset", "alpha", "--yes")
    assert result.exit_code == 75 and "locked by" in result.stderr and result.stderr.count("\n") == 1
    with opened(store_url) as store:
        assert {e.key for e in store.get_state("alpha")} == {"cursor", "last_id", "bookmark"}
    source = f"sqlite:{tmp_path / 'other.db'}"
    populate(source)
    dump = tmp_path / "dump.jsonl"
    assert invoke("--store", source, "export", "-o", str(dump)).exit_code == 0
    result = invoke("import", str(dump), "--store", store_url, "--skip-existing")
    assert result.exit_code == 75 and "alpha" in result.stderr
    holder.release()

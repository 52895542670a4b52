"""Each command on each store (SQLite, JSON directory, PostgreSQL), through click's CliRunner and — for at
least one command per store — through a real ``python -m syncpoint`` subprocess."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from cli_helpers import opened, populate, sp
from click.testing import Result

import syncpoint
from syncpoint.model import RunStatus


@pytest.fixture
def data(store_url: str) -> dict[str, str]:
    return populate(store_url)


def as_json(result: Result) -> Any:
    assert result.exit_code == 0, result.output + result.stderr
    return json.loads(result.stdout)


def test_runs_list_json_subprocess(store_url: str, data: dict[str, str]) -> None:
    proc = sp("--store", store_url, "runs", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    runs = json.loads(proc.stdout)
    assert [r["run_id"] for r in runs] == [
        data["beta-interrupted"], data["beta-failed"], data["alpha-partial"], data["alpha-completed"]
    ]
    done = next(r for r in runs if r["run_id"] == data["alpha-completed"])
    assert done["status"] == "completed" and done["key"] == "2024-03-15"
    assert done["tasks_done"] == 3 and done["tasks_total"] == 3
    assert (done["items_ok"], done["items_failed"]) == (22, 3)
    assert done["records"] == 30 + 3 and done["attempts"] == 1 and done["duration_seconds"] >= 0
    assert done["params"] == {"who": "tëst", "depth": 2}


def test_runs_list_table_and_filters(store_url: str, data: dict[str, str], invoke: Callable[..., Result]) -> None:
    table = invoke("--store", store_url, "runs", "list")
    assert table.exit_code == 0, table.stderr
    for run_id in data.values():
        assert run_id in table.stdout
    assert "ok/failed" in table.stdout and "22/3" in table.stdout
    failed = as_json(invoke("--store", store_url, "runs", "list", "--status", "failed", "--json"))
    assert [r["run_id"] for r in failed] == [data["beta-failed"]]
    alpha = as_json(invoke("--store", store_url, "runs", "list", "--job", "alpha", "--limit", "1", "--json"))
    assert [r["run_id"] for r in alpha] == [data["alpha-partial"]]
    keyed = as_json(invoke("--store", store_url, "runs", "list", "--key", "2024-03-15", "--json"))
    assert [r["run_id"] for r in keyed] == [data["alpha-completed"]]


def test_runs_show(store_url: str, data: dict[str, str], invoke: Callable[..., Result]) -> None:
    shown = as_json(invoke("--store", store_url, "runs", "show", data["alpha-completed"], "--json", "--failed", "1"))
    assert isinstance(shown, dict)
    run = shown["run"]
    assert run["config"] == {"base": "https://example.org", "n": [1, 2]}
    assert len(run["config_digest"]) == 16 and run["params"]["who"] == "tëst"
    tasks = {t["name"]: t for t in shown["tasks"]}
    assert tasks["pages"]["cursor"] == {"page": 3, "token": "ab/c"} and tasks["pages"]["total"] == 3
    items = tasks["items:ü/1"]
    assert items["failed"] == 3 and len(items["failed_items"]) == 1 and items["failed_items_truncated"]
    assert items["failed_items"][0] == {"item_id": "id-003", "error": "HTTP 503", "retryable": False}
    assert [p["name"] for p in shown["phases"]] == ["discovery", "pulls"]
    assert shown["live"] is False and shown["error"] == {"message": None, "retryable": None}
    assert "***" not in shown["location"] or "postgres" in store_url

    failed = as_json(invoke("--store", store_url, "runs", "show", data["beta-failed"], "--json"))
    assert isinstance(failed, dict)
    assert failed["error"]["retryable"] is True
    boom = next(t for t in failed["tasks"] if t["name"] == "boom")
    assert boom["error"] == "server said no" and boom["retryable"] is True
    assert boom["failed_items"] == [{"item_id": "x1", "error": "bad record", "retryable": False}]

    text = invoke("--store", store_url, "runs", "show", data["beta-failed"])
    assert text.exit_code == 0
    for needle in ("config digest", "server said no (retryable)", "bad record", "checkpoints", "never"):
        assert needle in text.stdout


def test_runs_delete_asks_then_deletes(store_url: str, data: dict[str, str], invoke: Callable[..., Result]) -> None:
    run_id = data["beta-failed"]
    declined = invoke("--store", store_url, "runs", "delete", run_id, input="n\n")
    assert declined.exit_code == 1 and "nothing deleted" in declined.stderr
    with opened(store_url) as store:
        assert store.get_run(run_id) is not None
    confirmed = invoke("--store", store_url, "runs", "delete", run_id, input="y\n")
    assert confirmed.exit_code == 0, confirmed.stderr
    with opened(store_url) as store:
        assert store.get_run(run_id) is None and store.get_tasks(run_id) == []
    again = invoke("--store", store_url, "runs", "delete", run_id, "--yes")
    assert again.exit_code == 64 and again.stderr.count("\n") == 1 and "no run" in again.stderr


def test_runs_cleanup(store_url: str, data: dict[str, str], invoke: Callable[..., Result]) -> None:
    dry = as_json(invoke("--store", store_url, "runs", "cleanup", "--keep", "1", "--dry-run", "--json"))
    assert isinstance(dry, dict) and dry["dry_run"] is True
    assert [r["run_id"] for r in dry["removed"]] == [data["alpha-completed"]]  # beta-failed can be resumed
    with opened(store_url) as store:
        assert len(store.list_runs()) == 4
    only_failed = invoke("--store", store_url, "runs", "cleanup", "--keep", "0", "--status", "failed", "--yes")
    assert only_failed.exit_code == 0 and "deleted 1 run(s)" in only_failed.stdout
    old = invoke("--store", store_url, "runs", "cleanup", "--older-than", "30d", "--job", "alpha")
    assert old.exit_code == 0 and "deleted 0 run(s)" in old.stdout
    with opened(store_url) as store:
        rest = {r.run_id for r in store.list_runs()}
    assert rest == {data["alpha-completed"], data["alpha-partial"], data["beta-interrupted"]}


def test_state_show_and_reset(store_url: str, data: dict[str, str], invoke: Callable[..., Result]) -> None:
    entries = as_json(invoke("--store", store_url, "state", "show", "alpha", "--json"))
    assert isinstance(entries, list)
    assert {e["key"]: e["value"] for e in entries} == {"cursor": "tok-1", "last_id": {"id": 99, "at": "2024-03-15"}}
    table = invoke("--store", store_url, "state", "show", "alpha")
    assert "last_id" in table.stdout and '"id": 99' in table.stdout
    one = invoke("--store", store_url, "state", "reset", "alpha", "--key", "cursor", "--yes")
    assert one.exit_code == 0, one.stderr
    with opened(store_url) as store:
        assert [e.key for e in store.get_state("alpha")] == ["last_id"]
    missing = invoke("--store", store_url, "state", "reset", "alpha", "--key", "nope", "--yes")
    assert missing.exit_code == 64
    everything = invoke("--store", store_url, "state", "reset", "alpha", input="y\n")
    assert everything.exit_code == 0
    with opened(store_url) as store:
        assert store.get_state("alpha") == []
    empty = invoke("--store", store_url, "state", "show", "beta")
    assert empty.exit_code == 0 and "no bookmarks" in empty.stdout


def test_status_when_nothing_runs(store_url: str, data: dict[str, str], invoke: Callable[..., Result]) -> None:
    result = invoke("--store", store_url, "status")
    assert result.exit_code == 0 and "nothing running" in result.stdout
    found = as_json(invoke("--store", store_url, "status", "alpha", "--json"))
    assert isinstance(found, dict) and found["runs"] == []


def test_stale_running_run_is_shown_as_stale(store_url: str, invoke: Callable[..., Result]) -> None:
    """A ``running`` run whose process died (no live lock) is listed by status, marked not live."""
    with opened(store_url) as store:
        run = syncpoint.Job("crashed", store=store).run()
        run.__enter__()
        run.task("t").set_cursor({"page": 7}, pages=7, records=70)
        run.commit()
        run.watch_signals().__exit__(None, None, None)
        run._release_lock()  # the lock goes away as if the process had died; the record stays "running"
    found = as_json(invoke("--store", store_url, "status", "--json"))
    assert isinstance(found, dict)
    [entry] = found["runs"]
    assert entry["run_id"] == run.run_id and entry["status"] == RunStatus.RUNNING.value
    assert entry["live"] is False and entry["current"][0]["cursor"] == {"page": 7}
    assert entry["records"] == 70
    text = invoke("--store", store_url, "status")
    assert "stale" in text.stdout


def test_unknown_job_is_a_usage_error(store_url: str, data: dict[str, str], invoke: Callable[..., Result]) -> None:
    for args in (("state", "show", "gamma"), ("status", "gamma"), ("runs", "list", "--job", "gamma")):
        result = invoke("--store", store_url, *args)
        assert result.exit_code == 64, args
        assert result.stderr.startswith("syncpoint: error: no job 'gamma'") and result.stderr.count("\n") == 1

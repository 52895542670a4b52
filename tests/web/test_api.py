"""``/api/...``: the shapes of the CLI's ``--json`` plus the dashboard's own fields; paging and search."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from helpers import ROOT
from web_support import Servers, env, run_job


def cli_json(store: str, *args: str) -> object:
    done = subprocess.run([sys.executable, "-m", "syncpoint", "--store", store, *args, "--json"],
                          capture_output=True, text=True, env=env(), cwd=ROOT, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_api_shapes_are_the_clis(servers: Servers, tmp_path: Path) -> None:
    store = f"sqlite:{tmp_path / 'cp' / 'syncpoint.db'}"
    run_job(store, "--items", "30", "--delay", "0", "--fail-every", "4", "--label", "v1")
    run_job(store, "--items", "30", "--delay", "0", "--fail-every", "4", "--label", "v2", "--new-run")
    server = servers.start(store)

    runs = server.get("/api/jobs/dash/runs").json()["runs"]
    assert runs == cli_json(store, "runs", "list", "--job", "dash")

    run_id = runs[0]["run_id"]
    api = server.get(f"/api/runs/{run_id}").json()
    cli = cli_json(store, "runs", "show", run_id, "--failed", "0")
    assert isinstance(cli, dict)
    for key in ("run", "location", "live", "error", "phases"):
        assert api[key] == cli[key], key
    for ours, theirs in zip(api["tasks"], cli["tasks"], strict=True):
        assert {k: v for k, v in ours.items() if k in theirs} == {
            k: v for k, v in theirs.items() if not k.startswith("failed_items")
        }
        assert {"done", "progress_ratio", "eta_seconds"} <= ours.keys()
    assert api["progress"]["done"] == 30 + 50 and api["progress"]["ratio"] == 1.0
    assert api["failed"] == {"total": 7, "retryable": 0, "permanent": 7, "counted_all": True}  # 3, 7, ...: odd
    assert api["config_changes"] == {
        "previous_run_id": runs[1]["run_id"],
        "changes": [{"key": "label", "before": "v1", "after": "v2", "added": False, "removed": False}],
    }

    jobs = server.get("/api/jobs").json()
    assert [j["job"] for j in jobs["jobs"]] == ["dash"]
    assert jobs["jobs"][0]["last_run"]["run_id"] == run_id
    assert [d["run_id"] for d in jobs["jobs"][0]["durations"]] == [runs[1]["run_id"], run_id]

    history = server.get(f"/api/runs/{run_id}/history").json()
    assert history["samples"][-1]["items_ok"] == 23 and history["samples"][-1]["records"] == 50


def test_failed_items_are_paged_and_searchable(servers: Servers, tmp_path: Path) -> None:
    store = f"json:{tmp_path / 'cp'}"
    run_job(store, "--items", "100", "--delay", "0", "--fail-every", "2", "--error", "HTTP 503")
    server = servers.start(store)
    run_id = server.get("/api/jobs").json()["jobs"][0]["last_run"]["run_id"]
    first = server.get(f"/api/runs/{run_id}/failed", params={"limit": 20}).json()
    assert len(first["items"]) == 20 and first["more"]
    second = server.get(f"/api/runs/{run_id}/failed", params={"limit": 20, "offset": 40}).json()
    assert len(second["items"]) == 10 and not second["more"]
    assert first["items"][0] == {"task": "records", "item_id": "item-0001", "error": "HTTP 503 #1", "retryable": False}
    found = server.get(f"/api/runs/{run_id}/failed", params={"q": "#77"}).json()["items"]
    assert [i["item_id"] for i in found] == ["item-0077"]
    assert server.get(f"/api/runs/{run_id}/failed", params={"task": "pages"}).json()["items"] == []
    assert server.get("/api/runs/20200101-000000-abcdef").status_code == 404
    assert server.get("/api/jobs/nope/runs").status_code == 404
    assert server.get("/runs/20200101-000000-abcdef").status_code == 404

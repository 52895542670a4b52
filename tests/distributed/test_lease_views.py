"""Task leases seen by users (``syncpoint status``, ``runs show``, their ``--json``, the dashboard's run page)
and the liveness rule that knows about them (``syncpoint.liveness``): ``runs delete`` and ``runs cleanup``
leave a run alone while a worker holds one of its leases, and a plain ``--resume`` refuses a run whose tasks
are leased to workers. A real fan-out and real workers (``tests/jobs/fleet_job.py``) on the real PostgreSQL;
the CLI runs in-process (click's runner) to keep each test to a few seconds.
"""

from __future__ import annotations

import json
import logging
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from fleet_support import FleetBed
from helpers import ROOT, Child

import syncpoint
from syncpoint.cli.main import cli
from syncpoint.errors import UsageError
from syncpoint.liveness import FRESH_HEARTBEAT_SECONDS

pytestmark = pytest.mark.postgres

HOST = socket.gethostname()
FLEET_SINGLE = str(ROOT / "tests" / "jobs" / "fleet_single.py")


def sp(*args: str, width: int = 80) -> Result:
    """``syncpoint ARGS`` in-process at ``COLUMNS=width`` (logging as it was before, for the next test)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        return CliRunner().invoke(cli, list(args), env={"COLUMNS": str(width), "SYNCPOINT_STORE": None},
                                  catch_exceptions=False)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def text_of(bed: FleetBed, *args: str, width: int = 80) -> str:
    result = sp("--store", bed.url, *args, width=width)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    too_long = [line for line in result.stdout.splitlines() if len(line.rstrip()) > width]
    assert not too_long, too_long
    return result.stdout


def json_of(bed: FleetBed, *args: str) -> Any:
    result = sp("--store", bed.url, *args, "--json")
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return json.loads(result.stdout)


def row(text: str, first: str) -> list[str]:
    """The cells (split on blanks) of the one line that starts with ``first``."""
    [found] = [line.split() for line in text.splitlines() if line.split()[:1] == [first]]
    return found


def refused(result: Result, code: int) -> str:
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert result.stderr.startswith("syncpoint: error: ") and result.stderr.count("\n") == 1, result.stderr
    return result.stderr


def plain_resume(bed: FleetBed, *flags: str) -> subprocess.CompletedProcess[str]:
    """The fleet's job run by one plain process (``fleet_single.py``), as a user's own program would."""
    return subprocess.run([sys.executable, FLEET_SINGLE, bed.job, "--store", bed.url, *flags], capture_output=True,
                          text=True, cwd=ROOT, stdin=subprocess.DEVNULL, timeout=60)


def test_the_liveness_rule_is_twice_the_default_stall_timeout() -> None:
    from syncpoint.distributed import DEFAULT_STALL_TIMEOUT

    assert FRESH_HEARTBEAT_SECONDS == 2 * DEFAULT_STALL_TIMEOUT  # as docs/CLI.md and syncpoint.liveness say


def test_status_and_runs_show_name_the_worker_holding_a_lease_and_keep_the_run_alive(bed: FleetBed) -> None:
    bed.stall = 10.0  # no takeover here: a loaded machine must not make the holder look stalled to itself
    run_id = bed.start(2)
    holder = bed.worker("--pages", "100000", "--page-delay", "0.05", name="holder")  # holds its task until told
    _, task, _, epoch, pid = holder.expect("PAGE ").split()  # its first page is committed: the lease is held
    other = "t0001" if task == "t0000" else "t0000"
    assert int(pid) == holder.proc.pid and int(epoch) == 1
    who = f"pid {pid} on {HOST}"

    # status --json: the run is live through its lease; the task in progress names its worker
    [live] = json_of(bed, "status")["runs"]
    assert (live["run_id"], live["live"], live["lock"]) == (run_id, True, None)
    assert live["leases"] == {"queued": 1, "leased": 1, "finished": 0, "live": 1}
    [current] = live["current"]
    lease = current["lease"]
    assert current["task"] == task
    assert (lease["state"], lease["epoch"], lease["live"]) == ("leased", 1, True)
    assert (lease["host"], lease["pid"], lease["worker"]) == (HOST, int(pid), f"{HOST}:{pid}")
    assert 0 <= lease["heartbeat_age_seconds"] <= lease["lease_age_seconds"] < FRESH_HEARTBEAT_SECONDS
    assert lease["leased_at"] <= lease["heartbeat_at"] and lease["leased_at"].endswith("+00:00")
    assert (lease["takeovers"], lease["failures"]) == (0, 0) and lease["commits"] >= 1

    # runs show --json: a lease object for every task, the waiting one too
    shown = json_of(bed, "runs", "show", run_id)
    leases = {t["name"]: t["lease"] for t in shown["tasks"]}
    assert shown["live"] is True
    assert (leases[task]["state"], leases[task]["pid"], leases[task]["live"]) == ("leased", int(pid), True)
    assert (leases[other]["state"], leases[other]["epoch"], leases[other]["pid"]) == ("queued", 0, None)
    assert leases[other]["heartbeat_age_seconds"] is None and leases[other]["live"] is False

    # the tables at 80 columns: the worker, the state, the epoch, the ages
    status = text_of(bed, "status")
    assert f"task leases of run {run_id}: 1 leased · 1 queued" in status
    cells = row(status, task)
    assert cells[:3] == [task, "leased", "1"] and " ".join(cells[3:7]) == who and "ago" in cells
    details = text_of(bed, "runs", "show", run_id)
    assert f"yes — 1 task(s) leased to {who}" in details and "task leases" in details
    assert row(details.split("task leases", 1)[1], task)[:7] == [task, "leased", "1", *who.split()]
    assert row(details.split("task leases", 1)[1], other)[:4] == [other, "queued", "0", "-"]
    assert "takeovers" not in details and "failed" not in details.split("task leases", 1)[1]  # none: no column

    # the dashboard's run page says the same
    server = Child(["-m", "syncpoint", "--store", bed.url, "serve", "--port", "0"], stdin=False)
    try:
        url = server.expect("dashboard: ").split()[1].rstrip("/")
        with httpx.Client(base_url=url, trust_env=False, timeout=10) as client:
            page = client.get(f"/runs/{run_id}").text
            assert "1 task(s) leased to live workers" in page and f"leased · epoch 1 · {who}" in page
            api = client.get(f"/api/runs/{run_id}").json()
            assert api["live"] is True and {t["name"]: t["lease"]["pid"] for t in api["tasks"]}[task] == int(pid)
    finally:
        server.proc.terminate()
        server.finish(timeout=20)

    # liveness: the worker takes no job lock, yet the run is never deleted while it holds a lease
    assert who in refused(sp("--store", bed.url, "runs", "delete", run_id, "--yes"), 75)
    for extra in (["--include-resumable"], ["--status", "running"]):
        cleaned = sp("--store", bed.url, "runs", "cleanup", "--keep", "0", *extra, "--yes")
        assert cleaned.exit_code == 0 and "deleted 0 run(s)" in cleaned.stdout, (cleaned.stdout, cleaned.stderr)
    assert "would delete 0 run(s)" in sp("--store", bed.url, "runs", "cleanup", "--keep", "0", "--status", "running",
                                          "--dry-run").stdout
    # nor resumed by a plain process, nor written beside: one writer per job, as the job lock gives (exit 75)
    for flags in (["--resume"], ["--resume-run", run_id], ["--new-run"], []):
        proc = plain_resume(bed, *flags)
        assert proc.returncode == 75, (flags, proc.stdout, proc.stderr)
        [line] = proc.stderr.splitlines()
        assert line == (f"fleet_single.py: error: job {bed.job!r} is being worked on by the live workers of run "
                        f"{run_id} ({who}); wait for them to finish (syncpoint status) or stop them (SIGTERM "
                        "hands their tasks back)"), line
    assert bed.run_status(run_id) == ("running", None)
    assert [r[0] for r in bed.sql("SELECT run_id FROM {s}.runs")] == [run_id]  # no run was made beside it

    # SIGTERM hands the task back; another worker finishes the run; the leases say who did what
    holder.proc.send_signal(signal.SIGTERM)
    assert holder.finish(timeout=30)[0] == 143
    finisher = bed.worker("--until-done", "--pages", "1", "--page-delay", "0", name="finisher")
    assert finisher.finish(timeout=60)[0] == 0
    assert bed.run_status(run_id) == ("completed", None)
    assert json_of(bed, "status")["runs"] == []
    shown = json_of(bed, "runs", "show", run_id)
    leases = {t["name"]: t["lease"] for t in shown["tasks"]}
    assert shown["live"] is False
    assert (leases[task]["state"], leases[task]["epoch"], leases[task]["pid"]) == ("finished", 2, finisher.proc.pid)
    assert (leases[other]["state"], leases[other]["epoch"], leases[other]["live"]) == ("finished", 1, False)
    details = text_of(bed, "runs", "show", run_id)
    done = f"pid {finisher.proc.pid} on {HOST}".split()
    assert row(details.split("task leases", 1)[1], task)[:7] == [task, "finished", "2", *done]
    sp("--store", bed.url, "runs", "delete", run_id, "--yes")  # no longer live
    assert bed.sql("SELECT count(*) FROM {s}.runs") == [(0,)]


def test_a_run_whose_workers_are_silent_is_not_live_but_still_belongs_to_them(bed: FleetBed) -> None:
    """No worker at all, then one killed mid-task (its heartbeat 5 minutes old), then one alive elsewhere
    (a fresh heartbeat): only the last keeps the run live; a plain resume is refused throughout."""
    run_id = bed.start(2)
    [waiting] = json_of(bed, "status")["runs"]
    assert (waiting["live"], waiting["current"], waiting["leases"]["queued"]) == (False, [], 2)
    assert "no — 2 task(s) queued, no worker at work; start one" in text_of(bed, "runs", "show", run_id, width=120)
    assert "no — no live worker" in text_of(bed, "status", width=200)

    def lease_t0000(heartbeat: str) -> None:
        bed.sql("UPDATE {s}.leases SET state = 'leased', epoch = 3, host = 'gone', pid = 4242, worker = 'w7', "
                "takeovers = 2, failures = 1, leased_at = clock_timestamp() - interval '10 minutes', "
                f"heartbeat_at = clock_timestamp() - interval '{heartbeat}' WHERE run_id = %s AND task = 't0000' "
                "RETURNING task", run_id)

    lease_t0000("5 minutes")  # its worker was killed mid-task; no other worker came to take it over
    [silent] = json_of(bed, "status")["runs"]
    [current] = silent["current"]
    assert (silent["live"], current["task"], current["lease"]["live"]) == (False, "t0000", False)
    assert 300 <= current["lease"]["heartbeat_age_seconds"] < 360
    details = text_of(bed, "runs", "show", run_id, width=120)
    said = " ".join(details.split())
    assert "no — no worker has sent a heartbeat for twice its stall timeout; start a worker" in said
    cells = row(details.split("task leases", 1)[1], "t0000")
    assert cells[:7] == ["t0000", "leased", "3", "w7", "(pid", "4242", "on"] and cells[-2:] == ["2", "1"]
    assert "5m0" in " ".join(cells) and "10m0" in " ".join(cells)  # heartbeat and lease ages
    assert "takeovers" in details and "failed" in details  # shown: some lease has them
    assert plain_resume(bed, "--resume").returncode == 64  # open leases: still the workers' run
    named = plain_resume(bed, "--resume-run", run_id)
    assert named.returncode == 64 and f"run {run_id} of job {bed.job!r} is shared by workers" in named.stderr

    lease_t0000("1 second")  # a worker on another machine is alive
    assert json_of(bed, "status")["runs"][0]["live"] is True
    assert plain_resume(bed, "--new-run").returncode == 75  # and keeps a plain process from writing beside it
    assert "w7 (pid 4242 on gone)" in refused(sp("--store", bed.url, "runs", "delete", run_id, "--yes"), 75)
    job = syncpoint.Job(bed.job, store=bed.url)
    try:
        with pytest.raises(UsageError, match=r"live workers \(w7 \(pid 4242 on gone\)\)"):
            job.delete_run(run_id)  # the library's own delete refuses it too
    finally:
        job.close()

    lease_t0000("5 minutes")  # silent again: clean-up may take it, when asked to take resumable runs
    cleaned = sp("--store", bed.url, "runs", "cleanup", "--keep", "0", "--include-resumable", "--yes")
    assert "deleted 1 run(s)" in cleaned.stdout, (cleaned.stdout, cleaned.stderr)
    assert bed.sql("SELECT count(*) FROM {s}.leases") == [(0,)]


def test_the_dashboard_and_metrics_call_a_run_live_while_its_workers_are(bed: FleetBed) -> None:
    """Workers take no job lock: the jobs page, the job page, ``/api/jobs`` and ``/metrics`` must still call
    the run live while a lease has a fresh heartbeat (the documented alert ``syncpoint_run_running == 1 and
    syncpoint_run_live == 0`` must not fire for it), and dead once the heartbeat is old."""
    run_id = bed.start(2)

    def heartbeat(age: str) -> None:
        bed.sql("UPDATE {s}.leases SET state = 'leased', epoch = 1, host = 'far', pid = 4242, worker = 'w7', "
                f"leased_at = clock_timestamp() - interval '1 hour', heartbeat_at = clock_timestamp() - interval "
                f"'{age}' WHERE run_id = %s AND task = 't0000' RETURNING task", run_id)

    def metric(text: str, name: str) -> str:
        [line] = [x for x in text.splitlines() if x.startswith(f'{name}{{job="{bed.job}"}}')]
        return line.split()[-1]

    for age, live in (("1 second", True), ("5 minutes", False)):
        heartbeat(age)
        server = Child(["-m", "syncpoint", "--store", bed.url, "serve", "--port", "0", "--allow-actions"],
                       stdin=False)  # a new server each time: nothing cached
        try:
            url = server.expect("dashboard: ").split()[1].rstrip("/")
            with httpx.Client(base_url=url, trust_env=False, timeout=10) as client:
                [job] = [j for j in client.get("/api/jobs").json()["jobs"] if j["job"] == bed.job]
                runs = client.get(f"/api/jobs/{bed.job}/runs").json()
                jobs_page = client.get("/").text
                job_page = client.get(f"/jobs/{bed.job}").text
                metrics = client.get("/metrics").text
                if live:  # the dashboard's delete refuses it too (409), naming the workers
                    confirm = client.get(f"/runs/{run_id}/delete").text
                    csrf = re.search(r'name="csrf" value="([^"]+)"', confirm)
                    assert csrf is not None
                    refused = client.post(f"/runs/{run_id}/delete", data={"csrf": csrf[1], "confirm": run_id})
                    assert refused.status_code == 409
                    assert "is being worked on by live workers (w7 (pid 4242 on far)); stop them first" in (
                        refused.text), refused.text
        finally:
            server.proc.terminate()
            server.finish(timeout=20)
        assert runs["live"] is None  # no process holds the job's lock, either way
        assert metric(metrics, "syncpoint_run_running") == "1.0"
        assert metric(metrics, "syncpoint_lock_held") == "0.0"
        if live:
            expected = {"run_id": run_id, "lock": None, "workers": ["w7 (pid 4242 on far)"]}
            assert job["live"] == expected and runs["live_run"] == expected
            assert 'title="w7 (pid 4242 on far)">● 1 worker(s)</a>' in jobs_page
            assert f"running now on 1 worker(s): w7 (pid 4242 on far) — <a href=\"/runs/{run_id}\"" in job_page
            assert (metric(metrics, "syncpoint_run_live"), metric(metrics, "syncpoint_live_workers")) == (
                "1.0", "1.0")
        else:
            assert job["live"] is None and runs["live_run"] is None
            assert "worker(s)" not in jobs_page and "running now" not in job_page
            assert (metric(metrics, "syncpoint_run_live"), metric(metrics, "syncpoint_live_workers")) == (
                "0.0", "0.0")


def test_runs_without_leases_look_as_before(tmp_path: Path) -> None:
    """SQLite (and JSON) have no leases: no ``lease`` or ``leases`` key, no lease table, the lock decides."""
    url = f"sqlite:{tmp_path / 'cp' / 'syncpoint.db'}"
    store = syncpoint.open_store(url)
    try:
        with syncpoint.Job("plain", store=store).run() as run:
            run.task("pages").set_cursor({"page": 1}, pages=1, records=3)
            run.commit()
            result = sp("--store", url, "status", "--json")
            [live] = json.loads(result.stdout)["runs"]
            assert live["live"] is True and "leases" not in live and "lease" not in live["current"][0]
            shown = json.loads(sp("--store", url, "runs", "show", run.run_id, "--json").stdout)
            assert "lease" not in shown["tasks"][0] and shown["live"] is True
            assert "task leases" not in sp("--store", url, "runs", "show", run.run_id).stdout
            assert "task leases" not in sp("--store", url, "status").stdout
    finally:
        store.close()

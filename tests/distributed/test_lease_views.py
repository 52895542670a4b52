"""Task leases and the liveness rule that knows about them (``syncpoint.liveness``): ``runs delete`` and
``runs cleanup`` leave a run alone while a worker holds one of its leases, and a plain ``--resume`` refuses a
run whose tasks are leased to workers. A real fan-out and real workers (``tests/jobs/fleet_job.py``) on the
real PostgreSQL; the CLI runs in-process (click's runner) to keep each test to a few seconds.
"""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
import sys

import pytest
from click.testing import CliRunner, Result
from fleet_support import FleetBed
from helpers import ROOT

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


def test_a_worker_holding_a_lease_keeps_its_run_from_delete_cleanup_and_a_plain_resume(bed: FleetBed) -> None:
    bed.stall = 10.0  # no takeover here: a loaded machine must not make the holder look stalled to itself
    run_id = bed.start(2)
    holder = bed.worker("--pages", "100000", "--page-delay", "0.05", name="holder")  # holds its task until told
    *_, epoch, pid = holder.expect("PAGE ").split()  # its first page is committed: the lease is held
    assert int(pid) == holder.proc.pid and int(epoch) == 1
    who = f"pid {pid} on {HOST}"

    # the worker takes no job lock, yet the run is never deleted while it holds a lease
    assert who in refused(sp("--store", bed.url, "runs", "delete", run_id, "--yes"), 75)
    for extra in (["--include-resumable"], ["--status", "running"]):
        cleaned = sp("--store", bed.url, "runs", "cleanup", "--keep", "0", *extra, "--yes")
        assert cleaned.exit_code == 0 and "deleted 0 run(s)" in cleaned.stdout, (cleaned.stdout, cleaned.stderr)
    assert "would delete 0 run(s)" in sp("--store", bed.url, "runs", "cleanup", "--keep", "0", "--status", "running",
                                          "--dry-run").stdout
    # nor resumed by a plain process
    for flags in (["--resume"], ["--resume-run", run_id]):
        proc = plain_resume(bed, *flags)
        assert proc.returncode == 64, (proc.stdout, proc.stderr)
        [line] = proc.stderr.splitlines()
        assert line.startswith("fleet_single.py: error: run ") and run_id in line and "'syncpoint status'" in line
    assert bed.run_status(run_id) == ("running", None)

    # SIGTERM hands the task back; another worker finishes the run, which may then go
    holder.proc.send_signal(signal.SIGTERM)
    assert holder.finish(timeout=30)[0] == 143
    finisher = bed.worker("--until-done", "--pages", "1", "--page-delay", "0", name="finisher")
    assert finisher.finish(timeout=60)[0] == 0
    assert bed.run_status(run_id) == ("completed", None)
    sp("--store", bed.url, "runs", "delete", run_id, "--yes")  # no longer live
    assert bed.sql("SELECT count(*) FROM {s}.runs") == [(0,)]


def test_a_run_whose_workers_are_silent_is_not_live_but_still_belongs_to_them(bed: FleetBed) -> None:
    """No worker at all, then one killed mid-task (its heartbeat 5 minutes old), then one alive elsewhere
    (a fresh heartbeat): only the last keeps the run live; a plain resume is refused throughout."""
    run_id = bed.start(2)
    assert plain_resume(bed, "--resume").returncode == 64  # queued leases: the workers' run

    def lease_t0000(heartbeat: str) -> None:
        bed.sql("UPDATE {s}.leases SET state = 'leased', epoch = 3, host = 'gone', pid = 4242, worker = 'w7', "
                "takeovers = 2, failures = 1, leased_at = clock_timestamp() - interval '10 minutes', "
                f"heartbeat_at = clock_timestamp() - interval '{heartbeat}' WHERE run_id = %s AND task = 't0000' "
                "RETURNING task", run_id)

    lease_t0000("5 minutes")  # its worker was killed mid-task; no other worker came to take it over
    assert plain_resume(bed, "--resume").returncode == 64  # open leases: still the workers' run

    lease_t0000("1 second")  # a worker on another machine is alive
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

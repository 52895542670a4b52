"""Clean-up deletes finished runs only, unless told otherwise, and asks first (issue 11 item 3).

Finished: completed, or failed with its attempts used up. Resumable runs — ``running`` left by ``kill -9``,
``interrupted``, ``partial``, ``failed`` with a retryable error — go only when named by ``--status`` or
with ``--include-resumable``. ``syncpoint runs cleanup`` asks like ``runs delete`` (``--yes`` skips it),
and ``--dry-run`` only lists. A job's own ``--cleanup`` follows the same rule. Real subprocesses.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import Holder, Stores, clean_env, opened, populate, sp

import syncpoint
from syncpoint.errors import AttemptsExhausted
from syncpoint.model import RunStatus

COUNTING_JOB = Path(__file__).resolve().parents[1] / "jobs" / "counting_job.py"


def sp_job(*args: str) -> subprocess.CompletedProcess[str]:
    """``tests/jobs/counting_job.py ARGS``: a program of the user's, with the standard flags."""
    return subprocess.run([sys.executable, str(COUNTING_JOB), *args], capture_output=True, text=True,
                          env=clean_env(), timeout=120, stdin=subprocess.DEVNULL)


def exhausted_run(url: str, job: str) -> str:
    """A run that failed for good: it used its only attempt without finishing (a real run, not a record)."""
    with opened(url) as store:
        with syncpoint.Job(job, store=store).run(max_items=1, max_attempts=1) as run:
            for i in range(3):
                run.task("items").item_done(str(i))
        found = store.get_run(run.run_id)
        assert found is not None and found.status is RunStatus.FAILED
        again = syncpoint.Job(job, store=store)
        with pytest.raises(AttemptsExhausted), again.run(resume=True, max_attempts=1):  # nothing continues it
            pass
    return run.run_id


def killed_run(url: str, job: str) -> str:
    """A run left ``running`` by ``kill -9`` (its lock died with its process)."""
    holder = Holder(url, job)
    holder.kill()
    return holder.run_id


@pytest.fixture
def runs(store_url: str) -> dict[str, str]:
    ids = populate(store_url)  # alpha: completed, partial; beta: failed (retryable), interrupted
    ids["gamma-exhausted"] = exhausted_run(store_url, "gamma")
    ids["gamma-killed"] = killed_run(store_url, "gamma")
    return ids


def left(url: str) -> set[str]:
    with opened(url) as store:
        return {r.run_id for r in store.list_runs()}


def test_cleanup_deletes_only_finished_runs_by_default(store_url: str, runs: dict[str, str]) -> None:
    finished = {runs["alpha-completed"], runs["gamma-exhausted"]}
    proc = sp("--store", store_url, "runs", "cleanup", "--keep", "0", "--yes", "--json")
    assert proc.returncode == 0, proc.stderr
    assert {r["run_id"] for r in json.loads(proc.stdout)["removed"]} == finished
    assert left(store_url) == set(runs.values()) - finished

    named = sp("--store", store_url, "runs", "cleanup", "--keep", "0", "--status", "interrupted", "--yes")
    assert named.returncode == 0 and "deleted 1 run(s)" in named.stdout, named.stdout + named.stderr
    assert runs["beta-interrupted"] not in left(store_url)

    everything = sp("--store", store_url, "runs", "cleanup", "--older-than", "0s", "--include-resumable", "--yes")
    assert everything.returncode == 0 and "deleted 3 run(s)" in everything.stdout, everything.stdout
    assert left(store_url) == set()


def test_cleanup_asks_first_and_dry_run_only_lists(store_url: str, runs: dict[str, str]) -> None:
    dry = sp("--store", store_url, "runs", "cleanup", "--keep", "0", "--include-resumable", "--dry-run")
    assert dry.returncode == 0 and "would delete 6 run(s)" in dry.stdout, dry.stdout + dry.stderr
    assert runs["gamma-killed"] in dry.stdout and dry.stderr == ""
    closed = sp("--store", store_url, "runs", "cleanup", "--keep", "0")  # stdin closed: counts as no
    assert closed.returncode == 1 and "nothing deleted" in closed.stderr, closed.stderr
    assert runs["alpha-completed"] in closed.stderr and "delete these 2 run(s)?" in closed.stderr
    declined = sp("--store", store_url, "runs", "cleanup", "--keep", "0", input="n\n")
    assert declined.returncode == 1 and "nothing deleted" in declined.stderr
    assert left(store_url) == set(runs.values())
    confirmed = sp("--store", store_url, "runs", "cleanup", "--keep", "0", input="y\n")
    assert confirmed.returncode == 0 and "deleted 2 run(s)" in confirmed.stdout, confirmed.stderr
    assert left(store_url) == set(runs.values()) - {runs["alpha-completed"], runs["gamma-exhausted"]}


def test_a_jobs_own_cleanup_keeps_resumable_runs(stores: Stores, tmp_path: Path) -> None:
    url = stores.url("sqlite")
    with opened(url) as store:
        job = syncpoint.Job("counting", store=store)
        with job.run(max_items=1) as run:
            run.task("items").item_done("a")
            run.task("items").item_done("b")
        partial = run.run_id
        with job.run(new_run=True) as run:
            run.task("items").item_done("a")
        completed = run.run_id
    killed = killed_run(url, "counting")
    proc = sp_job("--store", url, "--dest", str(tmp_path / "out"), "--cleanup", "--keep", "0")
    assert proc.returncode == 0, proc.stderr
    assert left(url) == {partial, killed} and completed not in left(url)

"""Tables at real widths: 80 and 120 columns (``COLUMNS``) and a pipe, through real processes.

What must survive any width: the run ID, the job, the status and the counts, whole (not "com…", not a
zero-width column, not "comple/te"); less important columns are dropped and the table says which.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import ROOT, Holder, clean_env, opened, populate, sp

import syncpoint

WIDTHS = [80, 120, None]  # None: a pipe without COLUMNS


def env_for(width: int | None) -> dict[str, str]:
    env = clean_env()
    env.pop("COLUMNS", None)
    if width is not None:
        env["COLUMNS"] = str(width)
    return env


@pytest.fixture
def url(tmp_path: Path) -> str:
    made = f"sqlite:{tmp_path / 'cp' / 'syncpoint.db'}"
    populate(made)
    with opened(made) as store, syncpoint.Job("drucksachen-vorgaenge", store=store).run() as run:
        run.task("t").set_cursor(1, records=1)  # a longer job name, as real ones are
    return made


def run_ids(url: str) -> dict[str, str]:
    with opened(url) as store:
        return {run.run_id: run.status.value for run in store.list_runs(None)}


def check_lines(text: str, width: int | None) -> None:
    assert text.strip(), "nothing printed"
    if width is not None:
        too_long = [line for line in text.splitlines() if len(line.rstrip()) > width]
        assert not too_long, too_long


@pytest.mark.parametrize("width", WIDTHS)
def test_runs_list_keeps_id_job_status_and_counts_whole(url: str, width: int | None) -> None:
    proc = sp("--store", url, "runs", "list", env=env_for(width))
    assert proc.returncode == 0, proc.stderr
    check_lines(proc.stdout, width)
    rows = proc.stdout.splitlines()
    for run_id, status in run_ids(url).items():
        [row] = [r for r in rows if run_id in r]
        assert status in row.split(), row  # whole, as a word of its own
    assert any("drucksachen-vorgaenge" in r.split() for r in rows)
    assert "22/3" in proc.stdout and "3/3" in proc.stdout  # items ok/failed and tasks of the completed run
    if width == 80:
        assert "not shown at 80 columns" in proc.stdout and "--json" in proc.stdout
    if width is None:  # a pipe gets every column
        assert "attempts" in proc.stdout and "ended" in proc.stdout and "not shown" not in proc.stdout


@pytest.mark.parametrize("width", [80, 120])
def test_runs_show_never_breaks_a_word(url: str, width: int) -> None:
    for run_id, status in run_ids(url).items():
        proc = sp("--store", url, "runs", "show", run_id, env=env_for(width))
        assert proc.returncode == 0, proc.stderr
        check_lines(proc.stdout, width)
        assert run_id in proc.stdout and status in proc.stdout
        seen = 0
        lines = proc.stdout.splitlines()
        tasks_at = next(i for i, line in enumerate(lines) if line.strip() == "tasks")
        for row in lines[tasks_at + 3:]:  # task statuses whole, next to their task
            cells = row.split()
            if not row.startswith(" ") and len(cells) == 1:  # the next table's title
                break
            if cells and cells[0] in ("pages", "items:ü/1", "marks", "boom", "never", "items", "one", "t"):
                assert cells[1] in ("complete", "failed", "pending", "in_progress"), row
                seen += 1
        assert seen, proc.stdout


@pytest.mark.parametrize("width", WIDTHS)
def test_a_jobs_list_runs_renders_like_the_cli(tmp_path: Path, width: int | None) -> None:
    url = f"sqlite:{tmp_path / 'cp.db'}"
    ran = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "jobs" / "counting_job.py"), "--store", url,
         "--dest", str(tmp_path / "out.txt"), "--total", "30", "--no-progress"],
        capture_output=True, text=True, env=env_for(width), cwd=ROOT, timeout=120, stdin=subprocess.DEVNULL,
    )
    assert ran.returncode == 0, ran.stderr
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "jobs" / "counting_job.py"), "--store", url,
         "--dest", str(tmp_path / "out.txt"), "--list-runs"],
        capture_output=True, text=True, env=env_for(width), cwd=ROOT, timeout=120, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    check_lines(proc.stdout, width)
    [(run_id, status)] = run_ids(url).items()
    [row] = [line for line in proc.stdout.splitlines() if run_id in line]
    assert status in row.split() and "counting" in row.split()
    if width is None:
        assert "attempts" in proc.stdout  # piped: every column, as `syncpoint runs list | cat` shows


def test_status_keeps_the_live_runs_id_job_and_counts_whole(url: str) -> None:
    holder = Holder(url, "drucksachen-vorgaenge")
    try:
        for width in WIDTHS:
            proc = sp("--store", url, "status", env=env_for(width))
            assert proc.returncode == 0, proc.stderr
            check_lines(proc.stdout, width)
            [row] = [line for line in proc.stdout.splitlines() if holder.run_id in line]
            assert "drucksachen-vorgaenge" in row.split() and "0/1" in row.split(), proc.stdout
    finally:
        holder.release()

"""Stopping under concurrency, with real subprocesses and real signals: a Ctrl+C during 16 slow items in
flight hands out no new work, lets the flight land within the grace period, commits and exits 130; after the
grace period what still runs is abandoned (redone on resume); a second Ctrl+C exits at once."""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

import pytest
from helpers import COUNTING_JOB, EMBEDDED_STORES, Child, run_job, store_url
from jobs.counting_job import source

import syncpoint


def args(kind: str, tmp_path: Path, mode: str, *extra: str, total: int = 200) -> list[str]:
    return [str(COUNTING_JOB), "--mode", mode, "--total", str(total), "--dest", str(tmp_path / "dest.txt"),
            "--store", store_url(kind, tmp_path), "--no-progress", "--concurrency", "16", *extra]


def written(tmp_path: Path) -> list[str]:
    path = tmp_path / "dest.txt"
    return path.read_text().split() if path.exists() else []


def recorded(kind: str, tmp_path: Path, task: str = "map-items") -> int:
    with syncpoint.open_store(store_url(kind, tmp_path)) as store:
        [run] = store.list_runs("counting", limit=1)
        return store.ledger_counts(run.run_id, task).ok


def started_16(child: Child) -> None:
    for _ in range(16):
        child.expect("STARTED")


@pytest.mark.parametrize("kind", EMBEDDED_STORES)
@pytest.mark.parametrize("mode", ["map-items", "amap-items"], ids=["threads", "asyncio"])
def test_ctrl_c_with_16_in_flight_lets_them_land_then_exits_130_and_resume_finishes(
    kind: str, mode: str, tmp_path: Path
) -> None:
    child = Child(args(kind, tmp_path, mode, "--item-seconds", "1.0"))
    started_16(child)
    sent = time.monotonic()
    child.proc.send_signal(signal.SIGINT)
    returncode, stderr = child.finish()
    took = time.monotonic() - sent
    assert returncode == 130, stderr
    assert "Traceback" not in stderr
    assert took < 10, took  # the flight takes 1 s; the grace period is 10 s
    # no new work after the signal: only the 16 in flight (and perhaps a few that started just before it)
    assert sum(1 for line in child.lines if line.startswith("STARTED")) < 32
    lines = written(tmp_path)
    assert 16 <= len(lines) < 32
    assert recorded(kind, tmp_path, mode) == len(lines)  # every finished item recorded, none unfinished
    code, _, err = run_job(args(kind, tmp_path, mode, "--resume"))
    assert code == 0, err
    lines = written(tmp_path)
    assert set(lines) == {r[0] for r in source(200, 7)} and Counter(lines).most_common(1)[0][1] == 1


@pytest.mark.parametrize("kind", EMBEDDED_STORES)
def test_work_still_running_after_the_grace_period_is_abandoned_and_redone(kind: str, tmp_path: Path) -> None:
    child = Child(args(kind, tmp_path, "map-items", "--item-seconds", "120", "--grace", "1"))
    started_16(child)
    sent = time.monotonic()
    child.proc.send_signal(signal.SIGINT)
    returncode, stderr = child.finish()
    assert returncode == 130, stderr
    assert time.monotonic() - sent < 8  # grace 1 s, not the items' 120 s
    assert "abandoned 16 unit(s)" in stderr
    assert written(tmp_path) == [] and recorded(kind, tmp_path) == 0


def test_second_ctrl_c_exits_at_once(tmp_path: Path) -> None:
    child = Child(args("sqlite", tmp_path, "map-items", "--item-seconds", "120"))
    started_16(child)
    child.proc.send_signal(signal.SIGINT)
    child.expect_stderr("SIGINT received")
    sent = time.monotonic()
    child.proc.send_signal(signal.SIGINT)
    returncode, stderr = child.finish()
    assert returncode == 130 and time.monotonic() - sent < 3
    assert "Traceback" not in stderr


def test_item_budget_stops_a_concurrent_job_with_exit_2_and_exactly_n_items(tmp_path: Path) -> None:
    code, _, err = run_job(args("sqlite", tmp_path, "map-items", "--max-items", "60"))
    assert code == 2, err
    assert recorded("sqlite", tmp_path) == 60


def test_asyncio_grace_period_cancels_what_still_runs(tmp_path: Path) -> None:
    child = Child(args("sqlite", tmp_path, "amap-items", "--item-seconds", "120", "--grace", "1"))
    started_16(child)
    sent = time.monotonic()
    child.proc.send_signal(signal.SIGINT)
    returncode, stderr = child.finish()
    assert returncode == 130 and time.monotonic() - sent < 8, stderr
    assert "abandoned 16 unit(s)" in stderr and recorded("sqlite", tmp_path, "amap-items") == 0

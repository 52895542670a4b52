"""Pipelines: jobs in order, the first non-zero exit ends the pass, ``--resume-all`` continues it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_helpers import ROOT, app, clean_env, opened
from click.testing import Result

import syncpoint
from syncpoint.errors import UsageError
from syncpoint.model import RunStatus, TaskStatus
from syncpoint.pipeline import Pipeline


def start_app(url: str, log: Path, *flags: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, app("pipeline_app.py"), str(log), "--store", url, "--progress-interval", "60", *flags],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(),
        cwd=ROOT,
    )


def test_resume_all_continues_the_third_job_without_rerunning_the_first_two(
    store_url: str, tmp_path: Path, invoke: Callable[..., Result]
) -> None:
    log = tmp_path / "log.txt"
    first = start_app(store_url, log)
    assert first.stdout is not None and first.stdin is not None
    assert first.stdout.readline().strip() == "j3 waiting"  # j1 and j2 are done; j3 is mid-way
    first.send_signal(signal.SIGINT)
    first.stdin.write("\n")  # let j3 reach its next safe point, where it stops
    first.stdin.flush()
    out, err = first.communicate(timeout=60)
    assert first.returncode == 130, err
    assert out.strip() == "exit 130"

    with opened(store_url) as store:
        [pipeline_run] = store.list_runs("sync-all")
        assert pipeline_run.status is RunStatus.INTERRUPTED and pipeline_run.exit_code == 130
        tasks = {t.name: t for t in store.get_tasks(pipeline_run.run_id)}
        assert [tasks[n].status for n in ("j1", "j2", "j3", "j4")] == [
            TaskStatus.COMPLETED, TaskStatus.COMPLETED, TaskStatus.IN_PROGRESS, TaskStatus.PENDING
        ]
        assert isinstance(tasks["j3"].cursor, dict)
        j3_run = tasks["j3"].cursor["run_id"]
        assert tasks["j3"].cursor["exit_code"] == 130 and tasks["j3"].cursor["status"] == "interrupted"
        assert store.get_run(j3_run) is not None

    shown = json.loads(invoke("--store", store_url, "runs", "show", pipeline_run.run_id, "--json").stdout)
    assert [t["status"] for t in shown["tasks"]] == ["complete", "complete", "in_progress", "pending"]

    second = start_app(store_url, log, "--resume-all")
    out, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    assert out.strip() == "exit 0"

    lines = log.read_text().splitlines()
    starts = [line.split() for line in lines if line.startswith("start ")]
    assert [s[1] for s in starts] == ["j1", "j2", "j3", "j3", "j4"]  # j1, j2 ran once; j3 twice
    j3_first, j3_second = (s for s in starts if s[1] == "j3")
    assert j3_first[2] == j3_second[2] == j3_run and j3_second[3] == "resumed=True"
    j3_items = [line for line in lines if line.startswith("item j3 ")]
    assert j3_items == [f"item j3 {i}" for i in range(10)]  # each item once: 0-4, stop, 5-9
    for name in ("j1", "j2", "j4"):
        assert [line for line in lines if line.startswith(f"item {name} ")] == [f"item {name} {i}" for i in range(10)]

    with opened(store_url) as store:
        [pipeline_run] = store.list_runs("sync-all")
        assert pipeline_run.status is RunStatus.COMPLETED and pipeline_run.attempts == 2
        assert all(t.status is TaskStatus.COMPLETED for t in store.get_tasks(pipeline_run.run_id))
        assert [r.status for r in store.list_runs("j3")] == [RunStatus.COMPLETED]


def _job_step(name: str, store: syncpoint.Store, calls: list[str], items: int = 6,
              fail: bool = False) -> Callable[[syncpoint.RunOptions], int]:
    def body(run: syncpoint.Run) -> None:
        calls.append(f"{name}:{'resume' if run.resumed else 'new'}")
        with run.task("t") as task:
            for i in task.iterate(range(items), key=str):
                task.item_done(str(i))
            if fail:
                raise RuntimeError("broken")

    def step(options: syncpoint.RunOptions) -> int:
        return syncpoint.Job(name, store=store).execute(options, body)

    return step


def test_budget_stops_in_a_member_then_resume_all(tmp_path: Path) -> None:
    """In-process: an item budget makes the third job partial (exit 2); --resume-all finishes."""
    with opened(f"sqlite:{tmp_path / 'cp.db'}") as store:
        calls: list[str] = []
        steps = [(n, _job_step(n, store, calls, items=4 if n != "c" else 12)) for n in ("a", "b", "c", "d")]
        pipeline = Pipeline("all", steps, store=store)
        assert pipeline.execute(syncpoint.RunOptions(max_items=8, progress=False)) == 2
        assert calls == ["a:new", "b:new", "c:new"]
        assert pipeline.execute(syncpoint.RunOptions(max_items=8, progress=False), resume_all=True) == 0
        assert calls == ["a:new", "b:new", "c:new", "c:resume", "d:new"]
        [run] = store.list_runs("all")
        assert run.status is RunStatus.COMPLETED
        # a fresh pass (no --resume-all) runs every member again, in new runs
        assert pipeline.execute(syncpoint.RunOptions(progress=False)) == 0
        assert calls[-4:] == ["a:new", "b:new", "c:new", "d:new"]
        assert len(store.list_runs("all")) == 2


def test_a_failing_member_ends_the_pipeline_with_its_code(tmp_path: Path) -> None:
    with opened(f"sqlite:{tmp_path / 'cp.db'}") as store:
        calls: list[str] = []
        steps = [("a", _job_step("a", store, calls)), ("b", _job_step("b", store, calls, fail=True)),
                 ("c", _job_step("c", store, calls))]
        pipeline = Pipeline("all", steps, store=store)
        assert pipeline.execute(syncpoint.RunOptions(progress=False)) == 1
        assert calls == ["a:new", "b:new"]
        [run] = store.list_runs("all")
        assert run.status is RunStatus.FAILED
        tasks = {t.name: t for t in store.get_tasks(run.run_id)}
        assert tasks["b"].status is TaskStatus.FAILED and tasks["b"].retryable
        assert "exited with code 1" in (tasks["b"].error or "")
        assert tasks["c"].status is TaskStatus.PENDING
        # fixed: --resume-all retries b (resuming its run) and runs c; a is not run again
        pipeline.steps[1] = ("b", _job_step("b", store, calls))
        assert pipeline.execute(syncpoint.RunOptions(progress=False), resume_all=True) == 0
        assert calls == ["a:new", "b:new", "b:resume", "c:new"]


def test_member_exit_codes_pass_through(tmp_path: Path) -> None:
    with opened(f"sqlite:{tmp_path / 'cp.db'}") as store:
        pipeline = Pipeline("all", [("a", lambda options: 75), ("b", lambda options: 0)], store=store)
        assert pipeline.execute(syncpoint.RunOptions(progress=False)) == 75
        stopped = Pipeline("p2", [("a", lambda options: 143)], store=store)
        assert stopped.execute(syncpoint.RunOptions(progress=False)) == 143
        assert store.list_runs("p2")[0].status is RunStatus.INTERRUPTED


def test_pipeline_validation() -> None:
    with pytest.raises(UsageError):
        Pipeline("p", [])
    with pytest.raises(UsageError):
        Pipeline("p", [("a", lambda o: 0), ("a", lambda o: 0)])
    with pytest.raises(UsageError):
        Pipeline("p", [("p", lambda o: 0)])
    with pytest.raises(UsageError):
        Pipeline("bad name", [("a", lambda o: 0)])


def test_concurrent_members_a_failure_starts_no_new_member_and_lets_the_running_ones_finish(tmp_path: Path) -> None:
    """concurrency=2: b fails while a is still running; a completes, c never starts, the code is b's."""
    with opened(f"sqlite:{tmp_path / 'cp.db'}") as store:
        calls: list[str] = []
        b_failed = threading.Event()
        pipeline: Pipeline

        def slow_a(options: syncpoint.RunOptions) -> int:
            code = _job_step("a", store, calls)(options)
            deadline = time.monotonic() + 10
            while pipeline.result is None and time.monotonic() < deadline:  # until b's failure is recorded
                b_failed.wait(0.01)
            return code

        steps = [("a", slow_a), ("b", _job_step("b", store, calls, fail=True)), ("c", _job_step("c", store, calls))]
        pipeline = Pipeline("all", steps, store=store, concurrency=2)
        assert pipeline.execute(syncpoint.RunOptions(progress=False)) == 1
        assert sorted(calls) == ["a:new", "b:new"]
        [run] = store.list_runs("all")
        tasks = {t.name: t.status for t in store.get_tasks(run.run_id)}
        assert tasks == {"a": TaskStatus.COMPLETED, "b": TaskStatus.FAILED, "c": TaskStatus.PENDING}
        pipeline.steps[1] = ("b", _job_step("b", store, calls))
        assert pipeline.execute(syncpoint.RunOptions(progress=False), resume_all=True) == 0
        assert sorted(calls[2:]) == ["b:resume", "c:new"]
    with pytest.raises(UsageError):
        Pipeline("p", [("a", lambda o: 0)], concurrency=0)

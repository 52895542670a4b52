"""The names renamed for 0.2 (docs/API.md, "Names"): each old name that an example or the docs used still
works, the same as the new one, and warns with a ``DeprecationWarning`` that names its replacement."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import syncpoint
from syncpoint import TaskStatus


def test_task_status_completed_keeps_the_stored_value() -> None:
    assert TaskStatus.COMPLETED.value == "complete"  # what every store holds: no migration
    assert TaskStatus("complete") is TaskStatus.COMPLETED
    assert [s.name for s in TaskStatus] == ["PENDING", "IN_PROGRESS", "COMPLETED", "FAILED"]


def test_task_status_complete_warns_and_is_the_same_member() -> None:
    with pytest.warns(DeprecationWarning, match=r"TaskStatus\.COMPLETE is deprecated; use TaskStatus\.COMPLETED"):
        old = TaskStatus.COMPLETE  # type: ignore[attr-defined]
    assert old is TaskStatus.COMPLETED is syncpoint.TaskStatus.COMPLETED
    with pytest.raises(AttributeError, match="no attribute 'COMPLET'"):
        _ = TaskStatus.COMPLET  # type: ignore[attr-defined]


@pytest.fixture
def run(tmp_path: Path) -> Iterator[syncpoint.Run]:
    job = syncpoint.Job("renamed", store=f"sqlite:{tmp_path / 'cp.db'}")
    with job.run() as run:
        yield run
    job.close()


def test_task_done_is_now_is_complete(run: syncpoint.Run) -> None:
    task = run.task("t")
    with task:
        assert task.is_complete is False
        with pytest.warns(DeprecationWarning, match=r"Task\.done is deprecated; use Task\.is_complete"):
            assert task.done is False
    assert task.is_complete is True
    with pytest.warns(DeprecationWarning, match=r"use Task\.is_complete"):
        assert task.done is True


def test_item_questions_are_is_item_done_and_done_item_ids(run: syncpoint.Run) -> None:
    task = run.task("t")
    task.item_done("a")
    task.item_failed("b", "gone", retryable=False)
    task.item_failed("c", "timeout", retryable=True)
    assert task.done_item_ids(["a", "b", "c", "d"]) == {"a", "b"}
    assert task.is_item_done("a") and not task.is_item_done("c")
    with pytest.warns(DeprecationWarning, match=r"Task\.is_done is deprecated; use Task\.is_item_done"):
        assert task.is_done("a") is True
    with pytest.warns(DeprecationWarning, match=r"Task\.done_ids is deprecated; use Task\.done_item_ids"):
        assert task.done_ids(["a", "b", "c", "d"]) == {"a", "b"}


def test_a_deprecation_points_at_the_callers_line(run: syncpoint.Run) -> None:
    with pytest.warns(DeprecationWarning) as caught:
        run.task("t").is_done("x")
    assert caught[0].filename == __file__


def test_every_task_and_task_records_and_all_tasks_warns(run: syncpoint.Run) -> None:
    with run.task("a"):
        pass
    run.task("b")
    assert [t.name for t in run.every_task()] == ["a", "b"]
    assert [t.name for t in run.tasks()] == ["b"]  # only the ones still to do
    assert [(r.name, r.status) for r in run.task_records()] == [("a", TaskStatus.COMPLETED), ("b", TaskStatus.PENDING)]
    assert not hasattr(run.task("a"), "snapshot")  # ``task.record`` is the one way
    with pytest.warns(DeprecationWarning, match=r"Run\.all_tasks is deprecated; use Run\.every_task"):
        assert run.all_tasks() == run.every_task()


def test_job_bookmarks_and_job_state_warns(tmp_path: Path) -> None:
    job = syncpoint.Job("marks", store=f"sqlite:{tmp_path / 'cp.db'}")
    with job.run() as run:
        run.state.set("since", "2024-01-01")
    assert [(e.key, e.value) for e in job.bookmarks()] == [("since", "2024-01-01")]
    with pytest.warns(DeprecationWarning, match=r"Job\.state is deprecated; use Job\.bookmarks"):
        assert job.state() == job.bookmarks()
    job.reset_bookmarks("since")
    assert job.bookmarks() == []
    job.close()


def test_the_watermark_order_is_a_str_enum_and_the_old_spellings_still_work(run: syncpoint.Run) -> None:
    assert syncpoint.NEWEST_FIRST is syncpoint.Order.NEWEST_FIRST
    assert syncpoint.OLDEST_FIRST is syncpoint.Order.OLDEST_FIRST
    assert syncpoint.Order.NEWEST_FIRST == "newest_first" and syncpoint.Order("oldest_first") is syncpoint.OLDEST_FIRST
    for order in (syncpoint.Order.OLDEST_FIRST, syncpoint.OLDEST_FIRST, "oldest_first"):
        assert run.task(f"t-{order}").watermark(order).order is syncpoint.Order.OLDEST_FIRST
    mark = run.task("stored").watermark(syncpoint.Order.NEWEST_FIRST)
    mark.advance("1", 5)
    assert run.task("stored").cursor == {"type": "watermark", "order": "newest_first", "value": 5, "value_type": "int"}
    assert type(run.task("stored").cursor["order"]) is str  # type: ignore[index]  # the stored cursor is plain JSON
    with pytest.raises(syncpoint.UsageError, match="order must be 'newest_first' or 'oldest_first', not 'up'"):
        run.task("bad").watermark("up")


def test_is_phase_complete_and_phase_done_warns(run: syncpoint.Run) -> None:
    assert not run.is_phase_complete("discovery")
    run.complete_phase("discovery")
    assert run.is_phase_complete("discovery")
    with pytest.warns(DeprecationWarning, match=r"Run\.phase_done is deprecated; use Run\.is_phase_complete"):
        assert run.phase_done("discovery") is True


OLD_NAMES = re.compile(
    r"\.is_done\(|\.done_ids\(|\.all_tasks\(|\.task_snapshots\(|\.page_done\(|\.reset_state\(|\bjob\.state\(\)"
    r"|\.phase_done\(|TaskStatus\.COMPLETE\b|status\.COMPLETE\b|\btask\.done\b(?!\()"
)


def test_nothing_of_ours_uses_the_old_names() -> None:
    """The old names are for users' code: syncpoint, its examples, benchmarks, tests and docs use the new ones
    (the aliases' own definitions and this file's checks of them aside)."""
    root = Path(__file__).resolve().parents[2]
    files = [p for folder in ("src", "examples", "benchmarks", "tests", "docs") for p in (root / folder).rglob("*")
             if p.suffix in (".py", ".md")] + [root / "README.md"]
    allowed = {Path(__file__), root / "docs" / "API.md"}  # the Names table lists the old names
    offenders = []
    for path in files:
        if path in allowed:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if OLD_NAMES.search(line) and not any(word in line for word in ("warn_renamed", "def ", "Deprecat")):
                offenders.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    assert offenders == []

"""Which errors fail only their task (or item) and which end the run: ``task.isolated(errors=...)`` and
``run.map(..., errors=...)``, through real runs on SQLite and the JSON store. A sync that isolates its API's
errors must not also swallow a full disk or a failed commit, and an error the map cannot record must reach
the caller instead of looking like work done."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
from helpers import EMBEDDED_STORES, store_url

import syncpoint
from syncpoint import RunStatus, TaskStatus


class ApiError(Exception):
    """Stands in for ``syncpoint.http.HttpError``: the errors that are one task's own."""


@pytest.fixture(params=EMBEDDED_STORES)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return store_url(request.param, tmp_path)


def test_isolated_errors_fail_their_task_and_any_other_error_ends_the_run_at_its_cursor(url: str) -> None:
    job = syncpoint.Job("iso", store=url)
    with pytest.raises(OSError, match="disk full"), job.run() as run:
        for task in run.tasks(["alice", "bob", "carol", "dave"]):
            with task.isolated(errors=ApiError):
                cursor = task.page_cursor()
                cursor.done(1, records=5)
                if task.name == "bob":
                    raise ApiError("401 token revoked")
                if task.name == "carol":
                    raise OSError("disk full")
    assert run.status is RunStatus.FAILED and "disk full" in (run.record.error or "")
    tasks = {t.name: t for t in job.store.get_tasks(run.run_id)}
    assert tasks["alice"].status is TaskStatus.COMPLETED
    assert tasks["bob"].status is TaskStatus.FAILED and tasks["bob"].error == "401 token revoked"
    assert tasks["carol"].status is TaskStatus.IN_PROGRESS and tasks["carol"].cursor == {"type": "page", "page": 2}
    assert tasks["dave"].status is TaskStatus.PENDING  # the run ended before it

    with job.run(resume=True) as again:
        offered = [t.name for t in again.tasks()]
        assert offered == ["bob", "carol", "dave"]  # bob's ApiError is retryable by default
        assert again.task("carol").page_cursor().page == 2  # carol continues where she stopped


def test_isolated_takes_a_tuple_and_by_default_isolates_every_exception(url: str) -> None:
    job = syncpoint.Job("iso", store=url)
    with job.run() as run:
        for task in run.tasks(["a", "b", "c"]):
            with task.isolated(errors=(ApiError, KeyError)) if task.name != "c" else task.isolated():
                raise {"a": ApiError("x"), "b": KeyError("y"), "c": RuntimeError("z")}[task.name]
    assert [t.status for t in job.store.get_tasks(run.run_id)] == [TaskStatus.FAILED] * 3
    assert run.exit_code == 1


def test_map_over_tasks_with_errors_fails_those_and_an_other_error_stops_every_worker(url: str) -> None:
    """The shape of the GitHub collector: an HTTP error fails its repository; a local error (a full disk)
    ends the map — the other workers stop at their next page instead of finishing their repository, the task
    that hit it stays at its cursor, and the error is raised."""
    job = syncpoint.Job("iso", store=url)
    names = [f"repo-{n}" for n in range(8)]
    pages: dict[str, int] = {}
    started = threading.Barrier(3, timeout=10)

    def collect(task: syncpoint.Task) -> None:
        cursor = task.page_cursor()
        if task.name == "repo-1":
            raise ApiError("404")
        if task.name in ("repo-0", "repo-2", "repo-3"):
            started.wait()  # three long tasks and the failing one are in flight together
        for page in range(cursor.page, 200):
            task.run.checkpoint()  # a safe point per page, as a paging loop has
            if task.name == "repo-3" and page == 3:
                raise OSError("disk full")
            pages[task.name] = page
            cursor.done(page, records=1)
            time.sleep(0.005)

    with pytest.raises(OSError, match="disk full"), job.run() as run:
        run.map(collect, run.pending_tasks(names), concurrency=4, errors=ApiError)
    assert run.status is RunStatus.FAILED
    tasks = {t.name: t for t in job.store.get_tasks(run.run_id)}
    assert tasks["repo-1"].status is TaskStatus.FAILED and tasks["repo-1"].error == "404"
    assert tasks["repo-3"].status is TaskStatus.IN_PROGRESS and tasks["repo-3"].cursor == {"type": "page", "page": 3}
    for name in ("repo-0", "repo-2", "repo-4"):  # repo-4 took repo-1's worker: all stopped, none finished
        assert tasks[name].status is TaskStatus.IN_PROGRESS and pages[name] < 50, name
    assert all(tasks[n].status is TaskStatus.PENDING for n in names[5:])  # nothing handed out after the error

    with job.run(resume=True) as again:
        assert again.task("repo-3").page_cursor().page == 3


def test_an_error_handing_out_the_work_is_raised_not_taken_for_the_end_of_it(url: str) -> None:
    """Regression: an exception met while handing out pending items (here the key function; in life a store
    lookup) ended the map quietly, and the body went on to complete a task whose later items were never
    processed."""
    job = syncpoint.Job("iso", store=url)

    def key(n: int) -> str:
        if n == 700:
            raise LookupError("no key for 700")
        return str(n)

    processed: list[int] = []
    with pytest.raises(LookupError, match="no key for 700"), job.run() as run:
        task = run.task("items")
        with task:
            run.map(processed.append, task.pending(range(1000), key=key, batch=100), concurrency=4)
    assert len(processed) <= 700
    [record] = job.store.get_tasks(run.run_id)
    assert record.status is not TaskStatus.COMPLETED and run.status is RunStatus.FAILED


def test_asyncio_map_with_errors_fails_those_items_and_raises_any_other(url: str) -> None:
    job = syncpoint.Job("iso", store=url)

    async def fetch(n: int) -> None:
        await asyncio.sleep(0)
        if n == 3:
            raise ApiError("503 after retries")
        if n == 40:
            raise OSError("disk full")

    async def main() -> syncpoint.AsyncRun:
        async with job.arun() as run:
            task = run.task("items")
            with task:
                await run.map(fetch, task.pending(range(100), key=str), concurrency=4, errors=ApiError)
        return run  # not reached

    with pytest.raises(OSError, match="disk full"):
        asyncio.run(main())
    [run] = job.runs()
    assert run.status is RunStatus.FAILED
    failed = list(job.store.ledger_failed(run.run_id, "items"))
    assert [(f.item_id, f.error) for f in failed] == [("3", "503 after retries")]
    assert "40" not in {f.item_id for f in failed}

"""Concurrency inside one run, in-process, on all three stores: progress from many threads, ``run.map`` over
items, tasks and slices, budgets under concurrency, and the asyncio front with 64 coroutines."""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import drop_pg_schema, require_pg, store_url, with_query

import syncpoint
from syncpoint import RunStatus, TaskStatus


@pytest.fixture(params=["sqlite", "json", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param != "postgres":
        yield store_url(request.param, tmp_path)
        return
    base = require_pg()
    schema = f"sp_conc_{random.randrange(16**8):08x}"
    try:
        yield with_query(base, schema=schema)
    finally:
        drop_pg_schema(schema)


def job_on(url: str, **kw: object) -> syncpoint.Job:
    return syncpoint.Job("conc", {"v": 1}, store=url, **kw)  # type: ignore[arg-type]


def test_item_done_from_eight_threads_counts_exactly(url: str) -> None:
    job = job_on(url, save_policy=syncpoint.SavePolicy(every_items=97))
    with job.run() as run:
        task = run.task("t")

        def work(start: int) -> None:
            for i in range(start, 2000, 8):
                if i % 100 == 7:
                    task.item_failed(i, "bad", retryable=False)
                else:
                    task.item_done(i)
            run.state.set(f"w{start}", start)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert run.exit_code == 0
    [record] = job.store.get_tasks(run.run_id)
    assert (record.ok, record.failed) == (1980, 20)
    counts = job.store.ledger_counts(run.run_id, "t")
    assert (counts.ok, counts.failed) == (1980, 20)
    assert {e.key for e in job.bookmarks()} == {f"w{n}" for n in range(8)}


def test_map_over_pending_items_records_out_of_order_and_resume_retries_only_failures(url: str) -> None:
    job = job_on(url)
    calls: Counter[str] = Counter()
    lock = threading.Lock()

    def fetch(item: str) -> None:
        with lock:
            calls[item] += 1
        if item in ("i33", "i77") and calls[item] == 1:
            raise ConnectionError(f"{item}: reset")  # unexpected: retryable
        if item == "i50":
            raise KeyError(item)  # declared permanent below

    ids = [f"i{n}" for n in range(120)]
    job = job_on(url, permanent_errors=[KeyError])
    with job.run() as run:
        task = run.task("t")
        with task:
            for item in ids[:20]:  # done before: skipped by pending()
                task.item_done(item)
            summary = run.map(fetch, task.pending(ids), concurrency=16)
    assert (summary.done, summary.failed) == (97, 3)
    assert calls["i0"] == 0 and calls["i20"] == 1
    assert (run.exit_code, run.status) == (1, RunStatus.FAILED)
    with job.run(resume=True) as again:
        task = again.task("t")
        with task:
            summary = again.map(fetch, task.pending(ids), concurrency=16)
    assert (summary.done, summary.failed) == (2, 0)  # only the retryable ones came back
    assert again.exit_code == 0
    [record] = job.store.get_tasks(run.run_id)
    assert (record.status, record.ok, record.failed) == (TaskStatus.COMPLETED, 119, 1)


def test_map_never_records_more_items_than_the_budget(url: str) -> None:
    job = job_on(url)
    with job.run(max_items=50) as run:
        task = run.task("t")
        run.map(lambda item: None, task.pending(range(1000), key=str), concurrency=16)
    assert (run.exit_code, run.status) == (2, RunStatus.PARTIAL)
    assert job.store.ledger_counts(run.run_id, "t").ok == 50


def test_map_over_tasks_isolates_failures(url: str) -> None:
    job = job_on(url)
    with job.run() as run:
        names = [f"repo-{n}" for n in range(12)]
        done: list[str] = []

        def collect(task: syncpoint.Task) -> None:
            if task.name == "repo-5":
                raise ValueError("HTTP 404")
            task.set_cursor({"n": 1}, records=3)
            done.append(task.name)

        summary = run.map(collect, run.pending_tasks(names), concurrency=4)
    assert (summary.done, summary.failed) == (11, 1)
    statuses = {t.name: t.status for t in job.store.get_tasks(run.run_id)}
    assert statuses["repo-5"] is TaskStatus.FAILED and statuses["repo-4"] is TaskStatus.COMPLETED
    assert run.exit_code == 1  # ValueError is retryable by default
    with job.run(resume=True) as again:
        assert [t.name for t in again.pending_tasks()] == ["repo-5"]


def test_slices_finish_out_of_order_and_resume_redoes_only_the_gaps(url: str) -> None:
    job = job_on(url, save_policy=syncpoint.SavePolicy(every_pages=1))
    seen: list[int] = []
    with job.run() as run:
        task = run.task("offsets")
        pieces = task.slices(0, 1000, 100)
        order = list(pieces)
        assert [(p.start, p.end) for p in order[:2]] == [(0, 100), (100, 200)]
        for piece in (order[3], order[0], order[5], order[1]):  # out of order; 2 and 4 left as gaps
            pieces.done(piece, records=100)
        assert pieces.watermark == 200
        assert task.cursor["watermark"] == "200"  # type: ignore[index]
        run.pacer.request_stop("stopped by test", 130)
        run.checkpoint()  # raises Stopped: the run ends interrupted
    assert run.status is RunStatus.INTERRUPTED
    with job.run(resume=True) as again:
        task = again.task("offsets")
        pieces = task.slices(0, 1000, 100)
        assert [(p.start, p.end) for p in pieces][:3] == [(200, 300), (400, 500), (600, 700)]

        def fetch(piece: syncpoint.Slice) -> int:
            seen.append(int(piece.start))  # type: ignore[call-overload]
            return 100

        again.map(fetch, pieces, concurrency=4)
        assert pieces.watermark == 1000 and len(pieces.finished) == 1
    assert sorted(seen) == [200, 400, 600, 700, 800, 900]
    assert again.exit_code == 0


def test_time_windows_as_slices_resume_from_the_gaps(tmp_path: Path) -> None:
    from datetime import datetime, timedelta, timezone

    job = job_on(store_url("sqlite", tmp_path))
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    end = datetime(2024, 3, 1, tzinfo=timezone.utc)
    with job.run(max_items=10**9) as run:
        task = run.task("days")
        windows = task.slices(start, end, timedelta(days=7))
        listed = list(windows)
        assert len(listed) == 9 and listed[-1].end == end
        windows.done(listed[1])
        assert windows.watermark == start
        windows.done(listed[0])
        assert windows.watermark == start + timedelta(days=14)


def test_an_exception_in_a_plain_map_stops_it_and_is_raised(tmp_path: Path) -> None:
    job = job_on(store_url("sqlite", tmp_path))
    with job.run() as run:

        def boom(n: int) -> None:
            if n == 3:
                raise RuntimeError("bug")

        with pytest.raises(RuntimeError, match="bug"):
            run.map(boom, range(10), concurrency=2)


def test_asyncio_sixty_four_coroutines(url: str) -> None:
    job = job_on(url, save_policy=syncpoint.SavePolicy(every_items=50))
    fetched: Counter[int] = Counter()

    async def fetch(item: int) -> None:
        await asyncio.sleep(0.001 * (item % 7))
        fetched[item] += 1
        if item % 97 == 5:
            raise ConnectionError("reset")

    async def main() -> syncpoint.AsyncRun:
        async with job.arun() as run:
            task = run.task("users")
            with task:
                summary = await run.map(fetch, task.pending(range(1000), key=str), concurrency=64)
            assert summary.done + summary.failed == 1000 and summary.failed == 11
            run.state.set("last", 999)
        return run

    run = asyncio.run(main())
    assert run.exit_code == 1 and run.record.status is RunStatus.FAILED  # 11 retryable failures
    assert max(fetched.values()) == 1
    [record] = job.store.get_tasks(run.run_id)
    assert (record.ok, record.failed) == (989, 11)

    async def resume() -> syncpoint.AsyncRun:
        async with job.arun(resume=True) as run:
            task = run.task("users")
            with task:
                summary = await run.map(lambda i: asyncio.sleep(0), task.pending(range(1000), key=str))
            assert summary.done == 11
        return run

    again = asyncio.run(resume())
    assert again.exit_code == 0


def test_asyncio_commit_runs_off_the_event_loop(tmp_path: Path) -> None:
    """A commit that falls due in a coroutine is done by the committer in a thread, not in the caller."""
    job = job_on(store_url("sqlite", tmp_path), save_policy=syncpoint.SavePolicy(every_items=10))
    threads: set[str] = set()

    async def main() -> None:
        async with job.arun() as run:
            original = run.sync.commit

            def spy() -> None:
                threads.add(threading.current_thread().name)
                original()

            run.sync.commit = spy  # type: ignore[method-assign]
            task = run.task("t")
            for i in range(100):
                task.item_done(i)
                await asyncio.sleep(0)
            await asyncio.sleep(0.05)

    asyncio.run(main())
    assert threads and threading.main_thread().name not in threads

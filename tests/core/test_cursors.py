"""The cursors a sync resumes from, each through real runs that stop (a budget, as Ctrl+C or ``kill -9`` would
at a safe point) and resume, on SQLite and on the JSON store: nothing fetched is written twice, nothing is
lost, and the checkpoint says where the next run starts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from helpers import EMBEDDED_STORES, store_url

import syncpoint
from syncpoint import RunStatus

NO_SAVE_POLICY = syncpoint.SavePolicy(every_items=10**9, every_pages=10**9, every_seconds=3600)  # commits: stops


@pytest.fixture(params=EMBEDDED_STORES)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return store_url(request.param, tmp_path)


def run_until_done(job: syncpoint.Job, body: object, *, budget: int, limit: int = 100) -> list[int]:
    """Invoke ``body`` with ``max_items=budget`` until the run completes; each invocation's exit code."""
    codes: list[int] = []
    for _ in range(limit):
        with job.run(resume=True, max_items=budget) as run:
            body(run)  # type: ignore[operator]
        assert run.exit_code is not None
        codes.append(run.exit_code)
        if run.exit_code == 0:
            return codes
        assert run.exit_code == 2, run.error
    raise AssertionError(f"not done after {limit} runs: {codes}")


# -- TokenCursor ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenPage:
    docs: list[str]
    next: str | None


def token_api(pages: int, per_page: int) -> dict[str | None, TokenPage]:
    """An API with opaque next-page tokens: the first page is asked for with no token."""
    tokens: list[str | None] = [None] + [f"tok-{n:03d}" for n in range(1, pages)]
    return {
        token: TokenPage([f"doc-{n}-{i}" for i in range(per_page)], tokens[n + 1] if n + 1 < pages else None)
        for n, token in enumerate(tokens)
    }


def test_a_token_cursor_resumes_from_its_token_and_ends_with_the_last_page(url: str) -> None:
    api = token_api(pages=7, per_page=10)
    asked: list[str | None] = []
    written: list[str] = []

    def body(run: syncpoint.Run) -> None:
        cursor = run.task("docs").token_cursor()
        while not cursor.finished:
            page = api[cursor.token]
            asked.append(cursor.token)
            written.extend(page.docs)                           # write the page,
            cursor.done(page.next, records=len(page.docs))      # then record where to continue

    job = syncpoint.Job("tokens", store=url, save_policy=NO_SAVE_POLICY)
    with job.run(max_items=25) as run:
        body(run)
    assert run.exit_code == 2 and asked == [None, "tok-001", "tok-002"]  # stopped past 25 records: 3 pages
    stored = job.store.get_tasks(run.run_id)[0]
    assert stored.cursor == {"type": "token", "token": "tok-003"}
    assert (stored.pages, stored.records) == (3, 30)

    codes = run_until_done(job, body, budget=25)
    assert codes == [2, 0]  # 3 more pages, then the last one: it ends exactly at the last page's token, None
    assert asked == [None] + [f"tok-{n:03d}" for n in range(1, 7)]  # each page asked for once
    assert written == [doc for page in api.values() for doc in page.docs]
    assert job.runs()[0].status is RunStatus.COMPLETED and len(job.runs()) == 1


def test_a_token_cursor_stopped_on_its_last_page_fetches_nothing_more(url: str) -> None:
    """A stop at the last page's ``done(None)`` (here a budget; a signal alike) leaves the token None, as on
    a fresh task: ``finished`` tells them apart, so the resume does not start over from the first page."""
    api = token_api(pages=3, per_page=10)
    asked: list[str | None] = []

    def body(run: syncpoint.Run) -> None:
        cursor = run.task("docs").token_cursor()
        while not cursor.finished:
            asked.append(cursor.token)
            page = api[cursor.token]
            cursor.done(page.next, records=len(page.docs))

    job = syncpoint.Job("tokens", store=url, save_policy=NO_SAVE_POLICY)
    with job.run(max_items=25) as run:  # the third page, the last one, takes it past 25
        body(run)
    assert run.exit_code == 2 and asked == [None, "tok-001", "tok-002"]
    with job.run(resume=True) as again:
        cursor = again.task("docs").token_cursor()
        assert cursor.finished and cursor.token is None
        body(again)
    assert again.exit_code == 0 and asked == [None, "tok-001", "tok-002"]


# -- OffsetCursor -----------------------------------------------------------------------------------------


def test_an_offset_cursor_resumes_at_the_rows_already_written(url: str) -> None:
    table = [f"row-{n:03d}" for n in range(95)]  # a source that pages with OFFSET/LIMIT ($skip/$top)
    asked: list[int] = []
    written: list[str] = []

    def body(run: syncpoint.Run) -> None:
        cursor = run.task("rows").offset_cursor()
        while True:
            rows = table[cursor.offset:cursor.offset + 10]
            asked.append(cursor.offset)
            if not rows:
                return
            written.extend(rows)
            cursor.done(len(rows))

    job = syncpoint.Job("offsets", store=url, save_policy=NO_SAVE_POLICY)
    with job.run(max_items=35) as run:
        body(run)
    assert run.exit_code == 2 and asked == [0, 10, 20, 30]  # stopped past 35 records: 4 pages
    stored = job.store.get_tasks(run.run_id)[0]
    assert stored.cursor == {"type": "offset", "offset": 40} and (stored.pages, stored.records) == (4, 40)

    codes = run_until_done(job, body, budget=35)
    assert codes == [2, 0]
    assert asked == [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95]  # each offset once; the empty page ends it
    assert written == table
    assert job.store.get_tasks(run.run_id)[0].records == 95


def test_cursors_of_another_kind_start_afresh(url: str) -> None:
    job = syncpoint.Job("kinds", store=url)
    with job.run(max_items=5) as run:
        run.task("t").offset_cursor().done(10)
    with job.run(resume=True) as again:
        task = again.task("t")
        assert task.offset_cursor().offset == 10
        assert task.token_cursor().token is None and not task.token_cursor().finished
        assert task.page_cursor().page == 1


# -- the OLDEST_FIRST watermark ------------------------------------------------------------------------------

BASE = datetime(2024, 3, 1, tzinfo=timezone.utc)


def oldest_first(total: int, tie: int) -> list[tuple[str, datetime]]:
    """Oldest first, ``tie`` records per timestamp, ties in ID order: page boundaries fall inside the ties."""
    return sorted(((f"{i:05d}", BASE + timedelta(minutes=i // tie)) for i in range(total)),
                  key=lambda r: (r[1], r[0]))


def test_an_oldest_first_watermark_resumes_at_its_value_and_skips_what_it_saw(url: str) -> None:
    records = oldest_first(300, tie=17)
    written: list[str] = []
    skipped: list[str] = []
    asked_from: list[datetime | None] = []

    def body(run: syncpoint.Run) -> None:
        mark = run.task("events").watermark(syncpoint.OLDEST_FIRST)
        start, end = mark.bounds()
        assert end is None
        asked_from.append(start)  # type: ignore[arg-type]
        served = [r for r in records if start is None or r[1] >= start]  # the API's inclusive filter
        for first in range(0, len(served), 20):  # pages of 20
            for record_id, value in served[first:first + 20]:
                run.checkpoint()
                if mark.skip(record_id, value):
                    skipped.append(record_id)
                    continue
                written.append(record_id)
                mark.advance(record_id, value)
            mark.page_done()

    job = syncpoint.Job("events", store=url, save_policy=NO_SAVE_POLICY)
    codes = run_until_done(job, body, budget=40)
    assert len(codes) >= 7 and codes[-1] == 0
    assert written == [record_id for record_id, _ in records]  # every record once, in order
    assert skipped  # resumes landed inside ties: the IDs seen at the boundary value were skipped
    assert asked_from[0] is None and asked_from[1:] == sorted(asked_from[1:])  # the value only moves forward
    assert all(value is not None and value > BASE for value in asked_from[1:])
    [task] = job.store.get_tasks(job.runs()[0].run_id)
    assert task.cursor == {"type": "watermark", "order": "oldest_first", "value": records[-1][1].isoformat(),
                           "value_type": "datetime"}


def test_an_oldest_first_watermark_keeps_its_start_an_explicit_start_wins_and_the_order_is_fixed(url: str) -> None:
    job = syncpoint.Job("events", store=url)
    with job.run(max_items=3) as run:
        mark = run.task("events").watermark(syncpoint.OLDEST_FIRST)
        for n in range(5):
            run.checkpoint()
            mark.advance(str(n), BASE + timedelta(days=n))
    assert run.exit_code == 2
    with job.run(resume=True) as again:
        mark = again.task("events").watermark(syncpoint.OLDEST_FIRST)
        assert mark.bounds() == (BASE + timedelta(days=2), None)  # the value reached, inclusive
        assert mark.bounds(start=BASE) == (BASE, None)  # a --start given on the command line wins
        assert mark.skip("2", BASE + timedelta(days=2)) and not mark.skip("3", BASE + timedelta(days=2))
        assert not mark.skip("1", BASE + timedelta(days=1))  # behind the value: the filter keeps it out
        with pytest.raises(syncpoint.UsageError, match="checkpointed with order 'oldest_first'"):
            again.task("events").watermark(syncpoint.NEWEST_FIRST)

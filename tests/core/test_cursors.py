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
            mark.done()

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


# -- extra fields -------------------------------------------------------------------------------------------


def test_extra_fields_commit_with_the_position_and_come_back_on_resume(url: str) -> None:
    """What else a resume must know (a file's length, a count) is committed in the same checkpoint as the
    position, for page, token and offset cursors alike; ``done`` without ``extra`` keeps the last ones."""
    job = syncpoint.Job("extras", store=url, save_policy=NO_SAVE_POLICY)
    newest = "18446744073709551615"  # beyond 2**53: kept as a string
    with job.run() as run:
        run.task("tokens").token_cursor().done("tok-1", records=1, extra={"bytes": 4096, "newest": newest})
        run.task("pages").page_cursor().done(1, extra={"seen": ["a", "b"]})
        offsets = run.task("offsets").offset_cursor()
        offsets.done(10, extra={"file": "part-1"})
        offsets.done(10)  # no extra given: the last ones stay
        raise KeyboardInterrupt  # Ctrl+C: the run ends interrupted, committed
    assert run.exit_code == 130
    stored = {t.name: t.cursor for t in job.store.get_tasks(run.run_id)}
    assert stored == {
        "tokens": {"type": "token", "token": "tok-1", "bytes": 4096, "newest": newest},
        "pages": {"type": "page", "page": 2, "seen": ["a", "b"]},
        "offsets": {"type": "offset", "offset": 20, "file": "part-1"},
    }
    with job.run(resume=True) as again:
        tokens = again.task("tokens").token_cursor()
        assert (tokens.token, tokens.extra) == ("tok-1", {"bytes": 4096, "newest": newest})
        assert again.task("pages").page_cursor().extra == {"seen": ["a", "b"]}
        assert again.task("offsets").offset_cursor().extra == {"file": "part-1"}
        tokens.done(None, extra={"bytes": 8192})  # replaces the extra fields
        assert tokens.finished and tokens.extra == {"bytes": 8192}
        assert again.task("tokens").token_cursor().extra == {"bytes": 8192}
        with pytest.raises(syncpoint.UsageError, match="cannot be named token, type"):
            tokens.done("x", extra={"token": "y", "type": "z"})
        assert (tokens.token, tokens.finished) == (None, True)  # refused: it did not move
        pages = again.task("pages").page_cursor()
        before = pages.page
        with pytest.raises(syncpoint.UsageError, match="JSON-serialisable"):
            pages.done(before, extra={"when": datetime(2024, 1, 1)})
        assert pages.extra == {"seen": ["a", "b"]}  # refused: the last ones stay
        assert pages.page == before  # and the page did not move, in memory as in the store
        offsets = again.task("offsets").offset_cursor()
        at = offsets.offset
        with pytest.raises(syncpoint.UsageError, match="JSON-serialisable"):
            offsets.done(5, extra={"when": datetime(2024, 1, 1)})
        assert offsets.offset == at


def test_a_checkpoint_written_before_extra_fields_existed_resumes_as_before(url: str) -> None:
    """The stored JSON did not change: cursors that 0.1.0 wrote (``{"type": "token", "token": …}`` and the
    like) resume at their position with no extra fields, and the bookmarks crawler's hand-written token
    cursor with its own keys beside the token reads back with those keys as extra fields."""
    written_by_0_1 = {
        "tokens": {"type": "token", "token": "tok-003"},
        "finished": {"type": "token", "token": None},
        "pages": {"type": "page", "page": 4},
        "offsets": {"type": "offset", "offset": 40},
        "alice": {"type": "token", "token": "c-2", "newest": "1000000000000000001", "new": 200, "bytes": None},
    }
    job = syncpoint.Job("old", store=url)
    with job.run() as run:
        for name, cursor in written_by_0_1.items():
            run.task(name).set_cursor(cursor)
        raise KeyboardInterrupt
    with job.run(resume=True) as again:
        tokens = again.task("tokens").token_cursor()
        assert (tokens.token, tokens.finished, tokens.extra) == ("tok-003", False, {})
        assert again.task("finished").token_cursor().finished
        assert (again.task("pages").page_cursor().page, again.task("pages").page_cursor().extra) == (4, {})
        assert (again.task("offsets").offset_cursor().offset, again.task("offsets").offset_cursor().extra) == (40, {})
        alice = again.task("alice").token_cursor()
        assert alice.token == "c-2"
        assert alice.extra == {"newest": "1000000000000000001", "new": 200, "bytes": None}
        alice.done(None, records=5, extra={**alice.extra, "new": 205})
    stored = {t.name: t.cursor for t in job.store.get_tasks(again.run_id)}
    assert stored["alice"] == {"type": "token", "token": None, "newest": "1000000000000000001", "new": 205,
                               "bytes": None}

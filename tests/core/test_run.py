"""The run runtime through the public API, in-process, on the embedded stores."""

from __future__ import annotations

import logging
import signal
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from helpers import EMBEDDED_STORES, store_url
from jobs.counting_job import source

import syncpoint
from syncpoint import RunStatus, TaskStatus, codec
from syncpoint.model import LedgerKind


@pytest.fixture(params=EMBEDDED_STORES)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return store_url(request.param, tmp_path)


def make_job(url: str, name: str = "job", config: dict[str, object] | None = None, **kw: object) -> syncpoint.Job:
    return syncpoint.Job(name, config if config is not None else {"v": 1}, store=url, **kw)  # type: ignore[arg-type]


def test_newest_first_watermark_with_ties_neither_loses_nor_repeats(url: str) -> None:
    """Every interruption lands inside a run of equal timestamps; resume uses the inclusive end filter."""
    records = source(500, tie=23)
    job = make_job(url, save_policy=syncpoint.SavePolicy(every_items=10**9, every_pages=10**9))
    written: list[str] = []
    interruptions = 0
    for _attempt in range(200):
        with job.run(resume=True, max_items=17) as run:
            mark = run.task("docs").watermark(syncpoint.NEWEST_FIRST)
            _, end = mark.bounds()
            for start in range(0, len(records), 10):  # pages of 10 from the "server"
                page = [r for r in records if end is None or r[1] <= end][start:start + 10]
                if not page:
                    break
                for record_id, value in page:
                    run.checkpoint()
                    if not mark.skip(record_id, value):
                        written.append(record_id)
                        mark.advance(record_id, value)
        if run.exit_code == 0:
            break
        assert run.exit_code == 2
        interruptions += 1
    assert interruptions > 20  # it really was interrupted many times
    assert len(written) == len(set(written)) == 500
    cursor = job.runs(limit=1)[0]
    assert cursor.status is RunStatus.COMPLETED


def test_boundary_ids_live_in_store_rows_not_in_the_cursor(url: str) -> None:
    job = make_job(url)
    same = datetime(2024, 1, 1, tzinfo=timezone.utc)
    with job.run(max_items=5000) as run:
        task = run.task("t")
        mark = task.watermark()
        for i in range(5000):
            run.checkpoint()
            mark.advance(str(i), same)
    assert run.exit_code == 0  # the budget was reached exactly with the last record: nothing remains
    stored = job.store.get_tasks(run.run_id)[0]
    assert len(codec.dumps(stored.cursor)) < 200
    assert job.store.ledger_counts(run.run_id, "t", LedgerKind.BOUNDARY).ok == 5000


def test_explicit_end_wins_over_the_checkpoint(url: str) -> None:
    job = make_job(url)
    with job.run(max_items=3) as run:
        mark = run.task("t").watermark()
        for i, day in enumerate((5, 4, 3, 2)):
            run.checkpoint()
            mark.advance(str(i), datetime(2024, 1, day, tzinfo=timezone.utc))
    with job.run(resume=True) as run:
        mark = run.task("t").watermark()
        assert mark.bounds() == (None, datetime(2024, 1, 3, tzinfo=timezone.utc))
        override = datetime(2023, 6, 1, tzinfo=timezone.utc)
        assert mark.bounds(end=override) == (None, override)


def test_page_cursor_resumes_from_next_page_and_completed_run_leaves_nothing(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    job = make_job(url)
    with job.run(max_seconds=3600) as run, run.task("repo:pulls") as task:
        pages = task.page_cursor()
        for page in range(pages.page, 4):
            pages.done(page, records=100)
        raise KeyboardInterrupt  # as if Ctrl+C without our handler (not the main thread, say)
    assert run.exit_code == 130 and run.status is RunStatus.INTERRUPTED
    with job.run(resume=True) as run:
        task = run.task("repo:pulls")
        assert task.page_cursor().page == 4 and task.record.pages == 3 and task.record.records == 300
    assert run.exit_code == 0
    with caplog.at_level(logging.INFO, "syncpoint"), job.run(resume=True) as run:
        assert run.task("repo:pulls").page_cursor().page == 1  # fresh
    assert "nothing to resume" in caplog.text


def test_config_change_is_refused_naming_keys_unless_forced(url: str) -> None:
    job = make_job(url, config={"org": "a", "year": 2024, "nested": {"x": 1}})
    with job.run(max_items=1) as run:
        task = run.task("t")
        task.item_done("1")
        run.checkpoint()
    changed = make_job(url, config={"org": "b", "year": 2024, "nested": {"x": 2}, "extra": True})
    with pytest.raises(syncpoint.ConfigChanged) as err, changed.run(resume=True):
        pass
    assert err.value.exit_code == 64
    assert "extra, nested.x, org" in str(err.value) and "--force" in str(err.value)
    assert changed.execute(syncpoint.RunOptions(resume=True), lambda run: None) == 64
    stored = job.store.get_run(run.run_id)
    assert stored is not None and stored.config["org"] == "a" and stored.status is RunStatus.PARTIAL
    with changed.run(resume=True, force=True) as again:
        assert again.task("t").is_item_done("1")
    assert again.record.config["org"] == "b"


def test_items_failed_permanent_skipped_retryable_retried_and_retry_failed(url: str) -> None:
    """Issue 11.1: a run with retryable item failures never ends completed/exit 0; a plain --resume offers
    exactly those items again and completes; --retry-failed retries the permanent ones on the same run."""
    job = make_job(url)
    with job.run() as run, run.task("loader") as task:
        for item in task.iterate(["a", "b", "c", "d"]):
            if item == "b":
                task.item_failed(item, "bad record", retryable=False)
            elif item == "c":
                task.item_failed(item, "HTTP 503", retryable=True)
            else:
                task.item_done(item)
    assert (run.exit_code, run.status) == (1, RunStatus.FAILED)
    assert "1 item(s) failed with retryable errors" in (run.record.error or "")
    assert sorted(job.store.ledger_failed(run.run_id, "loader"), key=lambda f: f.item_id) == [
        syncpoint.FailedItem("b", "bad record", False), syncpoint.FailedItem("c", "HTTP 503", True)
    ]
    with job.run(resume=True) as again:
        assert again.run_id == run.run_id
        assert [t.name for t in again.tasks()] == ["loader"]
        task = again.task("loader")
        assert task.done_item_ids(["a", "b", "c", "d"]) == {"a", "b", "d"}
        assert not task.is_item_done("c")
        assert list(task.pending(["a", "b", "c", "d"])) == ["c"]
        with task:
            todo = list(task.iterate(["a", "b", "c", "d"]))
            assert todo == ["c"]
            task.item_done("c")
    assert (again.exit_code, again.status) == (0, RunStatus.COMPLETED)
    assert job.store.get_tasks(run.run_id)[0].failed == 1  # b, for good
    with job.run(resume_run=run.run_id, retry_failed=True) as again:
        assert [t.name for t in again.tasks()] == ["loader"]  # complete, but with a failed item
        with again.task("loader") as task:
            todo = list(task.iterate(["a", "b", "c", "d"]))
            assert todo == ["b"]
            task.item_done("b")
    record = job.store.get_tasks(run.run_id)[0]
    assert (record.ok, record.failed) == (4, 0)
    with pytest.raises(syncpoint.UsageError, match="completed; nothing to resume"), job.run(resume_run=run.run_id):
        pass


def record_failures_then_retry_them(job: syncpoint.Job) -> tuple[syncpoint.Run, syncpoint.Run]:
    """Items recorded again after they failed, each without asking ``done_item_ids``/``is_item_done``/``iterate`` first:
    in the same window, after a commit, in a later run (the failure only in the store), twice in a row."""
    with job.run() as run, run.task("loader") as task:
        task.item_done("a")
        task.item_failed("b", "HTTP 503")
        task.item_failed("c", "bad record", retryable=False)
        task.item_failed("d", "HTTP 503")
        task.item_failed("e", "HTTP 503")
        task.item_done("e")  # failed earlier in this window
        run.commit()
        task.item_done("d")  # failed earlier in this run, committed since
        assert (task.record.ok, task.record.failed) == (3, 2)
    assert run.exit_code == 1  # b failed and is retryable
    with job.run(resume=True, retry_failed=True) as again, again.task("loader") as task:
        task.item_done("b")  # its failure is in the store only
        task.item_failed("c", "still bad", retryable=False)
        assert (task.record.ok, task.record.failed) == (4, 1)
        task.item_done("c")
        task.item_done("c")
        assert (task.record.ok, task.record.failed) == (5, 0)
    return run, again


def test_recording_a_failed_item_again_keeps_the_counts_exact(url: str) -> None:
    """The task's ok/failed counters follow each item's latest outcome, whatever was asked before."""
    job = make_job(url)
    run, again = record_failures_then_retry_them(job)
    assert again.exit_code == 0
    stored = job.store.get_tasks(run.run_id)[0]
    ledger = job.store.ledger_counts(run.run_id, "loader")
    assert (stored.ok, stored.failed) == (ledger.ok, ledger.failed) == (5, 0)


def test_counts_stay_exact_past_the_failures_held_in_memory(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A task with more failed items than memory holds asks the store, item by item: slower, as exact."""
    import syncpoint.buffer

    monkeypatch.setattr(syncpoint.buffer, "MAX_KNOWN_FAILED", 1)
    job = make_job(url)
    run, again = record_failures_then_retry_them(job)
    stored = job.store.get_tasks(run.run_id)[0]
    assert again.exit_code == 0 and (stored.ok, stored.failed) == (5, 0)


def test_an_unexpected_exception_is_retryable_unless_declared_permanent(url: str) -> None:
    """Issue 11.2: an uncaught exception in a task is retryable by default; the job declares errors
    permanent by type or predicate; a run with such a task never ends exit 0."""
    job = syncpoint.Job("job", store=url, permanent_errors=[KeyError, lambda e: "gone" in str(e)])
    with job.run() as run:
        for task in run.tasks(["r1", "r2", "r3", "r4"]):
            with task.isolated():
                if task.name == "r1":
                    raise RuntimeError("connection reset")  # unexpected: retryable
                if task.name == "r2":
                    raise KeyError("id")  # declared permanent by type
                if task.name == "r3":
                    raise ValueError("record gone")  # declared permanent by predicate
    assert run.exit_code == 1 and run.status is RunStatus.FAILED
    tasks = {t.name: t for t in job.store.get_tasks(run.run_id)}
    assert tasks["r1"].retryable and not tasks["r2"].retryable and not tasks["r3"].retryable
    with job.run(resume=True) as again:
        assert [t.name for t in again.tasks()] == ["r1"]
        for task in again.tasks():
            with task:
                pass
    assert again.exit_code == 0  # r2, r3 failed for good: the run completes, listing them
    with job.run(resume_run=run.run_id, retry_failed=True) as again:
        assert [t.name for t in again.tasks()] == ["r2", "r3"]


def test_an_exception_escaping_with_task_fails_the_run_and_resume_retries_it(url: str) -> None:
    """The run records the failure (task and run failed, with the error, committed) and the exception goes on:
    ``with job.run()`` does not hide it (``Job.execute`` is where exceptions become exit codes)."""
    job = make_job(url)
    with pytest.raises(RuntimeError, match="boom"), job.run() as run:
        for task in run.tasks(["a", "b"]):
            with task:
                if task.name == "b":
                    raise RuntimeError("boom")
    assert run.exit_code == 1 and isinstance(run.error, RuntimeError)
    stored = job.store.get_run(run.run_id)
    assert stored is not None and (stored.status, stored.error, stored.exit_code) == (RunStatus.FAILED, "boom", 1)
    assert job.store.get_tasks(run.run_id)[1].error == "boom"
    with job.run(resume=True) as again:
        assert [t.name for t in again.tasks()] == ["b"]
        for task in again.tasks():
            with task:
                pass
    assert again.exit_code == 0


def test_execute_turns_the_bodys_exception_into_its_exit_code_said_once(
    url: str, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``with job.run()`` raises the body's exception again; ``Job.execute`` returns the run's exit code
    instead, and the run's own lines are all that is said (not a second line from ``execute``)."""
    # a handler an earlier test's Job.execute left on the root logger would print each record on stderr too
    monkeypatch.setattr(logging.getLogger(), "handlers", [h for h in logging.getLogger().handlers
                                                         if type(h).__name__ == "LogCaptureHandler"])
    job = make_job(url)

    def broken(run: syncpoint.Run) -> None:
        run.task("t").item_done("1")
        raise ValueError("bad row")

    async def broken_async(run: syncpoint.AsyncRun) -> None:
        raise ValueError("bad row")

    def misused(run: syncpoint.Run) -> None:
        raise syncpoint.UsageError("no such endpoint: /nope")

    options = syncpoint.RunOptions(new_run=True, progress=False)
    assert job.execute(options, broken) == 1
    assert job.execute(options, broken_async) == 1
    assert [r.error for r in job.runs()] == ["bad row", "bad row"]
    assert job.execute(options, misused) == 64
    said = caplog.text + capsys.readouterr().err
    assert said.count("no such endpoint: /nope") == 1, said


def test_task_failures_retryable_resume_and_permanent_need_retry_failed(url: str) -> None:
    job = make_job(url)
    with job.run() as run:
        for task in run.tasks(["r1", "r2", "r3"]):
            with task.isolated():
                if task.name == "r1":
                    err = RuntimeError("bad request")
                    err.retryable = False  # type: ignore[attr-defined]
                    raise err
                if task.name == "r2":
                    raise syncpoint.StoreUnavailable("503")  # no retryable attribute → retryable
    assert run.exit_code == 1 and run.status is RunStatus.FAILED
    tasks = {t.name: t for t in job.store.get_tasks(run.run_id)}
    assert tasks["r1"].status is TaskStatus.FAILED and not tasks["r1"].retryable
    assert tasks["r2"].retryable and tasks["r2"].error == "503"
    with job.run(resume=True) as again:
        assert [t.name for t in again.pending_tasks()] == ["r2"]
        for task in again.tasks():
            with task:
                pass
    with job.run(resume_run=run.run_id, retry_failed=True) as again:
        assert [t.name for t in again.tasks()] == ["r1"]  # r2 completed in the resume above
        assert [t.name for t in again.tasks(start_from="r3")] == []
        with pytest.raises(syncpoint.UsageError, match="no such task"):
            list(again.tasks(start_from="nope"))


def test_keyed_daily_runs_count_attempts_and_fail_after_max(url: str) -> None:
    job = make_job(url)
    codes = []
    for _ in range(4):
        with job.run(key="2026-11-23", max_items=2, max_attempts=3) as run:
            task = run.task("symbols")
            for symbol in task.iterate([f"S{i}" for i in range(100)]):
                task.item_done(symbol)
        codes.append(run.exit_code) if run.exit_code is not None else None
        if run.exit_code == 1:
            break
    assert codes == [2, 2, 1]
    assert job.runs()[0].attempts == 3 and job.runs()[0].status is RunStatus.FAILED
    with pytest.raises(syncpoint.AttemptsExhausted), job.run(key="2026-11-23", max_attempts=3):
        pass
    with job.run(key="2026-11-24", max_items=50) as run:
        task = run.task("symbols")
        for symbol in task.iterate([f"S{i}" for i in range(50)]):
            task.item_done(symbol)
    assert run.exit_code == 0  # the batch ended exactly with the last symbol: completed, not partial


def test_a_run_past_its_attempt_limit_is_marked_failed_and_other_refusals_write_nothing(url: str) -> None:
    """``choose_run``'s contract: refusing to resume writes nothing, except that a run which used its
    attempts is marked failed, saying so (here: partial after one attempt, then a limit of 1)."""
    job = make_job(url)
    with job.run(max_items=2) as run:
        for i in range(5):
            run.task("t").item_done(str(i))
    assert run.exit_code == 2
    before = job.store.get_run(run.run_id)
    with pytest.raises(syncpoint.ConfigChanged), make_job(url, config={"v": 2}).run(resume=True):
        pass
    with pytest.raises(syncpoint.UsageError, match="no run"), job.run(resume_run="20990101-000000-abcdef"):
        pass
    assert job.store.get_run(run.run_id) == before
    with pytest.raises(syncpoint.AttemptsExhausted, match="used 1 of 1 attempts"), \
            job.run(resume=True, max_attempts=1):
        pass
    stored = job.store.get_run(run.run_id)
    assert stored is not None and stored.status is RunStatus.FAILED and stored.attempts == 1
    assert stored.error == "used 1 of 1 attempts"


def test_state_outlives_runs_and_phases_are_remembered(url: str) -> None:
    job = make_job(url)
    with job.run() as run:
        assert run.state.get("last_tweet_id") is None
        run.state.set("last_tweet_id", "1790000000000000001")
        run.complete_phase("discovery")
    with job.run() as run:
        assert run.state["last_tweet_id"] == "1790000000000000001"
        assert not run.is_phase_complete("discovery")  # a new run has its own phases
    with job.run(resume_run=run.run_id, retry_failed=True) as again:
        assert not again.is_phase_complete("pulls")
    job.reset_bookmarks("last_tweet_id")
    assert job.bookmarks() == []


def test_cleanup_keep_and_age_and_delete(url: str) -> None:
    job = make_job(url)
    ids = []
    for _ in range(4):
        with job.run() as run:
            pass
        ids.append(run.run_id)
    assert [r.run_id for r in job.cleanup(keep=2, dry_run=True)] == [ids[1], ids[0]]
    assert len(job.runs()) == 4
    job.cleanup(keep=2)
    assert [r.run_id for r in job.runs()] == [ids[3], ids[2]]
    assert job.cleanup(older_than=timedelta(days=1)) == []
    job.delete_run(ids[2])
    assert [r.run_id for r in job.runs()] == [ids[3]]
    with pytest.raises(syncpoint.UsageError):
        job.delete_run("20240101-000000-abcdef")


@pytest.mark.parametrize("bad", ["../x", "", "a/b", "a\x00b", "x" * 200, "name\n", ".hidden"])
def test_invalid_job_names_are_refused(bad: str, tmp_path: Path) -> None:
    with pytest.raises(syncpoint.InvalidName) as err:
        syncpoint.Job(bad, store=f"sqlite:{tmp_path / 'x.db'}")
    assert err.value.exit_code == 64
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.parametrize("bad", ["", "line\nbreak", "nul\x00", "x" * 1001])
def test_invalid_task_names_and_keys_are_refused(bad: str, url: str) -> None:
    job = make_job(url)
    with job.run() as run, pytest.raises(syncpoint.InvalidName):
        run.task(bad)
    with pytest.raises(syncpoint.InvalidName):
        syncpoint.RunOptions(key=bad)


@pytest.mark.parametrize("bad", ["2024-02-30", "tomorrow", "99999-01-01", "2024-13-01", ""])
def test_invalid_dates_are_refused(bad: str) -> None:
    with pytest.raises(syncpoint.InvalidDate) as err:
        syncpoint.options.from_flags(end=bad)  # type: ignore[attr-defined]
    assert err.value.exit_code == 64 and "YYYY-MM-DD" in str(err.value)


def test_end_date_means_end_of_that_day() -> None:
    opts = syncpoint.options.from_flags(end="2024-01-01", start="2023-12-01")  # type: ignore[attr-defined]
    assert opts.end == datetime(2024, 1, 1, 23, 59, 59, 999999, tzinfo=timezone.utc)
    assert opts.start == datetime(2023, 12, 1, tzinfo=timezone.utc)


def test_non_json_cursor_and_config_are_usage_errors(url: str) -> None:
    with pytest.raises(syncpoint.UsageError, match="JSON"):
        make_job(url, config={"when": object()})
    job = make_job(url)
    with job.run() as run, pytest.raises(syncpoint.UsageError, match="JSON"):
        run.task("t").set_cursor({"x": {1, 2}})  # type: ignore[dict-item]


def test_corrupt_sqlite_file_is_reported_and_left_untouched(tmp_path: Path) -> None:
    db = tmp_path / "cp.db"
    job = make_job(f"sqlite:{db}")
    with job.run() as run:
        run.task("t").item_done("1")
    job.close()
    garbage = b"this is not a database" * 100
    db.write_bytes(garbage)
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"cp.db{suffix}").unlink(missing_ok=True)
    with pytest.raises(syncpoint.CorruptState) as err:
        make_job(f"sqlite:{db}")
    assert "corrupt" in str(err.value) and str(db) in str(err.value) and "\n" not in str(err.value)
    assert db.read_bytes() == garbage


def test_a_signal_after_the_body_returned_still_completes_the_run(url: str) -> None:
    """Regression (signal campaign): SIGINT between the body's end and the final commit raised ``Stopped``
    out of ``__exit__`` while it completed the open tasks, a traceback and exit 1. The work is done: the run
    completes (exit 0) and nothing is left to resume."""
    job = make_job(url)
    with job.run() as run:
        task = run.task("t")
        task.start()
        task.set_cursor({"page": 2}, pages=1, records=3)
        signal.raise_signal(signal.SIGINT)  # the flag-only handler of the run: nothing raised here
    assert run.exit_code == 0
    latest = job.runs(limit=1)[0]
    assert latest.status is RunStatus.COMPLETED
    assert [t.status for t in run.task_records()] == [TaskStatus.COMPLETED]


def test_item_budget_bounds_a_page_cursor_sync_by_its_records(url: str) -> None:
    """``max_items`` counts the records a cursor reports (``done(page, records=N)``), not only ledger items:
    a page-based sync with a budget stops after the page that reached it, and resumes from the next page."""
    job = make_job(url)
    pages_seen: list[int] = []
    for _invocation in range(10):
        with job.run(resume=True, max_items=250) as run:
            pages = run.task("t").page_cursor(first=0)
            for page in range(pages.page, 20):
                run.checkpoint()
                pages_seen.append(page)
                pages.done(page, records=100)
        if run.exit_code == 0:
            break
        assert run.exit_code == 2
    assert pages_seen == list(range(20))  # 3 pages per invocation (300 records > 250), none twice, none lost
    assert len(job.runs()) == 1


def test_item_budget_counts_a_record_once_when_both_ledger_and_cursor_report_it(url: str) -> None:
    job = make_job(url)
    with job.run(max_items=250) as run:
        task = run.task("t")
        pages = task.page_cursor(first=0)
        for page in range(pages.page, 20):
            run.checkpoint()
            for n in range(100):
                task.item_done(f"{page}-{n}")
            pages.done(page, records=100)
    assert run.exit_code == 2
    # issue 11.4: never more than N items recorded — the 251st is refused (redone next time), in the third
    # page; counting both reports would have stopped it in the second
    assert run.task_records()[0].ok == 250


def test_item_budget_never_records_more_than_n_in_a_loop_without_iterate(url: str) -> None:
    """Issue 11.4: ``--max-items 60`` recorded 61 items in a plain loop; now exactly 60, and the stop says so."""
    job = make_job(url)
    processed: list[int] = []
    with job.run(max_items=60) as run:
        task = run.task("t")
        for n in range(200):
            processed.append(n)
            task.item_done(n)
    assert (run.exit_code, run.status) == (2, RunStatus.PARTIAL)
    assert "item budget of 60 reached" in (run.record.error or "")
    assert job.store.ledger_counts(run.run_id, "t").ok == 60
    assert len(processed) == 61  # the 61st was processed but not recorded: the next run redoes it
    with job.run(resume=True, max_items=60) as again:
        task = again.task("t")
        for n in task.iterate(range(200), key=str):
            task.item_done(n)
    assert job.store.ledger_counts(run.run_id, "t").ok == 120


def test_a_batch_that_ends_exactly_at_the_budget_completes(url: str) -> None:
    job = make_job(url)
    with job.run(max_items=10) as run, run.task("t") as task:
        for n in range(10):
            task.item_done(n)
    assert run.exit_code == 0


def test_a_bad_task_name_leaves_no_failed_run_behind(url: str) -> None:
    """Issue 11.14: a usage error before any progress (a bad task name) used to leave a failed run."""
    job = make_job(url)
    with pytest.raises(syncpoint.InvalidName), job.run() as run:
        run.task("bad\x00name")
    assert run.exit_code == 64
    assert job.runs() == []
    assert job.execute(syncpoint.RunOptions(), lambda run: run.task("bad\x00name")) == 64
    assert job.runs() == []


def test_interrupted_item_ledger_tasks_are_described_by_their_counts(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 11.14: an interrupted run listed item-ledger tasks as "gen-0 at null"."""
    job = make_job(url)
    with caplog.at_level(logging.INFO, logger="syncpoint"), job.run(max_items=5) as run:
        task = run.task("gen-0")
        task.item_failed("x", "bad", retryable=False)
        for n in range(10):
            task.item_done(n)
    assert run.exit_code == 2
    line = next(r.getMessage() for r in caplog.records if "continue with --resume" in r.getMessage())
    assert "gen-0: 4 done, 1 failed" in line and "null" not in line

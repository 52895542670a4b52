"""examples/dip_sync.py against the local DIP server: faults, SIGKILL, ties at page boundaries, sync-all."""

from __future__ import annotations

import itertools
import json
import math
import random
import re
import signal
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from ex_support import (
    DIP_KEY,
    DIP_SYNC,
    Program,
    WatchedDip,
    kill_until_done,
    load_example,
    python,
    run_program,
    table_rows,
)

import syncpoint
from syncpoint.http import HttpClient, RetryPolicy
from syncpoint.model import RunStatus
from syncpoint.testing.server import FaultPlan, Reply, Request

dip_sync = load_example(DIP_SYNC)
ENTITIES, SyncResult, SqliteDestination = dip_sync.ENTITIES, dip_sync.SyncResult, dip_sync.SqliteDestination
dip_client, remember_filters, sync_endpoint = dip_sync.dip_client, dip_sync.remember_filters, dip_sync.sync_endpoint
RESUMABLE = [s for s in RunStatus if s.resumable]


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"sqlite:{tmp_path / 'cp' / 'syncpoint.db'}"


def cli_args(server: WatchedDip, tmp_path: Path, store: str, *extra: str, command: str = "sync-drucksachen"
             ) -> list[str]:
    return python(DIP_SYNC, command, "--base-url", server.url, "--api-key", DIP_KEY, "--db", tmp_path / "dip.db",
                  "--store", store, "--no-progress", *extra)


def options(store: str, **kw: Any) -> syncpoint.RunOptions:
    return syncpoint.RunOptions(store=store, progress=False, **kw)


def assert_table_matches(db: Path, server: WatchedDip, endpoint: str, missing: Sequence[str] = ()) -> None:
    expected = {d["id"]: d for d in server.documents(endpoint) if d["id"] not in missing}
    assert table_rows(db, endpoint.replace("-", "_")) == expected


def tie_boundary(docs: list[dict[str, Any]], page: int) -> int:
    """The first page boundary (a document count) that falls inside a run of at least 3 equal timestamps."""
    for cut in range(page, len(docs) - page, page):
        if docs[cut - 2]["aktualisiert"] == docs[cut - 1]["aktualisiert"] == docs[cut]["aktualisiert"]:
            return cut
    raise AssertionError("no page boundary inside a run of equal timestamps")


# -- end to end, with faults -------------------------------------------------------------------------------
class BrokenDocDip(WatchedDip):
    """Serves one document without its ``aktualisiert`` on the first vorgang page (instead of a real one)."""

    broken_id = ""

    def handle(self, request: Request) -> Reply:
        reply = super().handle(request)
        if request.path.endswith("/vorgang") and "cursor" not in request.query and reply.status == 200:
            docs = reply.body["documents"]
            self.broken_id = docs[7]["id"]
            docs[7] = {key: value for key, value in docs[7].items() if key != "aktualisiert"}
        return reply


def test_sync_all_with_faults_holds_exactly_the_servers_documents(tmp_path: Path, store: str) -> None:
    faults = FaultPlan(schedule=[503, 429, "drop", 502, None, 429, "drop"], error_rate=0.06, drop_rate=0.04,
                       rate_limit_rate=0.04, retry_after="1", seed=5)
    waits: list[float] = []

    def connect(run: syncpoint.Run) -> HttpClient:
        return dip_client(server.url, DIP_KEY, sleep=waits.append, retry=RetryPolicy(initial_wait=0.01, jitter=0))

    with BrokenDocDip(250, faults=faults, seed=3) as server:
        settings = dip_sync.Settings(server.url, DIP_KEY, str(tmp_path / "dip.db"))
        code = dip_sync.sync_all(settings, options(store), connect=connect)
        assert code == 0
        for endpoint in ENTITIES.values():
            assert_table_matches(tmp_path / "dip.db", server, endpoint,
                                 missing=[server.broken_id] if endpoint == "vorgang" else [])
    assert server.stats.faults["429"] >= 2 and server.stats.faults["drop"] >= 2 and server.stats.faults["503"] >= 1
    assert waits.count(1.0) >= server.stats.faults["429"]  # Retry-After: 1 was honoured each time

    with syncpoint.open_store(store) as opened:
        assert opened.list_runs(None, statuses=RESUMABLE) == []  # success leaves nothing to resume
        [vorgang_run] = opened.list_runs("vorgaenge")
        [failed] = list(opened.ledger_failed(vorgang_run.run_id, "vorgang"))  # recorded, not lost in a file
        assert failed.item_id == server.broken_id and "aktualisiert" in (failed.error or "")
        assert [r.status for r in opened.list_runs("sync-all")] == [RunStatus.COMPLETED]


# -- kill -9 at random moments ------------------------------------------------------------------------------
def test_sigkill_at_random_moments_then_resume_loses_and_duplicates_nothing(tmp_path: Path, store: str) -> None:
    """Each kill re-fetches at most the page in flight plus the page holding the boundary's tie run (the
    server's pages hold 250, the longest tie run): pages served <= needed + kills * (1 page per commit + 1)."""
    rng = random.Random(11)
    with WatchedDip({"drucksache": 3000}, page_size=250, seed=2) as server:
        kills = kill_until_done(
            lambda attempt: cli_args(server, tmp_path, store, *(["--resume"] if attempt else [])),
            server.watch, lambda: server.stats.pages["drucksache"], steps=lambda: rng.randint(1, 3),
            log=tmp_path / "stderr.log",
        )
        assert_table_matches(tmp_path / "dip.db", server, "drucksache")
        needed = math.ceil(3000 / 250) + 1  # and one empty page that says "no more"
        assert kills == 4
        assert server.stats.pages["drucksache"] <= needed + kills * 2, (server.stats.pages, kills)
    with syncpoint.open_store(store) as opened:
        [run] = opened.list_runs("drucksachen")
        assert run.status is RunStatus.COMPLETED and run.attempts == kills + 1


def test_sync_all_killed_then_resume_all_skips_the_finished_jobs(tmp_path: Path, store: str) -> None:
    """As above, for the pipeline: jobs that completed before a kill are not fetched again."""
    rng = random.Random(4)
    with WatchedDip(400, page_size=250, seed=9) as server:  # 3 pages per endpoint: 2 with documents, 1 empty
        kills = kill_until_done(
            lambda attempt: cli_args(server, tmp_path, store, *(["--resume-all"] if attempt else []),
                                     command="sync-all"),
            server.watch, lambda: sum(server.stats.pages.values()),
            steps=lambda: rng.randint(7, 10), kills_wanted=2, log=tmp_path / "stderr.log",
        )
        for endpoint in ENTITIES.values():
            assert_table_matches(tmp_path / "dip.db", server, endpoint)
        assert kills == 2
        # the first kill comes at page 7 or later: the first two jobs had completed and are never run again
        assert server.stats.pages["person"] == 3 and server.stats.pages["vorgang"] == 3
        assert sum(server.stats.pages.values()) <= 3 * len(ENTITIES) + kills * 2
    with syncpoint.open_store(store) as opened:
        [pipeline_run] = opened.list_runs("sync-all")
        assert pipeline_run.status is RunStatus.COMPLETED and pipeline_run.attempts == kills + 1


# -- ties at the page boundary -------------------------------------------------------------------------------
class Recording:
    """A destination that remembers every write, so a test can see a document written twice."""

    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, endpoint: str, docs: Sequence[Mapping[str, Any]]) -> None:
        self.writes.extend(str(d["id"]) for d in docs)


def run_once(server: WatchedDip, dest: Recording, opts: syncpoint.RunOptions) -> tuple[int, list[SyncResult]]:
    job = syncpoint.Job("drucksachen", {"base_url": server.url}, store=opts.store)
    results: list[SyncResult] = []

    def body(run: syncpoint.Run) -> None:
        with dip_client(server.url, DIP_KEY, sleep=run.sleep) as client:
            results.append(sync_endpoint(run, client, "drucksache", dest))

    try:
        return job.execute(remember_filters(opts), body), results
    finally:
        job.close()


def test_budget_stop_at_a_page_boundary_inside_a_tie_run_resumes_without_loss_or_repetition(store: str) -> None:
    with WatchedDip({"drucksache": 1500}, seed=1) as server:
        docs = server.documents("drucksache")
        cut = tie_boundary(docs, 100)
        boundary = docs[cut - 1]["aktualisiert"]
        at_boundary = sum(d["aktualisiert"] == boundary for d in docs[:cut])
        dest = Recording()

        code, _ = run_once(server, dest, options(store, max_items=cut))
        assert code == 2
        assert dest.writes == [d["id"] for d in docs[:cut]]  # stopped exactly at the page boundary
        server.queries.clear()

        code, [result] = run_once(server, dest, options(store, resume=True))
        assert code == 0
        assert server.queries[0]["f.aktualisiert.end"] == boundary  # inclusive, at the tie
        assert result.skipped == at_boundary and result.written == len(docs) - cut
        counts = Counter(dest.writes)
        assert set(counts) == {d["id"] for d in docs} and max(counts.values()) == 1


def test_sigint_at_a_page_boundary_inside_a_tie_run(tmp_path: Path, store: str) -> None:
    with WatchedDip({"drucksache": 1500}, seed=1) as server:
        docs = server.documents("drucksache")
        cut = tie_boundary(docs, 100)
        at_boundary = sum(d["aktualisiert"] == docs[cut - 1]["aktualisiert"] for d in docs[:cut])
        server.watch.arm(cut // 100 + 1, hold=True)  # the request for the page after the cut waits
        child = Program(cli_args(server, tmp_path, store))
        assert server.watch.reached.wait(30), "the sync never asked for the page after the cut"
        child.proc.send_signal(signal.SIGINT)
        child.wait_for("SIGINT received")
        server.watch.release()
        assert child.finish() == 130, child.stderr
        assert set(table_rows(tmp_path / "dip.db", "drucksache")) == {d["id"] for d in docs[:cut]}

        code = run_program(cli_args(server, tmp_path, store, "--resume"), tmp_path / "resume.log")
        log = (tmp_path / "resume.log").read_text()
        assert code == 0, log
        found = re.search(r"drucksache: (\d+) document\(s\) written, (\d+) skipped", log)
        assert found is not None, log
        assert (int(found[1]), int(found[2])) == (len(docs) - cut, at_boundary)  # nothing written twice
        assert_table_matches(tmp_path / "dip.db", server, "drucksache")


# -- flags ---------------------------------------------------------------------------------------------------
def test_end_overrides_the_checkpoint_and_limit_finishes(store: str) -> None:
    with WatchedDip({"drucksache": 800}, seed=6) as server:
        docs = server.documents("drucksache")
        dest = Recording()
        assert run_once(server, dest, options(store, max_items=300))[0] == 2
        end = docs[600]["aktualisiert"]
        first = next(i for i, d in enumerate(docs) if d["aktualisiert"] == end)
        server.queries.clear()
        assert run_once(server, dest, options(store, resume=True, end=datetime.fromisoformat(end)))[0] == 0
        assert server.queries[0]["f.aktualisiert.end"] == end  # not the checkpoint's watermark
        assert set(dest.writes) == {d["id"] for d in docs[:300]} | {d["id"] for d in docs[first:]}

        limited = Recording()
        job = syncpoint.Job("limited", {}, store=store)

        def body(run: syncpoint.Run) -> None:
            with dip_client(server.url, DIP_KEY) as client:
                sync_endpoint(run, client, "drucksache", limited)

        assert job.execute(remember_filters(options(store), limit=150), body) == 0
        assert limited.writes == [d["id"] for d in docs[:150]]
        assert job.runs(statuses=RESUMABLE) == []  # --limit finishes: nothing left to resume
        job.close()


def test_usage_errors_exit_64(tmp_path: Path, store: str) -> None:
    base = ["sync-personen", "--db", str(tmp_path / "x.db"), "--store", store]
    runner = CliRunner(env={"DIP_API_KEY": None})
    for extra, says in (([], "DIP_API_KEY"), (["--api-key", "k", "--end", "2024-02-30"], "2024-02-30"),
                        (["--api-key", "k", "--bogus"], "--bogus"), (["sync-nothing"], "sync-nothing")):
        result = runner.invoke(dip_sync.cli, [*base, *extra] if extra != ["sync-nothing"] else extra)
        assert result.exit_code == 64, result.output
        assert says in result.output and "Traceback" not in result.output


# -- the original's checkpoint files and log line (issue 12, item 5) ------------------------------------------
def test_checkpoints_are_where_and_as_the_original_kept_them_and_sqlite_is_one_flag_away(tmp_path: Path) -> None:
    """No --store: ``.checkpoints/drucksachen.checkpoint.json`` in the working directory, with
    ``last_sync_date``; the resume says "resuming from checkpoint: DATE"; the file is gone once complete."""
    with WatchedDip({"drucksache": 450}, seed=4) as server:
        base = python(DIP_SYNC, "sync-drucksachen", "--base-url", server.url, "--api-key", DIP_KEY, "--db",
                      tmp_path / "dip.db", "--no-progress")
        first = Program([*base, "--max-items", "150"], cwd=tmp_path)
        assert first.finish() == 2, first.stderr
        checkpoint = tmp_path / ".checkpoints" / "drucksachen.checkpoint.json"
        data = json_file(checkpoint)
        assert data["status"] == "partial" and isinstance(data["last_sync_date"], str)
        day = data["last_sync_date"][:10]
        assert not (tmp_path / ".checkpoints" / "syncpoint.db").exists()

        resumed = Program([*base, "--resume"], cwd=tmp_path)
        assert resumed.finish() == 0, resumed.stderr
        assert f"resuming from checkpoint: {day}" in resumed.stderr, resumed.stderr
        assert not checkpoint.exists()  # deleted on success, as the original did
        assert_table_matches(tmp_path / "dip.db", server, "drucksache")

        other = tmp_path / "elsewhere"
        custom = Program([*base, "--checkpoint-dir", other, "--max-items", "100"], cwd=tmp_path)
        assert custom.finish() == 2, custom.stderr
        assert "last_sync_date" in json_file(other / "drucksachen.checkpoint.json")

        sqlite = Program([*base, "--store", f"sqlite:{tmp_path / 'sp.db'}", "--new-run"], cwd=tmp_path)
        assert sqlite.finish() == 0, sqlite.stderr
        with syncpoint.open_store(f"sqlite:{tmp_path / 'sp.db'}") as opened:
            assert [r.status for r in opened.list_runs("drucksachen")] == [RunStatus.COMPLETED]


def json_file(path: Path) -> Any:
    return json.loads(path.read_text())


# -- sync-all --concurrency ----------------------------------------------------------------------------------
def member_runs(store: str) -> list[syncpoint.RunRecord]:
    with syncpoint.open_store(store) as opened:
        return [run for name in ENTITIES for run in opened.list_runs(name)]


def overlapping(runs: Sequence[syncpoint.RunRecord]) -> bool:
    spans = sorted((r.started_at, r.ended_at or datetime.max.replace(tzinfo=r.started_at.tzinfo)) for r in runs)
    return any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans))


def test_sync_all_with_four_jobs_at_once_writes_exactly_what_one_at_a_time_writes(tmp_path: Path) -> None:
    slow = FaultPlan(slow_rate=1.0, slow_seconds=0.05)
    tables = {}
    for concurrency in (1, 4):
        with WatchedDip(300, page_size=100, seed=6, faults=slow) as server:
            store = f"sqlite:{tmp_path / f'c{concurrency}' / 'syncpoint.db'}"
            args = python(DIP_SYNC, "sync-all", "--base-url", server.url, "--api-key", DIP_KEY, "--db",
                          tmp_path / f"c{concurrency}" / "dip.db", "--store", store, "--no-progress",
                          "--concurrency", str(concurrency))
            assert run_program(args, tmp_path / "run.log") == 0, (tmp_path / "run.log").read_text()
            for endpoint in ENTITIES.values():
                assert_table_matches(tmp_path / f"c{concurrency}" / "dip.db", server, endpoint)
            assert all(n == 4 for n in server.stats.pages.values()), server.stats.pages  # 3 full + 1 empty
            tables[concurrency] = {e: table_rows(tmp_path / f"c{concurrency}" / "dip.db", e.replace("-", "_"))
                                   for e in ENTITIES.values()}
            runs = member_runs(store)
            assert len(runs) == len(ENTITIES) and all(r.status is RunStatus.COMPLETED for r in runs)
            assert overlapping(runs) == (concurrency > 1)
    assert tables[4] == tables[1]


def test_sync_all_ctrl_c_with_four_jobs_in_flight_exits_130_and_resume_all_completes(
    tmp_path: Path, store: str
) -> None:
    """The signal reaches every job running in a thread: each stops at its own page boundary and commits."""
    slow = FaultPlan(slow_rate=1.0, slow_seconds=0.1)
    with WatchedDip(600, page_size=100, seed=7, faults=slow) as server:
        server.watch.arm(6)  # a few pages into the first four jobs
        child = Program(cli_args(server, tmp_path, store, "--concurrency", "4", command="sync-all"))
        assert server.watch.reached.wait(30), "sync-all never reached page 6"
        child.proc.send_signal(signal.SIGINT)
        child.wait_for("SIGINT received")
        assert child.finish() == 130, child.stderr
        interrupted = [r for r in member_runs(store) if r.status is RunStatus.INTERRUPTED]
        assert len(interrupted) >= 2, [(r.job, r.status) for r in member_runs(store)]  # several were in flight
        assert all(r.status is not RunStatus.RUNNING for r in member_runs(store))
        with syncpoint.open_store(store) as opened:
            assert [r.status for r in opened.list_runs("sync-all")] == [RunStatus.INTERRUPTED]

        resume = cli_args(server, tmp_path, store, "--concurrency", "4", "--resume-all", command="sync-all")
        assert run_program(resume, tmp_path / "resume.log") == 0, (tmp_path / "resume.log").read_text()
        for endpoint in ENTITIES.values():
            assert_table_matches(tmp_path / "dip.db", server, endpoint)
        runs = member_runs(store)
        assert all(r.status is RunStatus.COMPLETED for r in runs) and len(runs) == len(ENTITIES)
        assert {r.job for r in runs if r.attempts == 2} == {r.job for r in interrupted}  # resumed, not restarted


def test_the_sqlite_destination_takes_writes_from_several_threads(tmp_path: Path) -> None:
    """One SqliteDestination shared by 8 writer threads (and one per thread on the same file): every row."""
    shared = SqliteDestination(tmp_path / "dip.db")
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        own = SqliteDestination(tmp_path / "dip.db")
        try:
            for page in range(10):
                docs = [{"id": f"{n}-{page}-{i}", "aktualisiert": "2024-01-01T00:00:00+01:00"} for i in range(20)]
                (shared if page % 2 else own).write(f"endpoint-{n % 3}", docs)
        except BaseException as exc:
            errors.append(exc)
        finally:
            own.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert sum(shared.count(f"endpoint-{k}") for k in range(3)) == 8 * 10 * 20
    shared.close()

"""examples/tk_loader.py against the local OData server: faults, failed items and loaders, SIGKILL, retry."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ex_support import ROOT, PageWatch, kill_until_done, python, run_program
from odata_server import ODataServer

from syncpoint.testing.server import FaultPlan, Reply, Request

TK_LOADER = ROOT / "examples" / "tk_loader.py"
TABLES = {"Zaak": "zaak", "Document": "document", "Vergadering": "vergadering", "Agendapunt": "agendapunt",
          "Activiteit": "activiteit"}


class WatchedOData(ODataServer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.watch = PageWatch()

    def handle(self, request: Request) -> Reply:
        self.watch.before_page(sum(self.stats.pages.values()))
        return super().handle(request)


def args(server: ODataServer, tmp_path: Path, *extra: str) -> list[str]:
    return python(TK_LOADER, "--base-url", server.url, "--db", tmp_path / "tk.db", "--store", store(tmp_path),
                  "--retry-wait", "0.01", "--no-progress", *extra)


def store(tmp_path: Path) -> str:
    return f"sqlite:{tmp_path / 'cp' / 'syncpoint.db'}"


def rows(db: Path, table: str) -> dict[str, dict[str, Any]]:
    with sqlite3.connect(db) as conn:
        try:
            found = conn.execute(f'SELECT Id, GewijzigdOp, data FROM "{table}"').fetchall()
        except sqlite3.OperationalError:
            return {}
    data = {r[0]: json.loads(r[2]) for r in found}
    assert all(data[r[0]]["GewijzigdOp"] == r[1] for r in found)
    return data


def load_counts(db: Path) -> dict[tuple[str, str], int]:
    with sqlite3.connect(db) as conn:
        return {(t, i): n for t, i, n in conn.execute("SELECT tbl, id, n FROM load_counter")}


def latest_run(tmp_path: Path) -> str:
    import syncpoint

    with syncpoint.open_store(store(tmp_path)) as opened:
        return opened.list_runs("tk-loader", limit=1)[0].run_id


CONCURRENCY = {"one": [], "8-records": ["--concurrency", "8"], "5-loaders": ["--parallel-loaders", "5"]}


@pytest.mark.parametrize("flags", CONCURRENCY.values(), ids=CONCURRENCY.keys())
def test_faults_failed_items_failed_loaders_then_retry_failed(tmp_path: Path, flags: list[str]) -> None:
    """5xx/429/drops are retried; malformed records are failed items (visible in ``runs show``); a 404 loader
    and a 500-after-retries loader fail alone; ``--resume-run RUN --retry-failed`` loads what was fixed."""
    faults = FaultPlan(schedule=[503, None, 429, None, "drop", None, 502], error_rate=0.05, rate_limit_rate=0.04,
                       drop_rate=0.04, retry_after="0", seed=7)
    log = tmp_path / "stderr.log"
    with ODataServer(120, page_size=20, faults=faults, seed=1) as server:
        since = server.records["Zaak"][30]["GewijzigdOp"]  # a --start-date inside the data: a real filter
        bad_zaak = [server.records["Zaak"][40]["Id"], server.records["Zaak"][77]["Id"]]
        bad_doc = [server.records["Document"][-1]["Id"]]
        server.malform("Zaak", bad_zaak)
        server.malform("Document", bad_doc)
        server.fail_entity("Agendapunt", 404)
        server.fail_entity("Vergadering", 500)
        code = run_program(args(server, tmp_path, "--start-date", since, "--retry-attempts", "4", *flags), log)
        assert code == 1, log.read_text()[-3000:]  # a loader failed with a retryable error
        db = tmp_path / "tk.db"
        for entity in ("Zaak", "Document", "Activiteit"):
            assert rows(db, TABLES[entity]) == server.expected(entity, since), entity
        assert rows(db, "agendapunt") == {} and rows(db, "vergadering") == {}
        assert set(server.expected("Zaak")) - set(server.expected("Zaak", since))  # the filter did filter
        assert sum(server.stats.faults.values()) >= 4

        run_id = latest_run(tmp_path)
        shown = subprocess.run([sys.executable, "-m", "syncpoint", "--store", store(tmp_path), "runs", "show",
                                run_id], capture_output=True, text=True, timeout=60, cwd=ROOT,
                               env={**os.environ, "COLUMNS": "250"})
        assert shown.returncode == 0, shown.stderr
        text = shown.stdout
        assert bad_zaak[0] in text and bad_doc[0] in text and "is not a datetime" in text
        assert "load_agendapunten" in text and "404" in text

        server.fix("Zaak")
        server.fix("Document")
        server.fail_entity("Agendapunt", None)
        server.fail_entity("Vergadering", None)
        before = dict(server.stats.pages)
        code = run_program(args(server, tmp_path, "--resume-run", run_id, "--retry-failed", *flags), log)
        assert code == 0, log.read_text()[-3000:]
        for entity, table in TABLES.items():
            assert rows(db, table) == server.expected(entity, since), entity  # --start-date kept by the run
        # the complete loaders fetched only their failed records (by key), not their pages again
        assert server.stats.pages["Zaak"] - before.get("Zaak", 0) == len(bad_zaak)
        assert server.stats.pages["Activiteit"] == before["Activiteit"]
        counts = load_counts(db)
        assert all(n == 1 for n in counts.values())  # no kills: every record was written exactly once


@pytest.mark.parametrize("loaders", [1, 3])
def test_sigkill_at_random_moments_then_resume_loses_and_duplicates_nothing(tmp_path: Path, loaders: int) -> None:
    """Killed at random pages and resumed until done: every record present; re-written at most one page per kill
    and loader in flight (the page between its commit in the destination and the checkpoint's). With 3
    loaders at once, each writing 8 records at a time."""
    flags = ["--parallel-loaders", "3", "--concurrency", "8"] if loaders > 1 else []
    rng = random.Random(5)
    page = 25
    log = tmp_path / "stderr.log"
    with WatchedOData(150, page_size=page, seed=2) as server:
        bad = server.records["Document"][60]["Id"]
        server.malform("Document", [bad])
        kills = kill_until_done(
            lambda attempt: args(server, tmp_path, *flags, *(["--resume"] if attempt else [])),
            server.watch, lambda: sum(server.stats.pages.values()), steps=lambda: rng.randint(2, 7),
            log=log, kills_wanted=5,
        )
        assert kills == 5
        db = tmp_path / "tk.db"
        for entity, table in TABLES.items():
            assert rows(db, table) == server.expected(entity), entity
        counts = load_counts(db)
        expected_keys = {(TABLES[e], i) for e in TABLES for i in server.expected(e)}
        assert set(counts) == expected_keys  # none lost, and the malformed one never loaded
        rewrites = sum(n - 1 for n in counts.values())
        assert rewrites <= kills * page * loaders, counts
        needed = sum(-(-150 // page) for _ in TABLES)
        assert sum(server.stats.pages.values()) <= needed + kills * 2 * loaders
    import syncpoint

    with syncpoint.open_store(store(tmp_path)) as opened:  # one run, resumed each time; its failed item kept
        [run] = opened.list_runs("tk-loader")
        assert [f.item_id for f in opened.ledger_failed(run.run_id, "load_documents")] == [bad]


def test_list_runs_and_cleanup(tmp_path: Path) -> None:
    log = tmp_path / "stderr.log"
    with ODataServer(10, page_size=20) as server:
        for _ in range(2):
            assert run_program(args(server, tmp_path, "--new-run", "--loaders", "load_zaken"), log) == 0
        listed = subprocess.run(args(server, tmp_path, "--list-runs"), capture_output=True, text=True, timeout=60,
                                cwd=ROOT, env={**os.environ, "COLUMNS": "250"})
        assert listed.returncode == 0 and listed.stdout.count("completed") == 2, listed.stdout + listed.stderr
        assert run_program(args(server, tmp_path, "--cleanup", "--keep", "1"), log) == 0
        import syncpoint

        with syncpoint.open_store(store(tmp_path)) as opened:
            assert len(opened.list_runs("tk-loader")) == 1


@pytest.mark.parametrize("value", ["yesterday", "2024-13-01"])
def test_bad_start_date_is_a_usage_error(tmp_path: Path, value: str) -> None:
    with ODataServer(1) as server:
        assert run_program(args(server, tmp_path, "--start-date", value), tmp_path / "log") == 64


def test_piped_progress_lines_show_each_loaders_done_total_and_percentage(tmp_path: Path) -> None:
    """As the original's "Progress: 750/1000 (75.0%)": the log-line form names the loader in progress."""
    from ex_support import Program

    with WatchedOData(200, page_size=50) as server:
        server.watch.arm(2, hold=True)  # load_zaken's second page waits: its first 50 of 200 are done
        child = Program(python(TK_LOADER, "--base-url", server.url, "--db", tmp_path / "tk.db", "--store",
                               store(tmp_path), "--progress", "--progress-interval", "0.2"))
        try:
            child.wait_for("load_zaken 50/200 (25.0%)")
        finally:
            server.watch.release()
        assert child.finish() == 0, child.stderr
    line = next(x for x in child.stderr.splitlines() if "load_zaken 50/200 (25.0%)" in x)
    assert "progress tk-loader:" in line


def test_ctrl_c_with_loaders_and_writers_in_flight_exits_130_and_resume_completes(tmp_path: Path) -> None:
    """Five loaders at once against a slow server, four writers each: a Ctrl+C stops them all at a record
    or page boundary; the resume loads exactly the server's records, none lost, none written twice."""
    from ex_support import Program

    import syncpoint

    slow = FaultPlan(slow_rate=1.0, slow_seconds=0.1)
    with WatchedOData(150, page_size=25, seed=4, faults=slow) as server:
        server.watch.arm(8)
        child = Program(args(server, tmp_path, "--parallel-loaders", "5", "--concurrency", "4"))
        assert server.watch.reached.wait(30), "the loaders never reached page 8"
        child.proc.send_signal(signal.SIGINT)
        child.wait_for("SIGINT received")
        assert child.finish() == 130, child.stderr
        with syncpoint.open_store(store(tmp_path)) as opened:
            [run] = opened.list_runs("tk-loader")
            started = [t for t in opened.get_tasks(run.run_id) if t.status is syncpoint.TaskStatus.IN_PROGRESS]
        assert run.status is syncpoint.RunStatus.INTERRUPTED and len(started) >= 2, [t.name for t in started]

        log = tmp_path / "resume.log"
        assert run_program(args(server, tmp_path, "--resume", "--parallel-loaders", "5", "--concurrency", "4"),
                           log) == 0, log.read_text()[-3000:]
        db = tmp_path / "tk.db"
        for entity, table in TABLES.items():
            assert rows(db, table) == server.expected(entity), entity
        counts = load_counts(db)
        assert sum(n - 1 for n in counts.values()) <= 5 * 25  # at most the pages in flight written again

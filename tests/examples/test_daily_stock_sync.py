"""examples/daily_stock_sync.py played by a scheduler loop: batches, exit codes, SIGKILL, new symbols, PostgreSQL."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from ex_support import ROOT, PageWatch, python, run_program
from helpers import drop_pg_schema, require_pg, with_query
from prices_server import PricesServer

import syncpoint
from syncpoint.model import RunStatus
from syncpoint.testing.server import FaultPlan, Reply, Request

DAILY = ROOT / "examples" / "daily_stock_sync.py"
DAY = "2026-11-23"


class WatchedPrices(PricesServer):
    """Tells the test when the n-th price (counting all served so far) is about to be served."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.watch = PageWatch()

    def handle(self, request: Request) -> Reply:
        if request.path.startswith("/prices/"):
            self.watch.before_page(self.stats.documents["prices"])
        return super().handle(request)


def args(server: PricesServer, tmp_path: Path, store: str, *extra: str) -> list[str]:
    return python(DAILY, "--base-url", server.url, "--db", tmp_path / "stocks.db", "--store", store,
                  "--date", DAY, "--retry-wait", "0.01", "--retry-attempts", "3", "--no-progress", *extra)


def prices(db: Path) -> dict[str, tuple[float, int, int]]:
    with sqlite3.connect(db) as conn:
        return {s: (c, v, w) for s, c, v, w in conn.execute(
            "SELECT symbol, close, volume, writes FROM prices WHERE date = ?", (DAY,))}


def assert_prices_match(db: Path, server: PricesServer, missing: set[str]) -> dict[str, int]:
    stored = prices(db)
    expected = {s: server.price(s, DAY) for s in server.symbols if s not in missing}
    assert {s: (c, v) for s, (c, v, _) in stored.items()} == {s: (p["close"], p["volume"])
                                                               for s, p in expected.items()}
    return {s: w for s, (_, _, w) in stored.items()}


def status(server: PricesServer, tmp_path: Path, store: str) -> str:
    done = subprocess.run(args(server, tmp_path, store, "--status"), capture_output=True, text=True, timeout=60,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return done.stdout


def scheduler(server: WatchedPrices, tmp_path: Path, store: str, *, kill_at: dict[int, int],
              new_symbols: dict[int, list[str]], extra: tuple[str, ...] = (), limit: int = 20,
              env: dict[str, str] | None = None) -> tuple[list[int], int]:
    """Invoke the sync until it exits 0 (bounded); invocation i is SIGKILLed after ``kill_at[i]`` more prices
    are served, and ``new_symbols[i]`` are listed before it. Returns the un-killed exit codes and the kills."""
    log = tmp_path / "stderr.log"
    codes: list[int] = []
    kills = 0
    for invocation in range(limit):
        server.list_symbols(new_symbols.get(invocation, []))
        if invocation in kill_at:
            server.watch.arm(server.stats.documents["prices"] + kill_at[invocation])
        else:
            server.watch.arm(1 << 30)
        with open(log, "a", encoding="utf-8") as err:
            proc = subprocess.Popen(args(server, tmp_path, store, *extra), stdin=subprocess.DEVNULL, stdout=err,
                                    stderr=err, cwd=ROOT, env={**os.environ, **(env or {})})
        deadline = time.monotonic() + 60
        while not server.watch.reached.wait(0.05) and proc.poll() is None:
            assert time.monotonic() < deadline, f"no progress; see {log}"
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        code = proc.wait(60)
        if code == -signal.SIGKILL:
            kills += 1
            continue
        codes.append(code)
        if code != 2:
            return codes, kills
    pytest.fail(f"not done after {limit} invocations: {codes}; see {log}")


def test_batches_with_faults_and_failed_symbols(tmp_path: Path) -> None:
    """Faults are retried; a 404 symbol is failed for good, a 500 one after its retries; batches from the
    environment end 2, 2, ..., 0; a symbol listed between invocations is fetched; every price stored once."""
    store = f"sqlite:{tmp_path / 'cp.db'}"
    faults = FaultPlan(schedule=[503, None, 429, None, "drop"], error_rate=0.04, rate_limit_rate=0.03,
                       drop_rate=0.03, retry_after="0", seed=3)
    with WatchedPrices(100, faults=faults, seed=1) as server:
        server.fail("AAAH", 404)
        server.fail("AABC", 500)
        codes, _ = scheduler(server, tmp_path, store, kill_at={}, new_symbols={2: ["ZZZZ"]},
                             env={"SYNC_BATCH_SIZE": "30"})
        assert codes == [2, 2, 2, 0]  # 101 symbols in batches of 30
        writes = assert_prices_match(tmp_path / "stocks.db", server, missing={"AAAH", "AABC"})
        assert set(writes.values()) == {1} and "ZZZZ" in writes
        assert sum(server.stats.faults.values()) >= 3
        shown = status(server, tmp_path, store)
        assert "completed" in shown and "processed 101/101, successful 99, failed 2" in shown, shown
        # a later invocation the same day has nothing to do
        assert run_program(args(server, tmp_path, store), tmp_path / "stderr.log") == 0
        assert server.stats.served[("prices", "AAAA")] == 1


def test_scheduler_loop_with_sigkills_and_a_new_symbol(tmp_path: Path) -> None:
    """Some invocations are SIGKILLed mid-batch; the next one resumes at once (the holder is dead): codes of
    the others are 2, 2, ..., 0; nothing lost, and a price is rewritten at most 10 per kill (the save window)."""
    store = f"sqlite:{tmp_path / 'cp.db'}"
    with WatchedPrices(150, seed=2) as server:
        codes, kills = scheduler(server, tmp_path, store, kill_at={0: 17, 2: 33, 3: 5},
                                 new_symbols={1: ["NEWA"], 4: ["NEWB", "NEWC"]},
                                 extra=("--batch-size", "40", "--max-attempts", "20"))
        assert kills == 3
        assert codes[-1] == 0 and set(codes[:-1]) == {2}, codes
        writes = assert_prices_match(tmp_path / "stocks.db", server, missing=set())
        assert {"NEWA", "NEWB", "NEWC"} <= set(writes)
        assert sum(w - 1 for w in writes.values()) <= kills * 10, writes
        assert "processed 153/153, successful 153, failed 0" in status(server, tmp_path, store)
    with syncpoint.open_store(store) as opened:  # one run for the day, resumed by every invocation
        [run] = opened.list_runs("daily-stock-sync", key=DAY)
        assert run.status is RunStatus.COMPLETED and run.attempts == len(codes) + kills


def test_attempts_exhausted_exits_1(tmp_path: Path) -> None:
    store = f"sqlite:{tmp_path / 'cp.db'}"
    log = tmp_path / "stderr.log"
    with PricesServer(30) as server:
        extra = ("--batch-size", "5", "--max-attempts", "2")
        assert run_program(args(server, tmp_path, store, *extra), log) == 2
        assert run_program(args(server, tmp_path, store, *extra), log) == 1
        assert run_program(args(server, tmp_path, store, *extra), log) == 1
        assert "2 of 2 attempts" in log.read_text()
        assert "processed 10/30" in status(server, tmp_path, store)


@pytest.fixture
def pg_store() -> Any:
    schema = f"sp_test_{uuid.uuid4().hex}"
    yield with_query(require_pg(), schema=schema)
    drop_pg_schema(schema)


@pytest.mark.postgres
def test_scheduler_loop_on_postgres(tmp_path: Path, pg_store: str) -> None:
    with WatchedPrices(80, seed=4) as server:
        server.fail("AAAB", 404)
        codes, kills = scheduler(server, tmp_path, pg_store, kill_at={1: 12}, new_symbols={2: ["NEWP"]},
                                 extra=("--batch-size", "25"))
        assert kills == 1 and codes[-1] == 0 and set(codes[:-1]) == {2}, codes
        writes = assert_prices_match(tmp_path / "stocks.db", server, missing={"AAAB"})
        assert sum(w - 1 for w in writes.values()) <= 10
        assert "processed 81/81, successful 80, failed 1" in status(server, tmp_path, pg_store)

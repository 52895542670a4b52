"""What every one of the five example programs does alike, each run as a real subprocess against its stand-in.

Ctrl+C (or SIGTERM) while an example's client waits out a rate limit or a 503's Retry-After: the stand-in
answers every request (after discovery, for GitHub) with a rate limit or a 503 asking for a long wait. Once
the program logs that it is waiting, the test sends a real signal. The program must end the wait and the
retrying at once: exit 130 (143) within a couple of seconds, the run recorded ``interrupted``, and not one
more request reaching the server after the signal (before the fix the remaining attempts fired at once and
the run ended ``failed``, exit 1). And ``--resume`` with nothing to resume says so before the new run.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from bookmarks_server import BookmarksServer
from dip_server import DipServer
from ex_support import DIP_KEY, DIP_SYNC, GH_TOKEN, GH_YEAR_END, ROOT, Program, python
from github_server import GitHubServer
from odata_server import ODataServer
from prices_server import PricesServer

import syncpoint
from syncpoint.model import RunStatus
from syncpoint.testing.server import FaultPlan, LocalServer

EXAMPLES = ROOT / "examples"
WAIT = "60"  # seconds the server asks for: far longer than the test allows the program to take
FAST = 3.0  # seconds from the signal to the exit, generous for a loaded 2-core machine


def always(status: int) -> FaultPlan:
    """Every request is answered ``status`` with ``Retry-After: 60``."""
    return FaultPlan(error_rate=1.0, error_status=status, retry_after=WAIT) if status != 429 else FaultPlan(
        rate_limit_rate=1.0, retry_after=WAIT)


@dataclass
class Case:
    server: Callable[[], LocalServer]  # one that makes the client wait
    args: Callable[[LocalServer, Path], list[str]]
    job: str
    store: Callable[[Path], str]
    plain: Callable[[], LocalServer]  # one without faults
    waiting: tuple[str, ...] = ()  # more clients that must be waiting too before the signal (workers)


def json_store(tmp_path: Path) -> str:
    return f"json:{tmp_path / 'cp'}"


def gh_args(server: LocalServer, tmp_path: Path) -> list[str]:
    return python(GH_YEAR_END, "--org", "acme", "--year", "2025", "--token", GH_TOKEN, "--base-url", server.url,
                  "--out", tmp_path / "data", "--per-page", "10", "--store", json_store(tmp_path), "--no-progress")


def dip_args(server: LocalServer, tmp_path: Path) -> list[str]:
    return python(DIP_SYNC, "sync-drucksachen", "--api-key", DIP_KEY, "--base-url", server.url,
                  "--db", tmp_path / "dip.db", "--store", json_store(tmp_path), "--no-progress")


def tk_args(server: LocalServer, tmp_path: Path) -> list[str]:
    return python(EXAMPLES / "tk_loader.py", "--base-url", server.url, "--db", tmp_path / "tk.db",
                  "--store", json_store(tmp_path), "--no-progress")


def stocks_args(server: LocalServer, tmp_path: Path) -> list[str]:
    return python(EXAMPLES / "daily_stock_sync.py", "--base-url", server.url, "--db", tmp_path / "stocks.db",
                  "--date", "2026-11-20", "--store", json_store(tmp_path), "--no-progress")


def bookmarks_args(server: LocalServer, tmp_path: Path) -> list[str]:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"alice": "token-alice"}))
    return python(EXAMPLES / "bookmarks_crawler.py", "--base-url", server.url, "--tokens", tokens,
                  "--output-file", tmp_path / "bookmarks.jsonl", "--store", json_store(tmp_path), "--no-progress")


CASES = {
    # GitHub's primary rate limit: 403, X-RateLimit-Remaining: 0, reset 10 minutes ahead (discovery gets through).
    # Its two repositories are fetched by two workers (--concurrency 4): both wait before the signal.
    "gh_year_end": Case(lambda: GitHubServer(repos=[5, 5], rate_limit=1, reset_after=600), gh_args,
                        "gh-year-end", json_store, lambda: GitHubServer(repos=[5, 5]),
                        waiting=("/repos/acme/repo-00/pulls", "/repos/acme/repo-01/pulls")),
    "dip_sync": Case(lambda: DipServer(50, faults=always(429)), dip_args, "drucksachen", json_store,
                     lambda: DipServer(50)),
    "tk_loader": Case(lambda: ODataServer(20, faults=always(503)), tk_args, "tk-loader", json_store,
                      lambda: ODataServer(20)),
    "daily_stock_sync": Case(lambda: PricesServer(5, faults=always(503)), stocks_args, "daily-stock-sync",
                             json_store, lambda: PricesServer(5)),
    "bookmarks_crawler": Case(lambda: BookmarksServer({"alice": 30}, faults=always(503)), bookmarks_args,
                              "twitter-bookmarks", json_store, lambda: BookmarksServer({"alice": 30})),
}


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("name", list(CASES))
def test_a_signal_during_a_retry_wait_stops_at_once_without_another_request(
    name: str, signum: signal.Signals, tmp_path: Path
) -> None:
    case = CASES[name]
    with case.server() as server:
        child = Program(case.args(server, tmp_path), cwd=tmp_path)
        child.wait_for("s before attempt 2")  # logged right before the client starts its long wait
        for needle in case.waiting:
            child.wait_for(needle)
        requests = sum(server.stats.requests.values())
        sent = time.monotonic()
        child.proc.send_signal(signum)
        code = child.finish(timeout=30)
        took = time.monotonic() - sent
        expected = 130 if signum == signal.SIGINT else 143
        assert code == expected, child.stderr
        assert took < FAST, f"took {took:.1f} s to stop after the signal"
        assert sum(server.stats.requests.values()) == requests, "a request was sent after the signal"
        assert "before attempt 3" not in child.stderr
    with syncpoint.open_store(case.store(tmp_path)) as store:
        [run] = store.list_runs(case.job)
        assert run.status is RunStatus.INTERRUPTED, run


@pytest.mark.parametrize("name", list(CASES))
def test_resume_with_nothing_to_resume_says_so_before_the_new_run_starts(name: str, tmp_path: Path) -> None:
    """The original's "No incomplete runs found": a visible line, not a silent full run."""
    case = CASES[name]
    with case.plain() as server:
        child = Program([*case.args(server, tmp_path), "--resume"], cwd=tmp_path)
        assert child.finish() == 0, child.stderr
    said = child.stderr.find(f"nothing to resume for job {case.job}")
    assert said != -1, child.stderr
    assert said < child.stderr.find("started run"), child.stderr

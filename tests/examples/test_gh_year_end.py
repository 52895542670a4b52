"""examples/gh_year_end.py against the local GitHub server: faults and rate limits, SIGKILL, SIGINT, resume."""

from __future__ import annotations

import json
import math
import random
import signal
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from ex_support import (
    GH_TOKEN,
    GH_YEAR_END,
    Program,
    WatchedGitHub,
    kill_until_done,
    load_example,
    python,
    run_program,
)

import syncpoint
from syncpoint.http import HttpClient, RetryPolicy
from syncpoint.model import RunStatus, TaskStatus
from syncpoint.testing.server import FaultPlan

gh = load_example(GH_YEAR_END)
SIZES = [35, 0, 120, 57, 8, 90]  # items per repo; about 45% of them are pulls
PER_PAGE = 10


class FakeClock:
    """Shared by the server (rate-limit windows) and the client (waits): a rate-limit reset costs no time."""

    def __init__(self) -> None:
        self.now = 1_750_000_000.0
        self.waits: list[float] = []
        self._lock = threading.Lock()

    def time(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.waits.append(seconds)
            self.now += seconds


def settings(server: WatchedGitHub, tmp_path: Path, **kw: Any) -> Any:
    return gh.Settings("acme", 2025, GH_TOKEN, out=tmp_path / "data", base_url=server.url, per_page=PER_PAGE, **kw)


def fake_connect(server: WatchedGitHub, clock: FakeClock) -> Any:
    def connect(run: syncpoint.Run) -> HttpClient:
        return HttpClient(server.url, headers={"Authorization": f"Bearer {GH_TOKEN}"}, sleep=clock.sleep,
                          clock=clock.time, now=clock.time, retry=RetryPolicy(initial_wait=0.01, jitter=0))
    return connect


def options(**kw: Any) -> syncpoint.RunOptions:
    return syncpoint.RunOptions(progress=False, **kw)


def lines(target: Path, repo: str, endpoint: str) -> list[dict[str, Any]]:
    path = target / endpoint / f"{repo.replace('/', '__')}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def assert_collected(server: WatchedGitHub, target: Path, skip: set[tuple[str, str]] = frozenset()) -> None:  # type: ignore[assignment]
    """Every JSONL file holds exactly the server's records for its repo and endpoint, each once."""
    for repo in server.items:
        for endpoint in ("pulls", "issues"):
            got = lines(target, repo, endpoint)
            if (repo, endpoint) in skip:
                assert got == []
                continue
            assert [line["data"] for line in got] == server.expected(repo, endpoint), (repo, endpoint)
            assert {(line["repo"], line["endpoint"]) for line in got} <= {(repo, endpoint)}


def pages_needed(server: WatchedGitHub) -> int:
    repo_pages = sum(max(1, math.ceil(len(server.expected(repo, endpoint)) / PER_PAGE))
                     for repo in server.items for endpoint in ("pulls", "issues"))
    return math.ceil(len(server.repos) / PER_PAGE) + repo_pages


def open_store(target: Path) -> syncpoint.Store:
    return syncpoint.open_store(f"json:{target / 'checkpoints'}")


# -- end to end, with faults --------------------------------------------------------------------------------
def test_collects_through_faults_and_rate_limits_and_records_blocked_repos(tmp_path: Path) -> None:
    clock = FakeClock()
    faults = FaultPlan(schedule=[None, 503, "drop", 429], error_rate=0.05, drop_rate=0.04, rate_limit_rate=0.04,
                       retry_after="3", seed=8)
    blocked = {("acme/repo-01", "pulls"): 404, ("acme/repo-03", "*"): 451}
    with WatchedGitHub(repos=SIZES, rate_limit=12, reset_after=60, clock=clock.time, blocked=blocked,
                       faults=faults) as server:
        config = settings(server, tmp_path)
        assert gh.collect(config, options(), connect=fake_connect(server, clock)) == 0
        skip = {("acme/repo-01", "pulls"), ("acme/repo-03", "pulls"), ("acme/repo-03", "issues")}
        assert_collected(server, config.target, skip)
        assert server.stats.faults["rate-limit"] >= 3 and server.stats.faults["drop"] >= 1
        assert any(wait >= 50 for wait in clock.waits)  # waited for X-RateLimit-Reset (on the fake clock)
        assert 3.0 in clock.waits  # Retry-After: 3 honoured

        manifest = json.loads((config.target / "manifest.json").read_text())
        assert manifest["repos"] == sorted(server.items)
        assert {(f["repo"], f["endpoint"], f["retryable"]) for f in manifest["failures"]} == {
            (repo, endpoint, False) for repo, endpoint in skip
        }
        expected = {e: sum(len(server.expected(r, e)) for r in server.items if (r, e) not in skip)
                    for e in ("pulls", "issues")}
        assert {e: manifest["counts"][e]["records"] for e in expected} == expected
        assert set(manifest["timings"]) >= {"started_at", "completed_at", "pulls", "issues"}

        # Unblocked, --retry-failed on the completed run fetches exactly the failed repos' endpoints.
        server.blocked.clear()
        before = Counter(server.stats.pages)
        run_id = manifest["run_id"]
        assert gh.collect(config, options(resume_run=run_id, retry_failed=True),
                          connect=fake_connect(server, clock)) == 0
        assert_collected(server, config.target)
        assert {key for key, n in (server.stats.pages - before).items() if n} == skip
        manifest = json.loads((config.target / "manifest.json").read_text())
        assert manifest["failures"] == [] and manifest["attempts"] == 2


# -- kill -9 and Ctrl+C ------------------------------------------------------------------------------------
def cli_args(server: WatchedGitHub, tmp_path: Path, *extra: str) -> list[str]:
    return python(GH_YEAR_END, "--org", "acme", "--year", "2025", "--token", GH_TOKEN, "--base-url", server.url,
                  "--out", tmp_path / "data", "--per-page", str(PER_PAGE), "--no-progress", *extra)


@pytest.mark.parametrize("concurrency", [1, 4])
def test_sigkill_at_random_moments_then_resume_writes_every_record_once(tmp_path: Path, concurrency: int) -> None:
    """Pages are fsynced before the cursor moves and cut back on resume: nothing lost or duplicated, and
    at most the pages in flight are fetched again per kill (pages served <= needed + kills * 2 * workers).
    With several workers each task appends only to its own file, so every file is cut back on its own."""
    rng = random.Random(21)
    with WatchedGitHub(repos=SIZES) as server:
        kills = kill_until_done(
            lambda attempt: cli_args(server, tmp_path, "--concurrency", str(concurrency),
                                     *(["--resume"] if attempt else [])),
            server.watch, lambda: sum(server.stats.pages.values()), steps=lambda: rng.randint(2, 9),
            log=tmp_path / "stderr.log",
        )
        target = settings(server, tmp_path).target
        assert_collected(server, target)
        assert kills == 4
        assert sum(server.stats.pages.values()) <= pages_needed(server) + kills * 2 * concurrency
        manifest = assert_manifest_matches_files(target)
        assert manifest["attempts"] == kills + 1 and manifest["failures"] == []


@pytest.mark.parametrize("concurrency", [1, 4])
def test_sigint_stops_at_a_page_and_resume_cuts_back_what_the_checkpoint_never_saw(
    tmp_path: Path, concurrency: int
) -> None:
    """With 4 workers every request is slow, so several tasks are in the middle of a page at the Ctrl+C:
    each stops at its page boundary, its file ends exactly at its checkpointed length, and exit is 130."""
    slow = FaultPlan(slow_rate=1.0, slow_seconds=0.2) if concurrency > 1 else None
    with WatchedGitHub(repos=SIZES, faults=slow) as server:
        server.watch.arm(12, hold=True)
        child = Program(cli_args(server, tmp_path, "--concurrency", str(concurrency)))
        assert server.watch.reached.wait(30), "the collector never reached page 12"
        child.proc.send_signal(signal.SIGINT)
        child.wait_for("SIGINT received")
        server.watch.release()
        assert child.finish() == 130 and "checkpoint committed" in child.stderr, child.stderr

        target = settings(server, tmp_path).target
        with open_store(target) as store:
            [run] = store.list_runs("gh-year-end")
            started = [t for t in store.get_tasks(run.run_id) if t.status is TaskStatus.IN_PROGRESS]
        assert len(started) == 1 if concurrency == 1 else len(started) >= 2, [t.name for t in started]
        for task in started:
            repo, endpoint = task.name.rsplit(":", 1)
            path = target / endpoint / f"{repo.replace('/', '__')}.jsonl"
            size = path.stat().st_size if path.exists() else 0
            assert size == (task.cursor["bytes"] if isinstance(task.cursor, dict) else 0), task.name
            with open(path, "a", encoding="utf-8") as out:  # as if a page got written after the last commit
                out.write('{"source": "github_rest", "repo": "half a page"}\n')
        assert not (target / "manifest.json").exists()

        code = run_program(cli_args(server, tmp_path, "--resume", "--concurrency", str(concurrency)),
                           tmp_path / "resume.log")
        assert code == 0, (tmp_path / "resume.log").read_text()
        assert (tmp_path / "resume.log").read_text().count("written after the last checkpoint") == len(started)
        assert_collected(server, target)
        assert_manifest_matches_files(target)
        assert sum(server.stats.pages.values()) <= pages_needed(server) + concurrency


def test_four_workers_write_exactly_what_one_writes(tmp_path: Path) -> None:
    """--concurrency 4 against a slow server: the same JSONL files, byte for byte, and the same manifest
    counts as --concurrency 1; no page is fetched twice."""
    blocked = {("acme/repo-01", "pulls"): 404}
    results = {}
    for concurrency in (1, 4):
        with WatchedGitHub(repos=SIZES, blocked=blocked, faults=FaultPlan(slow_rate=1.0, slow_seconds=0.05)) as server:
            out = tmp_path / f"c{concurrency}"
            args = python(GH_YEAR_END, "--org", "acme", "--year", "2025", "--token", GH_TOKEN, "--base-url",
                          server.url, "--out", out, "--per-page", str(PER_PAGE), "--no-progress",
                          "--concurrency", str(concurrency))
            assert run_program(args, tmp_path / "run.log") == 0, (tmp_path / "run.log").read_text()
            target = out / "raw" / "year=2025" / "source=github" / "target=acme"
            assert_collected(server, target, {("acme/repo-01", "pulls")})
            assert sum(server.stats.pages.values()) == pages_needed(server) - 1  # the 404 serves no page
            manifest = assert_manifest_matches_files(target)
            files = {str(p.relative_to(target)): p.read_bytes() for p in sorted(target.rglob("*.jsonl"))
                     if "checkpoints" not in p.parts}
            failures = [(f["repo"], f["endpoint"], f["retryable"]) for f in manifest["failures"]]
            results[concurrency] = (files, manifest["counts"], failures, manifest["repos"])
    assert results[4] == results[1]


# -- config digest, --force, --from-repo -----------------------------------------------------------------------
def test_changed_config_is_refused_unless_forced(tmp_path: Path) -> None:
    clock = FakeClock()
    with WatchedGitHub(repos=SIZES, faults=FaultPlan(schedule=[404])) as server:  # discovery fails once
        config = settings(server, tmp_path)
        assert gh.collect(config, options(), connect=fake_connect(server, clock)) == 1
        pulls_only = settings(server, tmp_path, endpoints=("pulls",))
        assert gh.collect(pulls_only, options(resume=True), connect=fake_connect(server, clock)) == 64
        assert gh.collect(pulls_only, options(resume=True, force=True), connect=fake_connect(server, clock)) == 0
        assert_collected(server, config.target, skip={(repo, "issues") for repo in server.items})
        with open_store(config.target) as store:
            [run] = store.list_runs("gh-year-end")
            assert run.status is RunStatus.COMPLETED and run.config["endpoints"] == ["pulls"]


def test_from_repo_skips_earlier_repos_and_a_resume_finishes_them_without_refetching(tmp_path: Path) -> None:
    clock = FakeClock()
    with WatchedGitHub(repos=SIZES) as server:
        config = settings(server, tmp_path, from_repo="acme/repo-03")
        assert gh.collect(config, options(), connect=fake_connect(server, clock)) == 2  # partial: more to do
        fetched = {key[0] for key in server.stats.pages if key[1] != "repos"}
        assert fetched == {"acme/repo-03", "acme/repo-04", "acme/repo-05"}
        assert not (config.target / "manifest.json").exists()
        assert gh.collect(settings(server, tmp_path), options(resume=True), connect=fake_connect(server, clock)) == 0
        assert_collected(server, config.target)
        assert sum(server.stats.pages.values()) == pages_needed(server)  # nothing fetched twice
        with pytest.raises(SystemExit) as exc:
            gh.main(["--org", "acme", "--year", "2025", "--endpoints", "forks", "--token", "t"])
        assert exc.value.code == 64


# -- a run over a finished collection (issue 12, items 2 and 9) --------------------------------------------
def assert_manifest_matches_files(directory: Path) -> dict[str, Any]:
    """The manifest's record counts are exactly the lines in the JSONL files beside it."""
    manifest = json.loads((directory / "manifest.json").read_text())
    for endpoint in manifest["endpoints"]:
        files = list((directory / endpoint).glob("*.jsonl"))
        lines_now = sum(len(f.read_text().splitlines()) for f in files)
        assert manifest["counts"][endpoint]["records"] == lines_now, endpoint
    return manifest


def snapshot(target: Path) -> dict[str, bytes]:
    return {str(p.relative_to(target)): p.read_bytes() for p in sorted(target.rglob("*"))
            if p.is_file() and "checkpoints" not in p.parts}


def test_a_new_run_over_a_finished_collection_is_refused_then_moves_it_aside_and_never_leaves_a_stale_manifest(
    tmp_path: Path,
) -> None:
    with WatchedGitHub(repos=SIZES) as server:
        target = settings(server, tmp_path).target
        assert run_program(cli_args(server, tmp_path), tmp_path / "first.log") == 0
        first = assert_manifest_matches_files(target)
        before = snapshot(target)

        # A plain second run would start every file from byte 0: refused, nothing touched.
        again = Program(cli_args(server, tmp_path))
        assert again.finish() == 64, again.stderr
        assert "--new-run" in again.stderr and first["run_id"] in again.stderr
        assert snapshot(target) == before

        # --new-run moves the finished set aside, whole; interrupted, no manifest describes the new files.
        server.watch.arm(sum(server.stats.pages.values()) + 4, hold=True)
        child = Program(cli_args(server, tmp_path, "--new-run"))
        assert server.watch.reached.wait(30)
        child.proc.send_signal(signal.SIGINT)
        child.wait_for("SIGINT received")
        server.watch.release()
        assert child.finish() == 130, child.stderr
        assert "moved to" in child.stderr
        assert not (target / "manifest.json").exists()
        kept = target / "previous" / first["run_id"]
        assert assert_manifest_matches_files(kept) == first
        assert {k[len(f"previous/{first['run_id']}/"):]: v for k, v in snapshot(target).items()
                if k.startswith("previous/")} == before

        assert run_program(cli_args(server, tmp_path, "--resume"), tmp_path / "resume.log") == 0
        second = assert_manifest_matches_files(target)
        assert second["run_id"] != first["run_id"]
        assert_collected(server, target)


def test_from_repo_says_why_the_run_is_partial_and_stats_count_pending_and_in_progress(tmp_path: Path) -> None:
    with WatchedGitHub(repos=SIZES) as server:
        target = settings(server, tmp_path).target
        child = Program(cli_args(server, tmp_path, "--from-repo", "acme/repo-04"))
        assert child.finish() == 2, child.stderr
        assert "(None)" not in child.stderr and "partial (8 task(s) not started)" in child.stderr, child.stderr

        stats = Program(python(GH_YEAR_END, "--org", "acme", "--year", "2025", "--out", tmp_path / "data", "--stats"))
        assert stats.finish() == 0, stats.stderr
        report = json.loads(stats.stdout)
        assert report["status"] == "partial"
        for endpoint in ("pulls", "issues"):
            assert report[endpoint] == {"total_repos": 6, "repos_complete": 2, "repos_in_progress": 0,
                                        "repos_pending": 4, "repos_failed": 0}

        assert run_program(cli_args(server, tmp_path, "--resume"), tmp_path / "resume.log") == 0
        manifest = assert_manifest_matches_files(target)
        assert manifest["counts"]["pulls"] | {"records": 0, "pages": 0} == {
            "records": 0, "pages": 0, "total_repos": 6, "repos_complete": 6, "repos_in_progress": 0,
            "repos_pending": 0, "repos_failed": 0}

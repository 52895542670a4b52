"""examples/bookmarks_crawler.py against the local bookmarks server and the real PostgreSQL: faults, kill -9,
incremental crawls, a revoked token.

Every test gets its own schema (``bm_test_<hex>``) for both the checkpoints and ``bookmark_post``, dropped
afterwards. PostgreSQL unreachable: skipped, unless ``SYNCPOINT_REQUIRE_POSTGRES=1``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from bookmarks_server import BookmarksServer
from ex_support import ROOT, PageWatch, load_example, python, run_program
from helpers import PG_URL, drop_pg_schema, require_pg, with_query
from psycopg import sql

import syncpoint
from syncpoint.model import RunStatus, TaskStatus
from syncpoint.testing.server import FaultPlan, Reply, Request

pytestmark = pytest.mark.postgres

CRAWLER = ROOT / "examples" / "bookmarks_crawler.py"
bc = load_example(CRAWLER)
USERS = {"alice": 120, "bob": 150, "carol": 60}
JOB = "twitter-bookmarks"


class WatchedBookmarks(BookmarksServer):
    """Tells the test when a given page (counting every page served) is about to be served."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.watch = PageWatch()

    def handle(self, request: Request) -> Reply:
        self.watch.before_page(self.served())
        return super().handle(request)

    def served(self) -> int:
        return sum(self.stats.pages.values())


@pytest.fixture
def schema() -> Iterator[str]:
    require_pg()
    name = f"bm_test_{uuid.uuid4().hex}"
    yield name
    drop_pg_schema(name)


@pytest.fixture
def store(schema: str) -> str:
    return with_query(PG_URL, schema=schema)


@pytest.fixture
def server() -> Iterator[WatchedBookmarks]:
    with WatchedBookmarks(USERS, page_size=20) as srv:
        yield srv


def settings(server: BookmarksServer, schema: str, **kw: Any) -> Any:
    defaults: dict[str, Any] = {"direct_import": True, "dest_schema": schema, "page_size": 20, "retry_wait": 0.001}
    return bc.Settings(server.url, tokens(server), tuple(sorted(USERS)), **{**defaults, **kw})


def tokens(server: BookmarksServer) -> dict[str, str]:
    """The tokens file's content: each user's current token (a revoked one: a stale value)."""
    return {u: t or "revoked" for u, t in server.tokens.items()}


def crawl(server: BookmarksServer, schema: str, store: str, **options: Any) -> int:
    code: int = bc.crawl(settings(server, schema), syncpoint.RunOptions(store=store, **options))
    return code


def rows(schema: str) -> Counter[tuple[str, str]]:
    with psycopg.connect(PG_URL) as conn:
        found = conn.execute(
            sql.SQL("SELECT user_id, tweet_id FROM {}.bookmark_post").format(sql.Identifier(schema))
        ).fetchall()
    return Counter((u, t) for u, t in found)


def expected(server: BookmarksServer) -> Counter[tuple[str, str]]:
    return Counter(server.all_ids())


def state(store: str) -> dict[str, Any]:
    job = syncpoint.Job(JOB, store=store)
    try:
        return {e.key: e.value for e in job.bookmarks()}
    finally:
        job.close()


def runs(store: str) -> list[syncpoint.RunRecord]:
    job = syncpoint.Job(JOB, store=store)
    try:
        return job.runs()
    finally:
        job.close()


def newest(server: BookmarksServer, user: str) -> str:
    return str(max(int(b["id"]) for b in server.bookmarks(user)))


def cli(server: BookmarksServer, schema: str, store: str, tmp_path: Path, *extra: str) -> list[str]:
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps(tokens(server)))
    mode = [] if "--output-file" in extra else ["--direct-import"]
    return python(CRAWLER, "--base-url", server.url, "--tokens", path, "--store", store, "--dest-schema", schema,
                  "--page-size", "10", "--retry-wait", "0.001", "--no-progress", *mode, *extra)


def kill_at_random(start: Any, server: WatchedBookmarks, rng: random.Random, *, log: Path, kills_wanted: int,
                   store: str, attempts: int = 30, timeout: float = 60) -> int:
    """Start the crawler; once the server sees the request for a page 1-5 pages further on, SIGKILL it after
    a random 0-30 ms, so the kill lands anywhere in a page's cycle (receiving it, inserting its rows,
    committing); restart until it exits 0. The server's count says when; the delay only scatters the moment.
    Returns the number of kills that interrupted the crawl; a kill that lands after the run completed (the
    last page was the one watched) ends the loop, since a restart would rightly begin a new crawl."""
    kills = 0
    for _ in range(attempts):
        server.watch.arm(server.served() + rng.randint(1, 5) if kills < kills_wanted else 1 << 30)
        with open(log, "a", encoding="utf-8") as err:
            proc = subprocess.Popen(start(), stdin=subprocess.DEVNULL, stdout=err, stderr=err, cwd=ROOT)
        deadline = time.monotonic() + timeout
        while not server.watch.reached.wait(0.05) and proc.poll() is None:
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"no progress in {timeout}s; see {log}")
        if proc.poll() is None:
            time.sleep(rng.uniform(0, 0.03))
            os.kill(proc.pid, signal.SIGKILL)
        code = proc.wait(timeout)
        if code == -signal.SIGKILL and runs(store)[0].status is RunStatus.COMPLETED:
            return kills
        if code == -signal.SIGKILL:
            kills += 1
            continue
        assert code == 0, f"exit {code}; see {log}:\n{log.read_text()[-3000:]}"
        return kills
    pytest.fail(f"never completed in {attempts} attempts; see {log}")


def test_ids_cross_a_digit_boundary(server: BookmarksServer) -> None:
    """String comparison would get these wrong: 18-digit IDs sort after 19-digit ones as text."""
    lengths = {len(t) for _, t in server.all_ids()}
    assert lengths == {18, 19}


def test_end_to_end_with_faults(server: WatchedBookmarks, schema: str, store: str) -> None:
    server.faults = FaultPlan(schedule=[503, 429, "drop", 500, "drop"], error_rate=0.1, rate_limit_rate=0.05,
                              drop_rate=0.05, retry_after="0", seed=7)
    assert crawl(server, schema, store) == 0
    got = rows(schema)
    assert got == expected(server)
    assert max(got.values()) == 1
    assert sum(server.stats.faults.values()) >= 5
    bookmarks = state(store)
    for user, count in USERS.items():
        assert bookmarks[f"{user}.last_tweet_id"] == newest(server, user)
        assert bookmarks[f"{user}.bookmarks_count"] == count
        assert isinstance(bookmarks[f"{user}.last_crawled_at"], str)
    [run] = runs(store)
    assert run.status is RunStatus.COMPLETED
    assert run.params == {"direct_import": True, "enable_summarization": False, "output_file_path": None}
    with psycopg.connect(PG_URL) as conn:  # the checkpoints live in the chosen schema, beside bookmark_post
        tables = {r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,))}
    assert {"runs", "tasks", "bookmark_post"} <= tables


def test_sigkill_loop_direct_import(server: WatchedBookmarks, schema: str, store: str, tmp_path: Path) -> None:
    server.faults = FaultPlan(error_rate=0.05, drop_rate=0.03, retry_after="0", seed=11)
    rng = random.Random(5)
    needed = sum(-(-n // 10) for n in USERS.values())
    kills = kill_at_random(lambda: cli(server, schema, store, tmp_path, "--resume"), server, rng,
                           log=tmp_path / "crawler.log", kills_wanted=6, store=store)
    assert kills >= 3  # 6 unless one landed after the run had completed
    got = rows(schema)
    assert got == expected(server), "duplicates or losses after kill -9"
    assert max(got.values()) == 1
    assert server.served() <= needed + 2 * kills
    bookmarks = state(store)
    for user in USERS:
        assert bookmarks[f"{user}.last_tweet_id"] == newest(server, user)
        assert bookmarks[f"{user}.bookmarks_count"] == USERS[user]
    assert [r.status for r in runs(store)] == [RunStatus.COMPLETED]  # one run, resumed each time


def test_sigkill_loop_jsonl(server: WatchedBookmarks, schema: str, store: str, tmp_path: Path) -> None:
    out = tmp_path / "bookmarks.jsonl"
    rng = random.Random(9)
    kills = kill_at_random(lambda: cli(server, schema, store, tmp_path, "--resume", "--output-file", out), server,
                           rng, log=tmp_path / "crawler.log", kills_wanted=3, store=store)
    assert kills >= 2  # 3 unless one landed after the run had completed

    def lines() -> Counter[tuple[str, str]]:
        return Counter((d["user_id"], d["id"]) for d in map(json.loads, out.read_text().splitlines()))

    assert lines() == expected(server)
    # Bytes appended after the last commit (a crash between fsync and commit) are cut off, not kept.
    with open(out, "a") as f:
        f.write('{"user_id": "alice", "id": "1"}\n')
    server.add("carol", 4)
    assert run_program(cli(server, schema, store, tmp_path, "--output-file", out), tmp_path / "crawler.log") == 0
    assert lines() == expected(server)


@pytest.fixture
def server18() -> Iterator[WatchedBookmarks]:
    """Every initial tweet ID has 18 digits; ``add(..., at_least=10**18)`` makes 19-digit ones."""
    with WatchedBookmarks(USERS, page_size=20, first_id=10**18 - 20_000) as srv:
        assert {len(t) for _, t in srv.all_ids()} == {18}
        yield srv


def test_incremental(server18: WatchedBookmarks, schema: str, store: str, tmp_path: Path) -> None:
    server = server18
    assert crawl(server, schema, store) == 0
    before = dict(state(store))
    pages = Counter(server.stats.pages)
    server.add("alice", 3, at_least=10**18)  # "1000…" < "9999…" as text: a string comparison would stop here
    server.add("bob", 45)
    assert crawl(server, schema, store) == 0
    delta = Counter(server.stats.pages)
    delta.subtract(pages)
    # Only up to the page holding the stored last_tweet_id: ceil((new + 1) / 20) pages, none of the old ones.
    assert dict(delta) == {"alice": 1, "bob": 3, "carol": 1}
    assert rows(schema) == expected(server)
    after = state(store)
    assert after["alice.last_tweet_id"] == newest(server, "alice") != before["alice.last_tweet_id"]
    assert after["bob.bookmarks_count"] == USERS["bob"] + 45
    assert after["carol.last_tweet_id"] == before["carol.last_tweet_id"]
    assert after["carol.bookmarks_count"] == USERS["carol"]

    # An interrupted incremental crawl does not move last_tweet_id; the resume continues at its page.
    server.add("bob", 55)
    mark = server.served()
    server.watch.arm(mark + 3, hold=True)  # alice: 1 page (10 per page in the CLI); bob's 2nd page is held
    with open(tmp_path / "crawler.log", "a") as log:
        proc = subprocess.Popen(cli(server, schema, store, tmp_path), stdout=log, stderr=log, cwd=ROOT)
    try:
        assert server.watch.reached.wait(30), (tmp_path / "crawler.log").read_text()[-2000:]
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        server.watch.release()
        if proc.poll() is None:
            proc.kill()
    interrupted = state(store)
    assert interrupted["bob.last_tweet_id"] == after["bob.last_tweet_id"]
    assert interrupted["bob.bookmarks_count"] == after["bob.bookmarks_count"]
    partial = rows(schema)
    assert max(partial.values()) == 1
    assert sum(1 for (u, _) in partial if u == "bob") == USERS["bob"] + 45 + 10  # bob's first page committed
    bob_pages = server.stats.pages["bob"]
    assert run_program(cli(server, schema, store, tmp_path, "--resume"), tmp_path / "crawler.log") == 0
    assert rows(schema) == expected(server)
    final = state(store)
    assert final["bob.last_tweet_id"] == newest(server, "bob")
    assert final["bob.bookmarks_count"] == USERS["bob"] + 45 + 55
    # resumed at bob's 2nd page (re-fetching at most the one killed in flight), not from the front
    assert server.stats.pages["bob"] - bob_pages <= 6 - 1 + 1


def test_revoked_token_is_isolated_and_retried(server: WatchedBookmarks, schema: str, store: str,
                                               tmp_path: Path) -> None:
    server.revoke("bob")
    assert crawl(server, schema, store) == 0  # a permanent failure of one user: the run completes
    got = rows(schema)
    assert {u for u, _ in got} == {"alice", "carol"}
    assert got == Counter(p for p in server.all_ids() if p[0] != "bob")
    [run] = runs(store)
    job = syncpoint.Job(JOB, store=store)
    try:
        tasks = {t.name: t for t in job.store.get_tasks(run.run_id)}
    finally:
        job.close()
    assert tasks["bob"].status is TaskStatus.FAILED and not tasks["bob"].retryable
    assert "401" in (tasks["bob"].error or "")
    assert tasks["alice"].status is TaskStatus.COMPLETED and tasks["carol"].status is TaskStatus.COMPLETED
    assert "bob.last_tweet_id" not in state(store)

    shown = subprocess.run([sys.executable, "-m", "syncpoint", "--store", store, "runs", "show", run.run_id],
                           capture_output=True, text=True, timeout=60, cwd=ROOT,
                           env={**os.environ, "COLUMNS": "300"})
    assert shown.returncode == 0, shown.stderr
    bob_line = next(line for line in shown.stdout.splitlines() if "bob" in line and "failed" in line)
    assert "401" in bob_line

    server.set_token("bob", "token-bob-new")
    pages = Counter(server.stats.pages)
    code = run_program(cli(server, schema, store, tmp_path, "--resume", "--retry-failed"), tmp_path / "crawler.log")
    assert code == 0, (tmp_path / "crawler.log").read_text()[-2000:]
    assert server.stats.pages["alice"] == pages["alice"] and server.stats.pages["carol"] == pages["carol"]
    assert rows(schema) == expected(server)
    assert state(store)["bob.last_tweet_id"] == newest(server, "bob")
    [again] = runs(store)  # the same run, retried
    assert again.run_id == run.run_id and again.status is RunStatus.COMPLETED and again.attempts == 2


def test_crash_between_rows_and_checkpoint(server: WatchedBookmarks, schema: str, store: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The commit that would cover a page's rows fails (as if the process died right there): the rows go with
    it, the run fails, and the resume neither loses nor repeats a bookmark."""
    from syncpoint.stores.postgres import PostgresStore

    calls = {"n": 0}

    def failing(real: Any) -> Any:
        def wrapper(self: Any, *args: Any) -> Any:
            calls["n"] += 1
            if calls["n"] == 6:  # a page's commit, with rows written on the bound connection
                raise psycopg.OperationalError("simulated crash before the checkpoint commit")
            return real(self, *args)
        return wrapper

    monkeypatch.setattr(PostgresStore, "apply_in", failing(PostgresStore.apply_in))
    monkeypatch.setattr(PostgresStore, "apply", failing(PostgresStore.apply))
    assert crawl(server, schema, store) == 1
    monkeypatch.undo()
    assert calls["n"] > 6
    [run] = runs(store)
    assert run.status is RunStatus.FAILED and "simulated crash" in (run.error or "")
    partial = rows(schema)
    assert max(partial.values()) == 1 and sum(partial.values()) == 4 * 20  # the pages committed before it
    assert crawl(server, schema, store, resume=True) == 0
    got = rows(schema)
    assert got == expected(server) and max(got.values()) == 1


def test_store_defaults_to_the_crawler_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SYNCPOINT_STORE", raising=False)
    default = bc.store_url(syncpoint.RunOptions(), "postgresql://u@db.example/favbook")
    assert default == "postgresql://u@db.example/favbook?schema=crawler"
    chosen = bc.store_url(syncpoint.RunOptions(store="postgresql://u@h/db?schema=other"), None)
    assert chosen == "postgresql://u@h/db?schema=other"
    with pytest.raises(syncpoint.UsageError):
        bc.store_url(syncpoint.RunOptions(), None)


# -- the original's tables and a recrawl from the beginning (issue 12, items 3 and 4) -------------------------
def query(schema: str, text: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    with psycopg.connect(PG_URL) as conn:
        cur = conn.execute(sql.SQL(text).format(s=sql.Identifier(schema)))
        return [c.name for c in cur.description or []], cur.fetchall()


def test_the_originals_queries_work_on_views_with_its_column_names_and_meanings(
    server: WatchedBookmarks, schema: str, store: str, tmp_path: Path
) -> None:
    server.revoke("carol")
    assert run_program(cli(server, schema, store, tmp_path), tmp_path / "crawl.log") == 0
    # The original's users join on their own user table.
    with psycopg.connect(PG_URL) as conn:
        conn.execute(sql.SQL('CREATE TABLE {}."user" (id varchar(255) PRIMARY KEY)').format(sql.Identifier(schema)))
        conn.execute(sql.SQL('INSERT INTO {}."user" VALUES (%s), (%s), (%s)').format(sql.Identifier(schema)),
                     list(USERS))

    columns, found = query(schema, "SELECT * FROM {s}.twitter_crawl_checkpoint ORDER BY user_id")
    assert columns == ["user_id", "last_tweet_id", "last_crawled_at", "bookmarks_count", "created_at", "updated_at"]
    assert [(r[0], r[1], r[3]) for r in found] == [
        ("alice", newest(server, "alice"), USERS["alice"]), ("bob", newest(server, "bob"), USERS["bob"])]
    for row in found:
        assert row[2] is not None and row[4] is not None and row[4] <= row[5]
        assert row[2].tzinfo is None  # TIMESTAMP, as the original's
    _, joined = query(schema, 'SELECT u.id, c.last_tweet_id FROM {s}."user" u '
                              "LEFT JOIN {s}.twitter_crawl_checkpoint c ON c.user_id = u.id ORDER BY u.id")
    assert joined == [("alice", newest(server, "alice")), ("bob", newest(server, "bob")), ("carol", None)]

    columns, found = query(schema, "SELECT * FROM {s}.crawl_session ORDER BY user_id")
    assert columns == ["session_id", "user_id", "started_at", "completed_at", "status", "bookmarks_processed",
                       "direct_import", "enable_summarization", "output_file_path", "error_message"]
    [run] = runs(store)
    by_user = {r[1]: r for r in found}
    assert set(by_user) == set(USERS)
    for user in ("alice", "bob"):
        row = by_user[user]
        assert row[0] == f"{run.run_id}:{user}" and row[4] == "completed" and row[5] == USERS[user]
        assert row[2] <= row[3] and row[6:9] == (True, False, None) and row[9] is None
    carol = by_user["carol"]
    assert carol[4] == "failed" and "401" in carol[9]


def test_a_recrawl_from_the_beginning_writes_no_duplicate_and_counts_right(
    server: WatchedBookmarks, schema: str, store: str, tmp_path: Path
) -> None:
    assert run_program(cli(server, schema, store, tmp_path), tmp_path / "crawl.log") == 0
    assert rows(schema) == expected(server)
    reset = subprocess.run([sys.executable, "-m", "syncpoint", "--store", store, "state", "reset", JOB,
                            "--key", "alice.last_tweet_id", "--yes"], capture_output=True, text=True, timeout=60)
    assert reset.returncode == 0, reset.stderr
    server.add("alice", 3)
    assert run_program(cli(server, schema, store, tmp_path), tmp_path / "recrawl.log") == 0
    got = rows(schema)
    assert got == expected(server) and max(got.values()) == 1, "a recrawl wrote bookmarks twice"
    bookmarks = state(store)
    assert bookmarks["alice.bookmarks_count"] == USERS["alice"] + 3  # the 3 new ones, not all of them again
    assert bookmarks["alice.last_tweet_id"] == newest(server, "alice")
    _, found = query(schema, "SELECT bookmarks_count FROM {s}.twitter_crawl_checkpoint WHERE user_id = 'alice'")
    assert found == [(USERS["alice"] + 3,)]

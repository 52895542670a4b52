"""examples/bookmarks_crawler.py with many workers (``--enqueue``, ``--work``) on the real PostgreSQL.

Real subprocesses against the local bookmarks server: one fan-out (a task per user), three workers, one of
them killed with ``kill -9`` in the middle of a user's crawl. Each page's rows commit in the transaction of
the checkpoint that covers them, under the lease, so every bookmark is in ``bookmark_post`` once and every
user's ``bookmarks_count`` (rows *added*, counted by the upserts) is exact: a page whose rows had committed
without its cursor would be upserted again on the takeover and counted as not new. Every test has its own
schema and job name (its own queue in procrastinate's shared tables).
"""

from __future__ import annotations

import json
import re
import signal
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from bookmarks_server import BookmarksServer
from ex_support import ROOT, Program, first_to_log, python
from helpers import PG_URL, drop_fleet_schema, require_pg, with_query
from psycopg import sql

import syncpoint
from syncpoint.testing.server import FaultPlan

pytestmark = pytest.mark.postgres

CRAWLER = ROOT / "examples" / "bookmarks_crawler.py"
USERS = {"alice": 120, "bob": 70, "carol": 60, "dave": 50, "erin": 40, "frank": 30}
PAGE = 10
STALL = "2"  # seconds: a takeover after a kill costs about this much



@dataclass
class Bed:
    server: BookmarksServer
    tmp: Path
    schema: str
    job: str

    @property
    def store(self) -> str:
        return with_query(PG_URL, schema=self.schema, retry="5")

    def args(self, *extra: str) -> list[str]:
        tokens = self.tmp / "tokens.json"
        tokens.write_text(json.dumps(dict(self.server.tokens)))
        return python(CRAWLER, "--tokens", tokens, "--store", self.store, "--job", self.job, "--page-size",
                      str(PAGE), "--retry-wait", "0.01", "--no-progress", *extra)

    def enqueue(self) -> str:
        fan_out = Program(self.args("--base-url", self.server.url, "--direct-import", "--dest-schema", self.schema,
                                    "--enqueue"))
        assert fan_out.finish(timeout=60) == 0, fan_out.stderr
        found = re.search(rf"run (\S+): {len(USERS)} user\(s\) queued", fan_out.stdout)
        assert found, fan_out.stdout + fan_out.stderr
        return found.group(1)

    def worker(self, *extra: str) -> Program:
        return Program(self.args("--work", "--stall-timeout", STALL, *extra))

    def sql(self, text: str, *args: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            return conn.execute(sql.SQL(text).format(s=sql.Identifier(self.schema)), args).fetchall()

    def state(self) -> dict[str, Any]:
        job = syncpoint.Job(self.job, store=self.store)
        try:
            return {e.key: e.value for e in job.bookmarks()}
        finally:
            job.close()


@pytest.fixture
def bed(tmp_path: Path) -> Iterator[Bed]:
    require_pg()
    tag = uuid.uuid4().hex[:12]
    with BookmarksServer(USERS, page_size=20, faults=FaultPlan(slow_rate=1.0, slow_seconds=0.02)) as server:
        made = Bed(server, tmp_path, f"bm_workers_{tag}", f"bm-workers-{tag}")
        try:
            yield made
        finally:
            drop_fleet_schema(made.schema, made.job)


def test_three_workers_one_killed_mid_user_store_every_bookmark_once(bed: Bed) -> None:
    run_id = bed.enqueue()
    user = max(USERS, key=USERS.__getitem__)
    workers = [bed.worker("--until-done") for _ in range(3)]
    victim = first_to_log(workers, rf"\b{user}: page 2 written")
    victim.proc.kill()
    assert victim.finish(timeout=30) == -signal.SIGKILL
    others = [w for w in workers if w is not victim]
    for worker in others:
        assert worker.finish(timeout=60) == 0, worker.stderr[-3000:]

    rows = Counter(bed.sql("SELECT user_id, tweet_id FROM {s}.bookmark_post"))
    assert rows == Counter(bed.server.all_ids()) and max(rows.values()) == 1
    resumed = [int(m) for w in others for m in re.findall(rf"\b{user}: epoch 2, after (\d+) page", w.stderr)]
    assert resumed and resumed[0] >= 2, "the user's crawl was not continued from its checkpoint"
    state = bed.state()
    for name, count in USERS.items():
        newest = str(max(int(b["id"]) for b in bed.server.bookmarks(name)))
        assert (state[f"{name}.last_tweet_id"], state[f"{name}.bookmarks_count"]) == (newest, count), name
    sessions = dict(bed.sql("SELECT user_id, bookmarks_processed FROM {s}.crawl_session"))
    assert sessions == USERS
    assert bed.sql("SELECT status FROM {s}.runs WHERE run_id = %s", run_id) == [("completed",)]
    assert bed.sql("SELECT epoch FROM {s}.leases WHERE task = %s", user)[0][0] >= 2
    late = bed.sql(
        "SELECT g.task, g.epoch FROM {s}.lease_grants g JOIN {s}.lease_grants n ON n.run_id = g.run_id "
        "AND n.task = g.task AND n.epoch = g.epoch + 1 WHERE g.run_id = %s AND g.last_commit_at > n.granted_at",
        run_id,
    )
    assert late == []  # no commit of a fenced epoch landed


def test_usage_errors_say_what_to_do_in_one_line(bed: Bed) -> None:
    """Exit 64, one line each: --enqueue without --direct-import; a store that is not PostgreSQL; a worker
    given what the run decides; a single-process ``--resume`` of the workers' running crawl."""
    cases = [
        (bed.args("--base-url", bed.server.url, "--enqueue"), "add it to --enqueue"),
        (bed.args("--store", f"json:{bed.tmp / 'cp'}", "--work"), "need the PostgreSQL store"),  # the last wins
        (bed.args("--work", "--user", "alice"), "leave out --user"),
    ]
    for args, needle in cases:
        program = Program(args)
        assert program.finish(timeout=30) == 64, program.stderr
        assert needle in program.stderr and len(program.stderr.strip().splitlines()) == 1, program.stderr
    run_id = bed.enqueue()
    assert bed.enqueue() == run_id  # the same fan-out again: the same run, nothing queued twice
    single = Program(bed.args("--base-url", bed.server.url, "--direct-import", "--dest-schema", bed.schema,
                              "--resume"))
    assert single.finish(timeout=30) == 64, single.stderr
    assert f"run {run_id} is being crawled by workers" in single.stderr


def test_a_user_failed_for_good_is_crawled_again_by_enqueue_resume_retry_failed(bed: Bed) -> None:
    """A user's token is rotated mid-crawl (401: failed for good; the crawl completes, that user counted as
    failed). Once the token works again, ``--enqueue --resume --retry-failed`` queues that user alone again
    (``fleet.retry``); a worker continues it, and every bookmark is stored once, the other users not again."""
    run_id = bed.enqueue()
    worker_args = bed.args("--work", "--stall-timeout", STALL, "--until-done")  # tokens.json as it is now
    token = bed.server.tokens["carol"]
    assert token is not None
    bed.server.set_token("carol", "rotated")  # the crawler still sends the old one: 401
    first = Program(worker_args)
    assert first.finish(timeout=60) == 0, first.stderr[-3000:]
    assert bed.sql("SELECT status FROM {s}.runs") == [("completed",)]  # a failure for good is counted
    assert bed.sql("SELECT status, retryable FROM {s}.tasks WHERE name = 'carol'") == [("failed", False)]
    assert not bed.sql("SELECT 1 FROM {s}.bookmark_post WHERE user_id = 'carol'")

    retry = ["--base-url", bed.server.url, "--direct-import", "--dest-schema", bed.schema, "--enqueue", "--resume"]
    plain = Program(bed.args(*retry))
    assert plain.finish(timeout=30) == 64
    assert f"run {run_id}: 1 user(s) failed for good (carol); add --retry-failed" in plain.stderr, plain.stderr
    bed.server.set_token("carol", token)  # fixed
    again = Program(bed.args(*retry, "--retry-failed"))
    assert again.finish(timeout=60) == 0, again.stderr
    assert f"run {run_id}: 1 user(s) queued again (carol); start workers with --work" in again.stdout
    second = Program(worker_args)
    assert second.finish(timeout=60) == 0, second.stderr[-3000:]
    assert "alice" not in second.stderr  # only carol was crawled again
    assert bed.sql("SELECT status, attempts FROM {s}.runs") == [("completed", 2)]
    rows = Counter(bed.sql("SELECT user_id, tweet_id FROM {s}.bookmark_post"))
    assert rows == Counter(bed.server.all_ids()) and max(rows.values()) == 1

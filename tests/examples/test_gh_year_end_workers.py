"""examples/gh_year_end.py with many workers (``--enqueue``, ``--work``) on the real PostgreSQL.

Real subprocesses against the local GitHub server: one fan-out, worker processes that share the output
directory, a ``kill -9`` of a worker in the middle of a task and a worker paused past the stall timeout that
comes back (SIGSTOP, SIGCONT). The JSONL files must hold every record exactly once — byte for byte what a
single-process run writes. Every test has its own schema (store and leases) and its own job name, so its
queue in procrastinate's shared tables is its own.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from ex_support import GH_TOKEN, GH_YEAR_END, PageWatch, Program, first_to_log, load_example, python
from github_server import GitHubServer
from helpers import PG_URL, drop_fleet_schema, late_commits, require_pg, with_query
from psycopg import sql

from syncpoint.testing.server import FaultPlan, Reply, Request

pytestmark = pytest.mark.postgres

SIZES = [35, 0, 120, 57, 8, 90]  # items per repo; about 45% of them are pulls
PER_PAGE = 10
STALL = "2"  # seconds: a takeover after a kill costs about this much
ENDPOINTS = ("pulls", "issues")



class HoldingGitHub(GitHubServer):
    """The GitHub stand-in, able to hold one request (the n-th GET) while serving every other client.

    (``ex_support.WatchedGitHub`` holds inside the server's lock, which would stall the other workers too.)
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.watch = PageWatch()
        self.answered = threading.Event()  # the held request has its reply
        self.gets = 0
        self._count = threading.Lock()

    def _serve(self, request: Request) -> Reply:
        if request.method != "GET":
            return super()._serve(request)
        with self._count:
            seen, self.gets = self.gets, self.gets + 1
        held = not self.watch.reached.is_set()
        self.watch.before_page(seen)  # outside the lock that super()._serve takes
        reply = super()._serve(request)
        if held and self.watch.reached.is_set():
            self.answered.set()
        return reply


@dataclass
class Bed:
    """One stand-in server, one schema, one job name (its own queue) and the directories of a test."""

    server: HoldingGitHub
    tmp: Path
    schema: str
    job: str

    @property
    def store(self) -> str:
        return with_query(PG_URL, schema=self.schema, retry="5")

    @property
    def out(self) -> Path:
        return self.tmp / "dist"

    def target(self, out: Path | None = None) -> Path:
        return (out or self.out) / "raw" / "year=2025" / "source=github" / "target=acme"

    def args(self, *extra: str | Path, out: Path | None = None) -> list[str]:
        return python(GH_YEAR_END, "--token", GH_TOKEN, "--base-url", self.server.url, "--out", out or self.out,
                      "--per-page", str(PER_PAGE), "--job", self.job, "--no-progress", *extra)

    def enqueue(self) -> str:
        fan_out = Program(self.args("--org", "acme", "--year", "2025", "--enqueue", "--store", self.store))
        assert fan_out.finish(timeout=60) == 0, fan_out.stderr
        found = re.search(r"run (\S+): 12 task\(s\) queued \(6 repositories x 2 endpoints\)", fan_out.stdout)
        assert found, fan_out.stdout + fan_out.stderr
        return found.group(1)

    def worker(self, *extra: str) -> Program:
        return Program(self.args("--work", "--concurrency", "1", "--stall-timeout", STALL, "--store", self.store,
                                 *extra))

    def served(self) -> int:
        return sum(self.server.stats.pages.values())

    def sql(self, text: str, *args: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            return conn.execute(sql.SQL(text).format(s=sql.Identifier(self.schema)), args).fetchall()

    def late_commits(self, run_id: str) -> list[tuple[str, int]]:
        return late_commits(self.schema, run_id)


@pytest.fixture
def bed(tmp_path: Path) -> Iterator[Bed]:
    require_pg()
    tag = uuid.uuid4().hex[:12]
    with HoldingGitHub(repos=SIZES, faults=FaultPlan(slow_rate=1.0, slow_seconds=0.02)) as server:
        made = Bed(server, tmp_path, f"gh_workers_{tag}", f"gh-workers-{tag}")
        try:
            yield made
        finally:
            drop_fleet_schema(made.schema, made.job)


def pages(server: GitHubServer, repo: str, endpoint: str) -> int:
    return max(1, math.ceil(len(server.expected(repo, endpoint)) / PER_PAGE))


def tasks(server: GitHubServer) -> list[tuple[str, str]]:
    """The tasks in the order ``--enqueue`` queues them: every repository's pulls, then their issues."""
    return [(repo, endpoint) for endpoint in ENDPOINTS for repo in sorted(server.items)]


def jsonl_files(target: Path) -> dict[str, bytes]:
    return {str(p.relative_to(target)): p.read_bytes() for p in sorted(target.glob("*/*.jsonl"))}


def assert_every_record_once(server: GitHubServer, target: Path) -> None:
    for repo, endpoint in tasks(server):
        path = target / endpoint / f"{repo.replace('/', '__')}.jsonl"
        got = [json.loads(line) for line in path.read_text().splitlines()]
        assert [line["data"] for line in got] == server.expected(repo, endpoint), (repo, endpoint)


def test_three_workers_one_killed_mid_task_write_what_one_process_writes(bed: Bed) -> None:
    """``kill -9`` of the worker holding the longest task after its second page: another worker takes the task
    over after the stall timeout, from its checkpoint, and every file equals the single-process run's."""
    single = Program(bed.args("--org", "acme", "--year", "2025", "--concurrency", "4", out=bed.tmp / "single"))
    assert single.finish(timeout=60) == 0, single.stderr
    reference = jsonl_files(bed.target(bed.tmp / "single"))
    needed = bed.served()  # a whole collection, discovery included

    before = bed.served()
    run_id = bed.enqueue()
    repo, endpoint = max(tasks(bed.server), key=lambda t: pages(bed.server, *t))
    name = f"{repo}:{endpoint}"
    workers = [bed.worker("--until-done") for _ in range(3)]
    victim = first_to_log(workers, rf"{re.escape(name)}: page 2 written")
    victim.proc.kill()
    assert victim.finish(timeout=30) == -signal.SIGKILL
    others = [w for w in workers if w is not victim]
    for worker in others:
        assert worker.finish(timeout=60) == 0, worker.stderr[-3000:]

    target = bed.target()
    assert jsonl_files(target) == reference
    assert_every_record_once(bed.server, target)
    resumed = [int(m) for w in others for m in re.findall(rf"{re.escape(name)}: epoch 2, after (\d+) page", w.stderr)]
    assert resumed and resumed[0] >= 2, "the task was not continued from its checkpoint"
    assert bed.sql("SELECT status FROM {s}.runs WHERE run_id = %s", run_id) == [("completed",)]
    assert bed.sql("SELECT epoch FROM {s}.leases WHERE task = %s", name)[0][0] >= 2
    assert bed.late_commits(run_id) == []
    takeovers = bed.sql("SELECT sum(takeovers) FROM {s}.leases WHERE run_id = %s", run_id)[0][0]
    assert bed.served() - before <= needed + 2 * takeovers  # a takeover costs at most the pages in flight
    manifest = json.loads((target / "manifest.json").read_text())
    single_manifest = json.loads((bed.target(bed.tmp / "single") / "manifest.json").read_text())
    assert manifest["run_id"] == run_id and manifest["failures"] == []
    assert manifest["counts"] == single_manifest["counts"] and manifest["repos"] == single_manifest["repos"]
    assert not (target / "parts").exists()


def test_a_paused_worker_that_comes_back_after_a_takeover_changes_no_file(bed: Bed) -> None:
    """A worker is stopped (SIGSTOP) while its third page of a task is on its way; another worker takes the
    task over after the stall timeout and finishes the collection. SIGCONT: the paused worker receives the
    page and may append it before its commit is refused, but only to its own epoch's part file, which is
    read no further than its committed length (whether it appends first, or its heartbeat finds the lease lost
    first, is up to the scheduler; ``test_assembly_reads_each_part_only_to_its_committed_length`` covers the
    append itself). Every file holds every record once."""
    run_id = bed.enqueue()
    order = tasks(bed.server)
    held = next(i for i, t in enumerate(order) if pages(bed.server, *t) >= 4)  # a task with pages left after the 3rd
    before = sum(pages(bed.server, *t) for t in order[:held])  # one worker, one task at a time: in queue order
    bed.server.watch.arm(bed.server.gets + before + 3, hold=True)
    paused = bed.worker()
    try:
        assert bed.server.watch.reached.wait(30), paused.stderr
        name = f"{order[held][0]}:{order[held][1]}"
        paused.wait_for(f"{name}: page 2 written")  # logged before the held request; the reader may lag
        os.kill(paused.proc.pid, signal.SIGSTOP)
        try:
            other = bed.worker("--until-done")
            assert other.finish(timeout=60) == 0, other.stderr[-3000:]
        finally:
            bed.server.watch.release()
            bed.server.answered.wait(30)  # the page is on its way back: the paused worker may append it
            os.kill(paused.proc.pid, signal.SIGCONT)
        paused.wait_for("lost the lease on task")
    finally:
        paused.proc.send_signal(signal.SIGTERM)
    assert paused.finish(timeout=30) == 143, paused.stderr[-3000:]

    assert re.search(rf"{re.escape(name)}: epoch 2, after 2 page", other.stderr), other.stderr[-3000:]
    assert_every_record_once(bed.server, bed.target())
    assert bed.sql("SELECT status FROM {s}.runs WHERE run_id = %s", run_id) == [("completed",)]
    assert bed.sql("SELECT epoch FROM {s}.leases WHERE task = %s", name) == [(2,)]
    assert bed.late_commits(run_id) == []
    manifest = json.loads((bed.target() / "manifest.json").read_text())
    for endpoint in ENDPOINTS:
        lines = sum(len(p.read_text().splitlines()) for p in (bed.target() / endpoint).glob("*.jsonl"))
        assert manifest["counts"][endpoint]["records"] == lines


def test_usage_errors_and_a_second_fan_out_and_a_single_process_resume_of_the_workers_run(bed: Bed) -> None:
    """Each a one-line error, exit 64: a store that is not PostgreSQL, a worker given --org, a single-process
    ``--resume`` of a run the workers collect (its cursors name part files, and it would commit without a
    lease). The same fan-out twice reuses the running run and queues nothing twice."""
    for mode in (["--org", "acme", "--year", "2025", "--enqueue"], ["--work"]):
        program = Program(bed.args(*mode, "--store", f"json:{bed.tmp / 'cp'}"))
        assert program.finish(timeout=30) == 64
        assert "need the PostgreSQL store" in program.stderr and len(program.stderr.strip().splitlines()) == 1
    worker = Program(bed.args("--work", "--org", "acme", "--store", bed.store))
    assert worker.finish(timeout=30) == 64 and "leave out --org" in worker.stderr, worker.stderr

    run_id = bed.enqueue()
    assert bed.enqueue() == run_id
    assert bed.sql("SELECT count(*) FROM {s}.leases WHERE run_id = %s", run_id) == [(12,)]
    single = Program(bed.args("--org", "acme", "--year", "2025", "--resume", "--store", bed.store))
    assert single.finish(timeout=30) == 64, single.stderr
    assert "being collected by workers" in single.stderr and len(single.stderr.strip().splitlines()) == 1


def test_assembly_reads_each_part_only_to_its_committed_length(tmp_path: Path) -> None:
    """The mechanism on its own: parts with bytes past their committed length (a fenced worker's late
    append) and a part the cursor never named (an epoch that committed nothing) are left out."""
    gh = load_example(GH_YEAR_END)
    path = {epoch: tmp_path / f"part.{epoch}.jsonl" for epoch in (1, 2, 3)}
    path[1].write_bytes(b'{"n": 1}\n{"n": 2}\n{"n": "late, epoch 1"}\n')
    path[2].write_bytes(b'{"n": "never committed"}\n')
    path[3].write_bytes(b'{"n": 3}\n{"n": "late, epoch 3"}\n')
    parts = gh.Parts(path.__getitem__, [(1, 18)])
    assert parts.grown(3, 9) == [[1, 18], [3, 9]]
    parts.assemble(tmp_path / "out" / "task.jsonl")
    assert (tmp_path / "out" / "task.jsonl").read_bytes() == b'{"n": 1}\n{"n": 2}\n{"n": 3}\n'
    path[3].write_bytes(b"")  # shorter than committed: changed behind the collector's back
    with pytest.raises(gh.syncpoint.CorruptState):
        parts.assemble(tmp_path / "out" / "task.jsonl")

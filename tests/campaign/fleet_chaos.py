"""Chaos for many workers on one run (issue 14): 4 worker processes of ``tests/jobs/fleet_job.py`` over a few
hundred tasks; at random points of progress a random worker gets ``kill -9``, SIGSTOP (and SIGCONT later: the
comeback of a worker presumed dead) or SIGTERM, and dead workers are replaced, until the run completes.

What is checked, from the store and the destinations (never from the workers' logs):
- ``pg`` destination (rows and checkpoint in one transaction): every record exactly once;
- ``file`` destination (JSONL appended before each checkpoint): every record at least once, and a task's
  records written again number at most two pages per extra lease grant (the save window of one page, plus
  the page a fenced worker had in flight);
- no commit of a fenced epoch landed (``lease_grants``: no epoch committed after the next one was granted);
- the run completed, once, with every task complete and every lease finished.
"""

from __future__ import annotations

import contextlib
import os
import random
import selectors
import signal
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from fleet_support import FleetBed, expected_ids
from helpers import Child

PAGES, PAGE_SIZE = 5, 4


@dataclass
class ChaosStats:
    dest: str
    tasks: int = 0
    kills: int = 0  # SIGKILL
    stops: int = 0  # SIGSTOP ... SIGCONT
    terms: int = 0  # SIGTERM
    workers_started: int = 0
    grants: int = 0
    takeovers: int = 0
    records: int = 0
    lost: int = 0
    duplicates: int = 0  # in the file destination: the redo window at work
    duplicates_pg: int = 0  # in the transactional destination: must stay 0
    over_window: int = 0  # tasks whose duplicates exceed the window
    late_commits: int = 0
    seconds: float = 0.0
    completed: bool = False
    problems: list[str] = field(default_factory=list)

    def ok(self) -> bool:
        return self.completed and not self.problems and not (self.lost or self.over_window or self.late_commits)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Crew:
    """The worker processes, read together: each stdout line is a unit of progress to count chaos by."""

    def __init__(self, bed: FleetBed, dest: str, size: int) -> None:
        self.bed, self.dest, self.size = bed, dest, size
        self.sel = selectors.DefaultSelector()
        self.live: dict[int, Child] = {}
        self.stopped: set[int] = set()
        self.ready: set[int] = set()  # printed WORKER: its signal handlers are in place
        self.started = 0

    def spawn(self) -> None:
        child = self.bed.worker("--dest", self.dest, "--until-done", "--page-delay", "0.02", name="chaos",
                                 wait=False)
        self.live[child.proc.pid] = child
        assert child.proc.stdout is not None
        self.sel.register(child.proc.stdout, selectors.EVENT_READ, child)
        self.started += 1

    def fill(self) -> None:
        while len(self.live) < self.size:
            self.spawn()

    def reap(self) -> list[tuple[int, int]]:
        """Forget workers that exited; (pid, exit code) of each."""
        gone = []
        for pid, child in list(self.live.items()):
            code = child.proc.poll()
            if code is not None:
                assert child.proc.stdout is not None
                self.sel.unregister(child.proc.stdout)
                child.proc.stdout.close()
                del self.live[pid]
                self.stopped.discard(pid)
                gone.append((pid, code))
        return gone

    def lines(self, timeout: float) -> int:
        """Read whatever the workers printed within ``timeout``; how many lines."""
        count = 0
        for key, _ in self.sel.select(timeout):
            chunk = os.read(key.fileobj.fileno(), 65536)  # type: ignore[union-attr]
            count += chunk.count(b"\n")
            if b"WORKER" in chunk:
                self.ready.add(key.data.proc.pid)
        return count

    def signal(self, pid: int, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    def wake_all(self) -> None:
        for pid in list(self.stopped):
            self.signal(pid, signal.SIGCONT)
        self.stopped.clear()

    def end(self) -> None:
        self.wake_all()
        for pid in list(self.live):
            self.signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for child in list(self.live.values()):
            try:
                child.proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except Exception:
                child.proc.kill()
                child.proc.wait()
        self.reap()


def chaos(bed: FleetBed, *, dest: str, tasks: int, seed: str, seconds: float, workers: int = 4,
          every: tuple[int, int] = (1, 10)) -> ChaosStats:
    """One run of ``tasks`` tasks driven to completion through chaos (an act every ``every`` lines of the
    workers' output, at random); see the module docstring."""
    rng = random.Random(seed)
    stats = ChaosStats(dest=dest, tasks=tasks)
    started = time.monotonic()
    deadline = started + seconds
    run_id = bed.start(tasks)
    crew = Crew(bed, dest, workers)
    crew.fill()
    next_act = rng.randint(*every)
    stopped_at: dict[int, int] = {}
    seen = 0
    try:
        while time.monotonic() < deadline:
            got = crew.lines(timeout=1.0)
            seen += got
            for pid, code in crew.reap():
                if code not in (0, -signal.SIGKILL, 143):
                    stats.problems.append(f"worker {pid} exited {code}")
            if (got == 0 or seen % 25 < got) and bed.run_status(run_id)[0] != "running":
                break
            if got == 0 and crew.stopped:  # nothing moves: wake the paused ones
                crew.wake_all()
            for pid, at in list(stopped_at.items()):
                if seen >= at and pid in crew.stopped:
                    crew.signal(pid, signal.SIGCONT)
                    crew.stopped.discard(pid)
                    del stopped_at[pid]
            if seen >= next_act and crew.live:
                act(crew, rng, stats, stopped_at, seen)
                next_act = seen + rng.randint(*every)
            crew.fill()
    finally:
        crew.end()
    stats.workers_started = crew.started
    stats.seconds = round(time.monotonic() - started, 1)
    check(bed, run_id, stats)
    return stats


def act(crew: Crew, rng: random.Random, stats: ChaosStats, stopped_at: dict[int, int], seen: int) -> None:
    running = [pid for pid in crew.live if pid not in crew.stopped]
    if not running:
        return
    pid = rng.choice(running)
    roll = rng.random()
    if roll < 0.6:
        crew.signal(pid, signal.SIGKILL)
        stats.kills += 1
    elif roll < 0.8 and len(crew.stopped) < 2:
        crew.signal(pid, signal.SIGSTOP)  # long enough, counted in progress of the others, to be taken over
        crew.stopped.add(pid)
        stopped_at[pid] = seen + rng.randint(20, 80)
        stats.stops += 1
    elif pid in crew.ready:  # SIGTERM while Python starts kills by the signal: a worker's own promise begins later
        crew.signal(pid, signal.SIGTERM)
        stats.terms += 1


def check(bed: FleetBed, run_id: str, stats: ChaosStats) -> None:
    status, error = bed.run_status(run_id)
    stats.completed = status == "completed"
    if not stats.completed:
        stats.problems.append(f"run {run_id} is {status} ({error})")
    ended = bed.sql("SELECT count(*) FROM {s}.runs WHERE run_id = %s AND ended_at IS NOT NULL", run_id)[0][0]
    if ended != 1:
        stats.problems.append("the run has no single ending")
    open_leases = bed.sql("SELECT count(*) FROM {s}.leases WHERE run_id = %s AND state <> 'finished'", run_id)
    if open_leases[0][0]:
        stats.problems.append(f"{open_leases[0][0]} lease(s) not finished")
    unfinished = bed.sql("SELECT count(*) FROM {s}.tasks WHERE run_id = %s AND status <> 'complete'", run_id)
    if unfinished[0][0]:
        stats.problems.append(f"{unfinished[0][0]} task(s) not complete")
    grants = dict(bed.sql("SELECT task, max(epoch) FROM {s}.lease_grants WHERE run_id = %s GROUP BY task", run_id))
    stats.grants = sum(int(v) for v in grants.values())
    stats.takeovers = int(bed.sql("SELECT coalesce(sum(takeovers), 0) FROM {s}.leases WHERE run_id = %s",
                                  run_id)[0][0])
    stats.late_commits = len(bed.late_commits(run_id))
    want = expected_ids(stats.tasks, PAGES, PAGE_SIZE)
    for dest in ("pg", "file"):
        if stats.dest not in (dest, "both"):
            continue
        found = bed.pg_ids() if dest == "pg" else bed.file_ids()
        stats.records += sum(found.values())
        stats.lost += len(want - set(found))
        extra: Counter[str] = Counter()
        for record_id, count in found.items():
            if count > 1:
                extra[record_id.rsplit("-", 2)[0]] += count - 1
        if dest == "pg":
            stats.duplicates_pg = sum(extra.values())
            stats.over_window += len(extra)  # exactly once: any duplicate is over the window
        else:
            stats.duplicates = sum(extra.values())
            stats.over_window += sum(
                1 for task, n in extra.items() if n > 2 * PAGE_SIZE * max(int(grants.get(task, 1)) - 1, 0))

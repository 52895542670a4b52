"""The crash-loop harness: run a real job, SIGKILL it at random moments and at chosen points, restart it
with ``--resume`` until it completes, and check the outcome against the source.

Checks per completed job ("cycle"): no item lost; every item re-processed lies inside the redo window (one
page = ``--commit-items`` records per kill, see docs/ARCHITECTURE.md); with the destination bound to the
checkpoint's transaction (PostgreSQL, ``Run.bind``) zero duplicates; the store opens and
``python -m syncpoint --store URL runs list --json`` works; the job's last run is ``completed``.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import selectors
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from helpers import PG_URL, drop_pg_schema, with_query
from helpers import store_url as embedded_store_url

ROOT = Path(__file__).resolve().parents[2]
HOOKED_JOB = ROOT / "tests" / "jobs" / "hooked_job.py"
PG_DEST_JOB = ROOT / "tests" / "jobs" / "pg_dest_job.py"
POINTS = {
    "sqlite": ["before_apply", "in_commit"],
    "json": ["before_apply", "in_commit", "mid_execute", "compact_seg", "compact_sweep"],
    "postgres": ["before_apply", "in_commit"],
}
MODES = ["page", "items", "watermark"]
CONCURRENT_MODES = ["map-items", "map-slices"]  # run.map with 8 workers, out-of-order completion
CONCURRENCY = 8
JSON_JOURNAL_LIMIT = "25"  # compaction every few commits in the small jobs of the loop


def pg_exec(query: str, *args: object, fetch: bool = False) -> list[tuple[object, ...]]:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        cur = conn.execute(query.encode(), args or None)  # type: ignore[call-overload]
        return cur.fetchall() if fetch else []


def new_pg_schema() -> str:
    """A fresh schema with the destination table of ``pg_dest_job``; the caller drops it."""
    name = f"sp_test_{uuid.uuid4().hex}"
    pg_exec(f'CREATE SCHEMA "{name}"')
    pg_exec(f'CREATE TABLE "{name}".dest (job text NOT NULL, id text NOT NULL)')
    return name


def store_url(backend: str, workdir: Path, schema: str | None = None) -> str:
    if backend != "postgres":
        return embedded_store_url(backend, workdir)
    assert schema is not None
    return with_query(PG_URL, schema=schema, retry="5")


def source_ids(total: int) -> list[str]:
    from jobs.counting_job import source

    return [r[0] for r in source(total, 7)]


@dataclass
class Stats:
    backend: str
    kills: int = 0
    kills_random_time: int = 0
    kills_by_point: Counter[str] = field(default_factory=Counter)
    attempts: int = 0
    cycles: int = 0
    items_expected: int = 0
    items_lost: int = 0
    duplicates: int = 0
    duplicates_bound: int = 0  # duplicates where the checkpoint commits in the destination's transaction
    redo_over_window: int = 0
    max_redo_per_kill: int = 0
    states_corrupt: int = 0
    cli_checks: int = 0
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def ok(self) -> bool:
        return not (self.items_lost or self.duplicates_bound or self.redo_over_window or self.states_corrupt
                    or self.failures)

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["kills_by_point"] = dict(self.kills_by_point)
        data["failures"] = self.failures[:20]
        return data

    def merge(self, other: Stats) -> None:
        for name in ("kills", "kills_random_time", "attempts", "cycles", "items_expected", "items_lost",
                     "duplicates", "duplicates_bound", "redo_over_window", "states_corrupt", "cli_checks"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.kills_by_point.update(other.kills_by_point)
        self.max_redo_per_kill = max(self.max_redo_per_kill, other.max_redo_per_kill)
        self.failures.extend(other.failures)


def _wait_line(proc: subprocess.Popen[bytes], buf: list[bytes], prefix: bytes, timeout: float) -> bool:
    """Read stdout until a line starting with ``prefix``; False at end of output. Bounded by ``timeout``."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    sel = selectors.DefaultSelector()
    sel.register(fd, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    try:
        while True:
            while b"\n" in buf[0]:
                line, _, buf[0] = buf[0].partition(b"\n")
                if line.startswith(prefix):
                    return True
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {prefix!r} line within {timeout}s")
            if sel.select(left):
                chunk = os.read(fd, 65536)
                if not chunk:
                    return False
                buf[0] += chunk
    finally:
        sel.close()


class Cycle:
    """One job driven to completion through kills. ``bound`` = the PostgreSQL destination job."""

    def __init__(self, backend: str, url: str, workdir: Path, job: str, mode: str, rng: random.Random,
                 stats: Stats, *, total: int = 120, page_size: int = 10, bound: bool = False,
                 schema: str | None = None, max_kills: int = 10_000) -> None:
        self.backend, self.url, self.workdir, self.job, self.mode = backend, url, workdir, job, mode
        self.rng, self.stats, self.total, self.page_size = rng, stats, total, page_size
        self.bound, self.schema, self.max_kills = bound, schema, max_kills
        self.dest = workdir / f"{job}.dest"
        self.saw_done = False
        # The redo window under concurrency (docs/ARCHITECTURE.md §2): one save window plus up to three times
        # the workers — the commit being written when the kill came (the window plus what was recorded before
        # it started), what was recorded while it was written (each worker records at most one more item
        # before it waits for that commit), and the work in flight.
        if mode == "map-items":
            self.window = page_size + 3 * CONCURRENCY
        elif mode == "map-slices":
            self.window = page_size * (1 + 3 * CONCURRENCY)
        else:
            self.window = page_size

    def command(self) -> list[str]:
        common = ["--mode", self.mode, "--total", str(self.total), "--page-size", str(self.page_size),
                  "--job", self.job, "--store", self.url, "--resume", "--no-progress"]
        if self.bound:
            return [sys.executable, str(PG_DEST_JOB), *common]
        extra = ["--concurrency", str(CONCURRENCY)] if self.mode in CONCURRENT_MODES else []
        return [sys.executable, str(HOOKED_JOB), *common, "--dest", str(self.dest),
                "--commit-items", str(self.page_size), *extra]

    def written(self) -> list[str]:
        if self.bound:
            rows = pg_exec(f'SELECT id FROM "{self.schema}".dest WHERE job = %s', self.job, fetch=True)
            return [str(r[0]) for r in rows]
        return self.dest.read_text().split() if self.dest.exists() else []

    def attempt(self) -> int:
        """One start of the job; returns its exit code (-9 when killed)."""
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        env.pop("SP_CRASH", None)
        if self.backend == "json":
            env["SP_JOURNAL_LIMIT"] = JSON_JOURNAL_LIMIT
        chosen = self.rng.random() < 0.5
        if chosen:
            point = self.rng.choice(POINTS[self.backend])
            env["SP_CRASH"] = f"{point}:{self.rng.randint(1, 6)}"
        proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env, cwd=self.workdir)
        buf = [b""]
        try:
            if not chosen and _wait_line(proc, buf, b"READY", 60):
                for _ in range(self.rng.randint(0, 5)):
                    if not _wait_line(proc, buf, b"PAGE", 60):
                        break
                if self.rng.random() < 0.5:  # a random instant, not only just after a page line
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(timeout=self.rng.uniform(0, 0.05))
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
            out, err = proc.communicate(timeout=120)
        except BaseException:
            proc.kill()
            proc.communicate()
            raise
        code = proc.returncode
        self.saw_done = b"DONE" in buf[0] + out
        if code == -signal.SIGKILL:
            self.stats.kills += 1
            if chosen:
                self.stats.kills_by_point[env["SP_CRASH"].split(":")[0]] += 1
            else:
                self.stats.kills_random_time += 1
        elif code != 0:
            text = err.decode(errors="replace").strip().splitlines()
            self.stats.failures.append(f"{self.backend}/{self.job}: exit {code}: {text[-1:] if text else ''}")
        return code

    def check_store_opens(self) -> bool:
        """Open the store in this process and read the job's runs; True if its latest run completed."""
        from syncpoint.stores import open_store

        try:
            store = open_store(self.url)
            try:
                runs = store.list_runs(self.job)
            finally:
                store.close()
        except Exception as exc:
            self.stats.states_corrupt += 1
            self.stats.failures.append(f"{self.backend}/{self.job}: store does not open after a kill: {exc}")
            return False
        return bool(runs) and runs[0].status.value == "completed"

    def run(self, deadline: float) -> bool:
        """Drive the job to completion (bounded by attempts and ``deadline``); True when it completed."""
        previous: list[str] = []
        for _ in range(400):
            if time.monotonic() > deadline:
                self.stats.failures.append(f"{self.backend}/{self.job}: deadline passed before completion")
                return False
            force_finish = self.stats.kills >= self.max_kills
            if force_finish:
                self.rng = random.Random(0)  # keep determinism; finish without killing below
            self.stats.attempts += 1
            code = self.attempt() if not force_finish else self._finish()
            now = self.written()
            before = set(previous)
            redo = sum(1 for item in now[len(previous):] if item in before)
            self.stats.max_redo_per_kill = max(self.stats.max_redo_per_kill, redo)
            if redo > self.window:
                self.stats.redo_over_window += 1
                self.stats.failures.append(f"{self.backend}/{self.job}: {redo} records redone after one kill")
            previous = now
            if code == 0:
                break
            if code != -signal.SIGKILL:
                return False
            # A kill after the body printed DONE may land after the final commit: the run is complete and
            # a --resume would (rightly) start a new run. Otherwise look at the store now and then (for
            # JSON this also rolls a pending intent forward, so mostly the job itself must do that).
            if (self.saw_done or self.rng.random() < 0.3) and self.check_store_opens():
                break
        else:
            self.stats.failures.append(f"{self.backend}/{self.job}: never completed")
            return False
        self.verify(previous)
        return True

    def _finish(self) -> int:
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        env.pop("SP_CRASH", None)
        proc = subprocess.run(self.command(), stdin=subprocess.DEVNULL, capture_output=True, env=env,
                              cwd=self.workdir, timeout=120)
        if proc.returncode != 0:
            self.stats.failures.append(f"{self.backend}/{self.job}: exit {proc.returncode} finishing: "
                                       f"{proc.stderr.decode(errors='replace')[-300:]}")
        return proc.returncode

    def verify(self, written: list[str]) -> None:
        expected = set(source_ids(self.total))
        self.stats.cycles += 1
        self.stats.items_expected += len(expected)
        self.stats.items_lost += len(expected - set(written))
        dups = len(written) - len(set(written))
        self.stats.duplicates += dups
        if self.bound:
            self.stats.duplicates_bound += dups
        proc = subprocess.run(
            [sys.executable, "-m", "syncpoint", "--store", self.url, "runs", "list", "--job", self.job, "--json"],
            capture_output=True, text=True, timeout=120, cwd=self.workdir, stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        )
        self.stats.cli_checks += 1
        try:
            runs = json.loads(proc.stdout)
            assert proc.returncode == 0 and "Traceback" not in proc.stderr
            assert runs and runs[0]["status"] == "completed", runs[:1]
        except (AssertionError, ValueError, KeyError, IndexError) as exc:
            self.stats.states_corrupt += 1
            self.stats.failures.append(f"{self.backend}/{self.job}: runs list: {proc.returncode} "
                                       f"{proc.stderr[-300:]} {exc}")


def campaign(backend: str, workdir: Path, kills: int, *, seed: str, seconds: float,
             modes: list[str] | None = None) -> Stats:
    """Cycles of small jobs on one backend until ``kills`` SIGKILLs were delivered (or time is up).
    ``modes``: the counting job's modes to draw from (default: the sequential ones, half of the PostgreSQL
    cycles bound to the destination's transaction)."""
    stats = Stats(backend)
    rng = random.Random(seed)
    started = time.monotonic()
    deadline = started + seconds
    workdir.mkdir(parents=True, exist_ok=True)
    schema = new_pg_schema() if backend == "postgres" else None
    try:
        url = store_url(backend, workdir, schema)
        n = 0
        while stats.kills < kills and time.monotonic() < deadline and n < 10_000:
            bound = modes is None and backend == "postgres" and n % 2 == 1
            mode = rng.choice(["page", "items"] if bound else (modes or MODES))
            cycle = Cycle(backend, url, workdir, f"c{n}", mode, rng, stats, bound=bound, schema=schema,
                          max_kills=kills)
            cycle.run(deadline + 120)
            n += 1
    finally:
        if schema is not None:
            drop_pg_schema(schema)
    stats.seconds = round(time.monotonic() - started, 1)
    return stats


def table(all_stats: list[Stats]) -> str:
    head = ("backend", "kills", "random", "points", "cycles", "items", "lost", "dups", "dups(bound)",
            "max redo", "corrupt", "seconds")
    rows = [head]
    for s in all_stats:
        rows.append((s.backend, s.kills, s.kills_random_time, sum(s.kills_by_point.values()), s.cycles,
                     s.items_expected, s.items_lost, s.duplicates, s.duplicates_bound, s.max_redo_per_kill,
                     s.states_corrupt, s.seconds))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(str(v).rjust(w) for v, w in zip(r, widths, strict=True)) for r in rows)

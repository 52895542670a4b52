"""Driving ``tests/jobs/fleet_job.py``: a fresh schema, the fan-out, worker processes, and what the store and
the destinations say afterwards."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from helpers import PG_URL, ROOT, Child, drop_fleet_schema, late_commits, run_job, with_query
from psycopg import sql

FLEET_JOB = str(ROOT / "tests" / "jobs" / "fleet_job.py")


@dataclass
class FleetBed:
    """One schema (store, destination table) and one output directory for a distributed job."""

    schema: str
    out: Path
    logs: Path
    job: str = "fleet"
    stall: float = 1.0

    @property
    def url(self) -> str:
        return with_query(PG_URL, schema=self.schema, retry="5")

    def common(self) -> list[str]:
        return [FLEET_JOB, "--store", self.url, "--job", self.job, "--stall", str(self.stall)]

    def start(self, tasks: int, *extra: str) -> str:
        code, out, err = run_job([*self.common(), "start", "--tasks", str(tasks), *extra])
        assert code == 0, err
        return out.split("RUN ", 1)[1].split()[0]

    def worker(self, *extra: str, name: str = "w", wait: bool = True) -> Child:
        """A worker process; with ``wait``, once it has started (printed WORKER)."""
        log = self.logs / f"{name}-{uuid.uuid4().hex[:6]}.log"
        child = Child([*self.common(), "work", "--out", str(self.out), *extra], stdin=False, stderr=log)
        if wait:
            child.expect("WORKER")
        return child

    def sql(self, text: str, *args: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            return conn.execute(sql.SQL(text).format(s=sql.Identifier(self.schema)), args).fetchall()

    def run_status(self, run_id: str) -> tuple[str, str | None]:
        rows = self.sql("SELECT status, error FROM {s}.runs WHERE run_id = %s", run_id)
        return rows[0][0], rows[0][1]

    def leases(self, run_id: str) -> dict[str, tuple[str, int]]:
        rows = self.sql("SELECT task, state, epoch FROM {s}.leases WHERE run_id = %s", run_id)
        return {task: (state, int(epoch)) for task, state, epoch in rows}

    def late_commits(self, run_id: str) -> list[tuple[str, int]]:
        return late_commits(self.schema, run_id)

    def file_ids(self) -> Counter[str]:
        found: Counter[str] = Counter()
        for path in self.out.glob("*.jsonl"):
            for line in path.read_text().splitlines():
                if line.strip():
                    found[json.loads(line)["id"]] += 1
        return found

    def pg_ids(self) -> Counter[str]:
        return Counter(r[0] for r in self.sql("SELECT id FROM {s}.fleet_dest WHERE job = %s", self.job))

    def drop(self) -> None:
        drop_fleet_schema(self.schema, self.job)


def expected_ids(tasks: int, pages: int = 5, page_size: int = 4) -> set[str]:
    return {f"t{n:04d}-{p}-{i}" for n in range(tasks) for p in range(pages) for i in range(page_size)}


def new_bed(tmp_path: Path, *, stall: float = 1.0) -> FleetBed:
    tag = uuid.uuid4().hex[:12]
    bed = FleetBed(f"sp_fleet_{tag}", tmp_path / "out", tmp_path / "logs", job=f"fleet-{tag}", stall=stall)
    bed.out.mkdir(parents=True)
    bed.logs.mkdir(parents=True)
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(bed.schema)))
        conn.execute(sql.SQL("CREATE TABLE {}.fleet_dest (job text NOT NULL, id text NOT NULL, epoch bigint)")
                     .format(sql.Identifier(bed.schema)))
    return bed

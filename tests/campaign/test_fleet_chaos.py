"""Chaos for many workers on one run (issue 14): ``kill -9``, SIGSTOP/SIGCONT and SIGTERM of random workers
until the run completes; exactly once in the transactional destination, nothing lost and redo within the window
in the file destination, no fenced commit landed, one ending. Short in ``make test``; >= 500 kills in the soak."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from fleet_chaos import ChaosStats, chaos
from fleet_support import new_bed
from helpers import require_pg

pytestmark = pytest.mark.postgres

SOAK_KILLS = int(os.environ.get("SYNCPOINT_SOAK_FLEET_KILLS", "500"))
REPORT = Path(os.environ.get("SYNCPOINT_SOAK_REPORT", "soak-report.json"))


def one(tmp_path: Path, dest: str, tasks: int, seed: str, seconds: float, every: tuple[int, int]) -> ChaosStats:
    bed = new_bed(tmp_path / f"{dest}-{seed}", stall=1.0)
    try:
        stats = chaos(bed, dest=dest, tasks=tasks, seed=seed, seconds=seconds, every=every)
    finally:
        bed.drop()
    print(f"\nchaos {dest}: {json.dumps(stats.to_json())}")
    return stats


@pytest.mark.timeout(8 * 60)
def test_fleet_chaos(tmp_path: Path) -> None:
    """One run whose workers write every page to both destinations: exactly once in the table, at least once
    within the window in the files."""
    require_pg()
    stats = one(tmp_path, "both", 200, f"short-{os.getpid()}", seconds=240, every=(3, 15))
    assert stats.ok(), stats.to_json()
    assert stats.duplicates_pg == 0 and stats.lost == 0
    assert stats.kills >= 10 and stats.stops >= 1 and stats.terms >= 1, stats.to_json()
    assert stats.takeovers >= 1, stats.to_json()  # a worker presumed dead was fenced at least once


@pytest.mark.soak
@pytest.mark.timeout(60 * 60)
def test_soak_fleet_chaos(tmp_path: Path) -> None:
    """Runs of 200 tasks, alternating destinations, until >= SOAK_KILLS workers got kill -9."""
    require_pg()
    runs: list[ChaosStats] = []
    n = 0
    while sum(s.kills for s in runs) < SOAK_KILLS and n < 200:
        runs.append(one(tmp_path, "both", 200, f"soak-{n}-{os.getpid()}", seconds=600, every=(1, 10)))
        n += 1
    totals = {key: sum(getattr(s, key) for s in runs) for key in
              ("kills", "stops", "terms", "workers_started", "grants", "takeovers", "records", "lost",
               "duplicates", "duplicates_pg", "over_window", "late_commits")}
    report = {"kind": "fleet-chaos", "runs": len(runs), "totals": totals,
              "seconds": round(sum(s.seconds for s in runs), 1), "per_run": [s.to_json() for s in runs]}
    REPORT.with_suffix(".fleet.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    print("\nfleet chaos soak:", json.dumps(totals))
    assert all(s.ok() for s in runs), [s.to_json() for s in runs if not s.ok()]
    assert totals["kills"] >= SOAK_KILLS

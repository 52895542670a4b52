"""SQLite store benchmarks; every figure is a ratio against a baseline measured in the same run.

    ratio sqlite_ledger_vs_raw_executemany   throughput of marking items through the public API over a raw
                                             sqlite3 executemany of the same IDs into an equivalent table,
                                             same commit cadence (SavePolicy().every_items,
                                             10,000 rows), same pragmas                          target >= 0.6
    ratio speedup_vs_json_rewrite_100k       the naive approach of the original tools (every processed ID in
                                             one JSON file, rewritten atomically every 25 items) over ours
                                                                                                target >= 100
    ratio resume_vs_write_1m                 open (resume) a run whose ledger holds the IDs + answer a first
                                             membership query, over the time it took to write them
                                                                                                target <= 0.05
Run: ``python benchmarks/bench_sqlite.py [--items N]`` (default 1,000,000). IDs are random (uuid4 hex).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import syncpoint
from syncpoint.stores.sqlite import CACHE_KIB, WAL_AUTOCHECKPOINT_PAGES

COMMIT_EVERY = syncpoint.SavePolicy().every_items  # the same cadence as ours


def random_ids(n: int, seed: int = 7) -> list[str]:
    import random

    rng = random.Random(seed)
    return [uuid.UUID(int=rng.getrandbits(128), version=4).hex for _ in range(n)]


def ours(directory: Path, ids: list[str], *, job: str = "bench") -> tuple[float, str]:
    """Mark every ID processed through the public API; returns (seconds, run_id).

    The item budget equals the item count, so the final safe point ends the run as partial and it stays
    resumable for the resume measurement.
    """
    j = syncpoint.Job(job, store=f"sqlite:{directory / 'cp.db'}")
    start = time.perf_counter()
    with j.run(max_items=len(ids)) as run:
        task = run.task("items")
        for item in ids:
            task.item_done(item)
        run.checkpoint()
    elapsed = time.perf_counter() - start
    assert run.exit_code == syncpoint.ExitCode.PARTIAL, run.exit_code
    j.close()
    return elapsed, run.run_id


def raw_connection(directory: Path) -> sqlite3.Connection:
    """A table equivalent to the store's ledger, with the pragmas the store uses."""
    conn = sqlite3.connect(directory / "raw.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
    conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")
    conn.execute(
        "CREATE TABLE ledger (task_id INTEGER NOT NULL, kind INTEGER NOT NULL, item_id TEXT NOT NULL, "
        "outcome INTEGER NOT NULL, error TEXT, PRIMARY KEY (task_id, kind, item_id)) WITHOUT ROWID"
    )
    return conn


def raw_executemany(conn: sqlite3.Connection, ids: list[str]) -> float:
    start = time.perf_counter()
    for i in range(0, len(ids), COMMIT_EVERY):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT OR REPLACE INTO ledger VALUES (1, 0, ?, 0, NULL)",
                         [(x,) for x in ids[i:i + COMMIT_EVERY]])
        conn.execute("COMMIT")
    return time.perf_counter() - start


def ledger_vs_raw(directory: Path, ids: list[str], slices: int = 10) -> tuple[float, float, str]:
    """(ours, raw) seconds for all of ``ids``, and our run's ID.

    Interleaved slice by slice (a tenth of the IDs raw, the same tenth through one open run, and so on)
    so that drift in the machine's load hits both alike; both tables grow the same way.
    """
    conn = raw_connection(directory)
    j = syncpoint.Job("bench", store=f"sqlite:{directory / 'cp.db'}")
    ours_t = raw_t = 0.0
    with j.run(max_items=len(ids)) as run:
        task = run.task("items")
        step = -(-len(ids) // slices)
        for first in range(0, len(ids), step):
            part = ids[first:first + step]
            raw_t += raw_executemany(conn, part)
            start = time.perf_counter()
            for item in part:
                task.item_done(item)
            run.commit()
            ours_t += time.perf_counter() - start
        run.checkpoint()  # the budget is reached: the run ends partial, resumable for the probe
    assert run.exit_code == syncpoint.ExitCode.PARTIAL, run.exit_code
    conn.close()
    j.close()
    return ours_t, raw_t, run.run_id


def naive_json_rewrite(directory: Path, ids: list[str], *, every: int = 25, sample: int | None = None) -> float:
    """The original tools' way: all processed IDs in one JSON file, atomically rewritten every 25 items.

    With ``sample``, only that many rewrites, spread evenly over the run, are timed and the total is
    integrated from them (the full 1M run would take the better part of an hour).
    """
    path = directory / "processed.json"
    rewrites = list(range(every, len(ids) + 1, every))
    timed = rewrites if sample is None or sample >= len(rewrites) else rewrites[:: max(1, len(rewrites) // sample)]
    total = 0.0
    for end in timed:
        start = time.perf_counter()
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump({"processed_ids": ids[:end], "updated_at": time.time()}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        total += time.perf_counter() - start
    return total * len(rewrites) / len(timed)


RESUME_PROBE = r"""
import sys, time
import syncpoint
start = time.perf_counter()
job = syncpoint.Job("bench", store=sys.argv[1])
with job.run(resume=True, max_items=1) as run:
    task = run.task("items")
    hit = task.is_item_done(sys.argv[2])
    elapsed = time.perf_counter() - start
    assert hit
    run.checkpoint()
# VmHWM, the peak RSS of this process image: ru_maxrss would also count the parent's RSS inherited at fork
peak_kib = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(elapsed, peak_kib)
"""


def resume_probe(directory: Path, probe_id: str) -> tuple[float, int]:
    out = subprocess.run([sys.executable, "-c", RESUME_PROBE, f"sqlite:{directory / 'cp.db'}", probe_id],
                         capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), int(out[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=1_000_000)
    args = parser.parse_args()
    n = args.items
    ids = random_ids(n)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        ours_t, raw, _ = ledger_vs_raw(base, ids)
        print(f"sqlite ledger, {n:,} random IDs: ours {ours_t:.2f} s ({n / ours_t:,.0f}/s), "
              f"raw executemany {raw:.2f} s ({n / raw:,.0f}/s)")
        print(f"ratio sqlite_ledger_vs_raw_executemany = {raw / ours_t:.2f}")

        resume_t, rss_big = resume_probe(base, ids[n // 2])
        small = base / "small"
        small.mkdir()
        ours(small, ids[:10_000])
        _, rss_small = resume_probe(small, ids[5000])
        print(f"resume of a {n:,}-ID ledger + first lookup: {resume_t * 1000:.1f} ms; "
              f"peak RSS {rss_big / 1024:.1f} MiB (vs {rss_small / 1024:.1f} MiB for a 10,000-ID ledger)")
        print(f"ratio resume_vs_write_1m = {resume_t / ours_t:.4f}")

    print("per-item cost (µs/item): items      ours   naive-json-rewrite")
    costs = {}
    for size in (10_000, 100_000, 1_000_000):
        if size > n:
            break
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            t_ours, _ = ours(d, ids[:size])
            t_naive = naive_json_rewrite(d, ids[:size], sample=None if size <= 100_000 else 200)
        costs[size] = (t_ours, t_naive)
        note = " (estimated from 200 timed rewrites)" if size > 100_000 else ""
        print(f"                          {size:>9,}  {t_ours / size * 1e6:7.2f}  {t_naive / size * 1e6:12.2f}{note}")
    if 100_000 in costs:
        t_ours, t_naive = costs[100_000]
        print(f"ratio speedup_vs_json_rewrite_100k = {t_naive / t_ours:.1f}")


if __name__ == "__main__":
    main()

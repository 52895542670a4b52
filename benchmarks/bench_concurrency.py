"""Concurrency benchmarks; every figure is a ratio against a baseline measured in the same run.

    ratio concurrent16_vs_sequential_io   items/s through ``run.map`` with 16 workers over a sequential loop,
                                          both fetching each item from a local HTTP server that answers after
                                          50 ms and checkpointing every item on the SQLite store (target >= 13;
                                          the ideal is 16)
    ratio threads8_item_done_vs_1         ``task.item_done`` throughput with 8 threads over 1 thread, the same
                                          1,000,000 random IDs in all (target >= 0.5: the commit lock and the
                                          GIL must not collapse it)

Run: ``python benchmarks/bench_concurrency.py`` (``make bench`` runs it).
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from slow_server import DELAY, slow_server

import syncpoint

IO_ITEMS = int(os.environ.get("BENCH_IO_ITEMS", "320"))
THREAD_ITEMS = int(os.environ.get("BENCH_THREAD_ITEMS", "1000000"))


def per_item_policy() -> syncpoint.SavePolicy:
    return syncpoint.SavePolicy(every_items=1, every_pages=1, every_seconds=3600)


def sequential(url: str, base: str, ids: list[str]) -> float:
    job = syncpoint.Job("seq", store=url, save_policy=per_item_policy())
    with httpx.Client(base_url=base) as client, job.run() as run:
        task = run.task("items")
        started = time.perf_counter()
        for item in task.iterate(ids):
            client.get(f"/items/{item}").raise_for_status()
            task.item_done(item)
        elapsed = time.perf_counter() - started
    assert run.exit_code == 0
    return elapsed


def concurrent(url: str, base: str, ids: list[str], workers: int) -> float:
    job = syncpoint.Job("conc", store=url, save_policy=per_item_policy())
    limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
    with httpx.Client(base_url=base, limits=limits) as client, job.run() as run:
        task = run.task("items")

        def fetch(item: str) -> None:
            client.get(f"/items/{item}").raise_for_status()

        started = time.perf_counter()
        summary = run.map(fetch, task.pending(ids), concurrency=workers)
        elapsed = time.perf_counter() - started
    assert run.exit_code == 0 and summary.done == len(ids), summary
    return elapsed


def threads_item_done(url: str, ids: list[str], threads: int) -> float:
    job = syncpoint.Job(f"t{threads}", store=url)
    with job.run() as run:
        task = run.task("items")
        parts = [ids[i::threads] for i in range(threads)]

        def work(part: list[str]) -> None:
            for item in part:
                task.item_done(item)

        workers = [threading.Thread(target=work, args=(p,)) for p in parts]
        started = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        run.commit()
        elapsed = time.perf_counter() - started
    assert run.exit_code == 0
    return elapsed


def main() -> None:
    with slow_server() as base, tempfile.TemporaryDirectory() as tmp:
        ids = [f"item-{n}" for n in range(IO_ITEMS)]
        seq = sequential(f"sqlite:{Path(tmp) / 'seq.db'}", base, ids)
        conc = concurrent(f"sqlite:{Path(tmp) / 'conc.db'}", base, ids, 16)
        print(f"io-bound, {IO_ITEMS} items answered after {DELAY * 1000:.0f} ms, a commit per item: "
              f"sequential {IO_ITEMS / seq:,.1f}/s, run.map x16 {IO_ITEMS / conc:,.1f}/s")
        print(f"ratio concurrent16_vs_sequential_io = {seq / conc:.2f}")
    rng = random.Random(7)
    ids = [f"{rng.getrandbits(64):016x}" for _ in range(THREAD_ITEMS)]
    with tempfile.TemporaryDirectory() as tmp:
        one = threads_item_done(f"sqlite:{Path(tmp) / 'one.db'}", ids, 1)
        eight = threads_item_done(f"sqlite:{Path(tmp) / 'eight.db'}", ids, 8)
    print(f"item_done, {THREAD_ITEMS:,} random IDs: 1 thread {THREAD_ITEMS / one:,.0f}/s, "
          f"8 threads {THREAD_ITEMS / eight:,.0f}/s")
    print(f"ratio threads8_item_done_vs_1 = {one / eight:.2f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()

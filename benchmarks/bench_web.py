"""Dashboard benchmarks: what watching a job costs the job, and how fast the jobs page answers.

    ratio job_throughput_with_dashboard_vs_without   a 1,000,000-item SQLite job's throughput while a client
                                                     polls its run page and /metrics every 200 ms through
                                                     ``syncpoint serve`` (another process), over the same
                                                     job with nobody watching               target >= 0.9
    jobs page median latency                         GET / with 1,000 jobs and 100,000 runs in a SQLite
                                                     store, median of 20 requests            target < 100 ms

Run: ``python benchmarks/bench_web.py [--items N] [--jobs J --runs R]``. The job runs in this process; the
server and the polling client are subprocesses, so they compete with it for CPU like a real dashboard
would. Rounds alternate (without, with, without, with) and each side keeps its best, so a slow moment of a
shared machine does not decide the ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import httpx

import syncpoint
from syncpoint.model import RunRecord, RunStatus, TaskRecord, TaskStatus, utcnow
from syncpoint.stores.base import ChangeSet
from syncpoint.stores.sqlite import SQLiteStore

ROOT = Path(__file__).resolve().parent.parent
POLLER = """
import http.client, json, os, sys, time
from urllib.parse import urlsplit
base, period, stop_file = urlsplit(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
conn = http.client.HTTPConnection(base.hostname, base.port, timeout=10)

def get(path):
    conn.request("GET", path)
    response = conn.getresponse()
    body = response.read()
    assert response.status == 200, (path, response.status)
    return body

n = 0
run_id = None
cpu = time.process_time()
while not os.path.exists(stop_file):
    start = time.monotonic()
    if run_id is None:  # find the live run once, as a person following it from the jobs page would
        live = [j for j in json.loads(get("/api/jobs"))["jobs"] if j["live"]]
        run_id = live[0]["live"]["run_id"] if live else None
    if run_id is not None:
        get("/runs/" + run_id)
        get("/metrics")
        n += 1
    time.sleep(max(0.0, period - (time.monotonic() - start)))
print(n, time.process_time() - cpu)
"""


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def env() -> dict[str, str]:
    found = dict(os.environ)
    found["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), found.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    found.pop("SYNCPOINT_WEB_TOKEN", None)
    return found


def start_server(store: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "syncpoint", "--store", store, "serve", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env())
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("dashboard: "):
        proc.kill()
        raise SystemExit(f"syncpoint serve did not start: {line!r}")
    return proc, line.split()[1].rstrip("/")


def job_seconds(store: str, items: int, job: str) -> float:
    """One run of ``items`` new IDs through the public API (default save policy), timed."""
    j = syncpoint.Job(job, {"items": items}, store=store)
    start = time.perf_counter()
    with j.run(new_run=True) as run, run.task("items") as task:
        for i in range(items):
            task.item_done(f"{i:09d}")
    elapsed = time.perf_counter() - start
    j.close()
    return elapsed


def watched_ratio(items: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = f"sqlite:{Path(tmp) / 'cp.db'}"
        job_seconds(store, 1000, "warmup")  # the store exists before the server opens it
        server, url = start_server(store)
        try:
            alone: list[float] = []
            watched: list[float] = []
            polls = 0
            server_cpu = client_cpu = 0.0
            for r in range(rounds):
                alone.append(job_seconds(store, items, f"alone{r}"))
                stop = Path(tmp) / f"stop{r}"
                poller = subprocess.Popen([sys.executable, "-c", POLLER, url, "0.2", str(stop)],
                                          stdout=subprocess.PIPE, text=True, env=env())
                before = cpu_seconds(server.pid)
                try:
                    watched.append(job_seconds(store, items, f"watched{r}"))
                finally:
                    stop.touch()
                    out, _ = poller.communicate(timeout=60)
                server_cpu += cpu_seconds(server.pid) - before
                count, used = [*out.split(), "0", "0"][:2]
                polls += int(count)
                client_cpu += float(used)
        finally:
            server.terminate()
            server.wait(timeout=30)
    best_alone, best_watched = min(alone), min(watched)
    print(f"{items:,}-item SQLite job: alone {best_alone:.2f} s ({items / best_alone:,.0f}/s), "
          f"watched {best_watched:.2f} s ({items / best_watched:,.0f}/s); "
          f"{polls} polls of the run page + /metrics (best of {rounds} each); per poll the server used "
          f"{server_cpu / max(polls, 1) * 1000:.1f} ms CPU and the client {client_cpu / max(polls, 1) * 1000:.1f} ms; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    if polls == 0:
        raise SystemExit("the client never saw the live run: the measurement is void")
    print(f"ratio job_throughput_with_dashboard_vs_without = {best_alone / best_watched:.2f}")


def populate(path: Path, jobs: int, runs: int) -> None:
    """``runs`` finished runs spread over ``jobs`` jobs, with one task each, written in large change sets."""
    store = SQLiteStore(path)
    base = utcnow() - timedelta(days=365)
    per_job = runs // jobs
    statuses = [RunStatus.COMPLETED, RunStatus.COMPLETED, RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.PARTIAL]
    changes = ChangeSet()
    for j in range(jobs):
        for r in range(per_job):
            started = base + timedelta(hours=r, minutes=j % 60)
            ended = started + timedelta(seconds=60 + (j * 7 + r * 13) % 600)
            run_id = f"{started:%Y%m%d-%H%M%S}-{j:03x}{r:03x}"
            changes.runs.append(RunRecord(
                run_id=run_id, job=f"job-{j:04d}", status=statuses[(j + r) % len(statuses)],
                config={"source": f"https://example.org/{j}", "page_size": 100}, config_digest="d",
                started_at=started, updated_at=ended, ended_at=ended, exit_code=0,
            ))
            changes.tasks.append(TaskRecord(run_id, "items", 0, TaskStatus.COMPLETED, ok=1000, total=1000))
            if len(changes.runs) >= 5000:
                store.apply(changes)
                changes = ChangeSet()
    store.apply(changes)
    store.close()


def jobs_page(jobs: int, runs: int, requests: int = 20) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cp.db"
        start = time.perf_counter()
        populate(path, jobs, runs)
        print(f"populated {jobs:,} jobs and {runs:,} runs in {time.perf_counter() - start:.1f} s")
        server, url = start_server(f"sqlite:{path}")
        try:
            with httpx.Client(base_url=url, trust_env=False, timeout=60) as client:
                first = client.get("/")
                first.raise_for_status()
                assert first.text.count("<tr data-job=") == min(jobs, 100), "the page does not list a page of jobs"
                assert f"of {jobs:,}" in first.text, "the page does not count every job"
                times = []
                for _ in range(requests):
                    t0 = time.perf_counter()
                    client.get("/").raise_for_status()
                    times.append(time.perf_counter() - t0)
                api = []
                for _ in range(5):
                    t0 = time.perf_counter()
                    client.get("/api/jobs").raise_for_status()
                    api.append(time.perf_counter() - t0)
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"jobs page ({len(first.content) / 1024:,.0f} KiB) with {jobs:,} jobs and {runs:,} runs: "
          f"median {statistics.median(times) * 1000:.1f} ms of {requests} requests "
          f"(min {min(times) * 1000:.1f}, max {max(times) * 1000:.1f}); /api/jobs median "
          f"{statistics.median(api) * 1000:.1f} ms; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"jobs page median latency = {statistics.median(times) * 1000:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=100_000)
    args = parser.parse_args()
    watched_ratio(args.items, args.rounds)
    jobs_page(args.jobs, args.runs)


if __name__ == "__main__":
    main()

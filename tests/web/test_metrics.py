"""``/metrics`` parsed with prometheus-client's own parser, during and after a real run; ``--metrics-port``."""

from __future__ import annotations

import itertools
import socket
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from web_support import Server, Servers, run_job, start_job

COUNTERS = ("syncpoint_items_done_total", "syncpoint_records_done_total", "syncpoint_items_failed_total")


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(url, trust_env=False, timeout=10).text
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(metrics: dict, name: str, **labels: str) -> float:
    return metrics[(name, tuple(sorted(labels.items())))]


def test_counters_only_increase_while_a_job_runs(servers: Servers, tmp_path: Path) -> None:
    store = f"sqlite:{tmp_path / 'cp' / 'syncpoint.db'}"
    items = 400  # 12 s: long enough that the server, started after READY, scrapes the run while it goes
    job = start_job(store, "--items", str(items), "--delay", "0.03", "--fail-every", "7")
    job.expect("READY")
    server: Server = servers.start(store)
    scrapes = []
    deadline = time.monotonic() + 60
    while job.proc.poll() is None and time.monotonic() < deadline:
        scrapes.append(scrape(server.url + "/metrics"))
    code, err = job.finish()
    assert code == 1, err  # retryable item failures fail the run (issue 11.1)
    for _ in range(100):  # /metrics is computed at most once a second: the next computation shows the end
        scrapes.append(scrape(server.url + "/metrics"))
        if value(scrapes[-1], "syncpoint_run_running", job="dash") == 0:
            break
        time.sleep(0.1)
    assert len(scrapes) >= 3
    for before, after in itertools.pairwise(scrapes):
        for key, seen in before.items():
            if key[0] in COUNTERS:
                assert after[key] >= seen, f"{key} went down from {seen} to {after[key]}"
    first, last = scrapes[0], scrapes[-1]
    done = "syncpoint_items_done_total"
    assert value(last, done, job="dash") > value(first, done, job="dash")
    failures = [i for i in range(items) if i % 7 == 6]  # items 6, 13, 20, ...: the even ones retryable
    assert value(last, "syncpoint_items_done_total", job="dash") == items - len(failures)
    assert value(last, "syncpoint_records_done_total", job="dash") == 50
    failed = {kind: value(last, "syncpoint_items_failed_total", job="dash", kind=kind)
              for kind in ("retryable", "permanent")}
    retryable = sum(1 for i in failures if i % 2 == 0)
    assert failed == {"retryable": retryable, "permanent": len(failures) - retryable}
    assert value(last, "syncpoint_runs_total", job="dash", status="failed") == 1
    assert value(last, "syncpoint_run_progress_ratio", job="dash") == 1.0
    assert value(last, "syncpoint_run_running", job="dash") == 0
    assert value(last, "syncpoint_lock_held", job="dash") == 0
    assert ("syncpoint_last_success_timestamp_seconds", (("job", "dash"),)) not in last  # it never succeeded
    assert value(first, "syncpoint_lock_held", job="dash") == 1
    assert value(first, "syncpoint_run_running", job="dash") == 1
    assert any(value(s, "syncpoint_run_rate_per_second", job="dash") > 0 for s in scrapes[:-1])


def test_runs_total_counts_every_run_by_status(servers: Servers, tmp_path: Path) -> None:
    store = f"json:{tmp_path / 'cp'}"
    run_job(store, "--items", "5", "--delay", "0")
    run_job(store, "--items", "5", "--delay", "0", "--max-items", "2")  # partial
    run_job(store, "--items", "5", "--delay", "0", "--job", "other")
    metrics = scrape(servers.start(store).url + "/metrics")
    assert value(metrics, "syncpoint_runs_total", job="dash", status="completed") == 1
    assert value(metrics, "syncpoint_runs_total", job="dash", status="partial") == 1
    assert value(metrics, "syncpoint_runs_total", job="other", status="completed") == 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_metrics_port_serves_the_running_jobs_metrics(tmp_path: Path) -> None:
    store = f"sqlite:{tmp_path / 'cp' / 'syncpoint.db'}"
    port = free_port()
    job = start_job(store, "--items", "60", "--delay", "0.03", "--metrics-port", str(port))
    job.expect("READY")
    metrics = scrape(f"http://127.0.0.1:{port}/metrics")
    assert value(metrics, "syncpoint_run_running", job="dash") == 1
    assert value(metrics, "syncpoint_lock_held", job="dash") == 1
    assert value(metrics, "syncpoint_items_done_total", job="dash") >= 5
    code, err = job.finish()
    assert code == 0, err


def test_metrics_port_must_be_a_port(tmp_path: Path) -> None:
    job = start_job(f"sqlite:{tmp_path / 'db.db'}", "--metrics-port", "70000")
    code, err = job.finish()
    assert code == 64
    assert "--metrics-port must be a port number" in err

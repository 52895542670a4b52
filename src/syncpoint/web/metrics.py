"""Prometheus metrics read from the store when scraped (a custom collector; ``/metrics`` reuses an answer for
at most a second, see ``web.context``).

Per job, from its newest run (the one running now, or the last one):

    syncpoint_items_done_total{job}                  items recorded ok by that run (a new run starts at 0)
    syncpoint_records_done_total{job}                records its cursors reported
    syncpoint_items_failed_total{job,kind}           failed items, kind="retryable" or "permanent"
    syncpoint_run_progress_ratio{job}                done / total, when every task's total is known
    syncpoint_run_rate_per_second{job}               items (or records) per second now; 0 when not running
    syncpoint_run_duration_seconds{job}              wall time of the run so far
    syncpoint_run_running{job}                       1 while its status is running
And from all runs and the locks:
    syncpoint_runs_total{job,status}                 runs by status (final statuses, and running)
    syncpoint_last_success_timestamp_seconds{job}    when the job last completed a run (Unix time)
    syncpoint_lock_held{job}                         1 while a live process holds the job's lock
    syncpoint_run_live{job}                          1 while a live process (the lock's holder) or a live
                                                     worker (a lease with a fresh heartbeat) works on the
                                                     newest run; its status alone cannot say so
    syncpoint_live_workers{job}                      distinct workers holding its leases with fresh heartbeats

The counters belong to the newest run, so they reset when a new run starts, which Prometheus' ``rate()``
and ``increase()`` handle as a counter reset. Names follow Prometheus' conventions (base units, ``_total``
for counters, ``_seconds``, ``_ratio``).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from syncpoint.liveness import holders, working_on
from syncpoint.model import RunStatus
from syncpoint.progress_numbers import processed
from syncpoint.stores.base import Store
from syncpoint.web.data import failed_counts, rate_of, run_total


class StoreCollector(Collector):
    """Reads ``store`` at every scrape; ``job`` limits it to one job (the ``--metrics-port`` exporter)."""

    def __init__(self, store: Store, job: str | None = None) -> None:
        self.store = store
        self.job = job

    def collect(self) -> Iterator[Metric]:
        store, only = self.store, self.job
        items = CounterMetricFamily("syncpoint_items_done", "Items recorded ok by the job's newest run.",
                                    labels=["job"])
        records = CounterMetricFamily("syncpoint_records_done", "Records reported by the job's newest run.",
                                      labels=["job"])
        failed = CounterMetricFamily("syncpoint_items_failed", "Failed items of the job's newest run, by kind.",
                                     labels=["job", "kind"])
        ratio = GaugeMetricFamily("syncpoint_run_progress_ratio",
                                  "Done over total of the job's newest run (when its totals are known).",
                                  labels=["job"])
        rate = GaugeMetricFamily("syncpoint_run_rate_per_second",
                                 "Items or records per second of the job's running run (0 when none runs).",
                                 labels=["job"])
        duration = GaugeMetricFamily("syncpoint_run_duration_seconds", "Wall time of the job's newest run.",
                                     labels=["job"])
        running = GaugeMetricFamily("syncpoint_run_running", "1 while the job's newest run is running.",
                                    labels=["job"])
        runs = CounterMetricFamily("syncpoint_runs", "Runs in the store by job and status.",
                                   labels=["job", "status"])
        success = GaugeMetricFamily("syncpoint_last_success_timestamp_seconds",
                                    "Unix time the job last completed a run.", labels=["job"])
        locked = GaugeMetricFamily("syncpoint_lock_held", "1 while a live process holds the job's lock.",
                                   labels=["job"])
        alive = GaugeMetricFamily("syncpoint_run_live",
                                  "1 while a live process or worker works on the job's running run.", labels=["job"])
        workers = GaugeMetricFamily("syncpoint_live_workers",
                                    "Workers holding a lease of the job's running run with a fresh heartbeat.",
                                    labels=["job"])

        for run in store.latest_runs():
            if only is not None and run.job != only:
                continue
            job = run.job
            tasks = store.get_tasks(run.run_id)
            items.add_metric([job], sum(t.ok for t in tasks))
            records.add_metric([job], sum(t.records for t in tasks))
            counts = failed_counts(store, run.run_id, tasks)
            failed.add_metric([job, "retryable"], counts["retryable"])
            failed.add_metric([job, "permanent"], counts["permanent"])
            total = run_total(tasks)
            if total:
                ratio.add_metric([job], min(1.0, sum(processed(t) for t in tasks) / total))
            live = run.status is RunStatus.RUNNING
            now_rate = rate_of(store.get_samples(run.run_id)) if live else None
            rate.add_metric([job], now_rate or 0.0)
            duration.add_metric([job], run.duration_seconds)
            running.add_metric([job], 1.0 if live else 0.0)
            holder = store.lock_holder(job)
            locked.add_metric([job], 1.0 if holder is not None else 0.0)
            working = working_on(store, run, holder)
            alive.add_metric([job], 1.0 if working else 0.0)
            workers.add_metric([job], float(len(holders(working.workers))))
        for (job, status), n in sorted(store.run_counts().items(), key=lambda kv: (kv[0][0], kv[0][1].value)):
            if only is None or job == only:
                runs.add_metric([job, status.value], n)
        for run in store.latest_runs(statuses=[RunStatus.COMPLETED]):
            if only is None or run.job == only:
                success.add_metric([run.job], (run.ended_at or run.updated_at).timestamp())
        yield from (items, records, failed, ratio, rate, duration, running, runs, success, locked, alive, workers)

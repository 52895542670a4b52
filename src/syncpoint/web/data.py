"""What the dashboard shows, as plain JSON-ready dicts: the pages render them and ``/api/...`` returns them.

One place computes every view (like ``syncpoint.report`` for the CLI, whose shapes these reuse: a run is
``codec.run_to_dict`` plus ``duration_seconds``; a run's detail is ``RunDetail.to_dict``, the shape of
``syncpoint runs show --json``), so a page and its API never disagree. The shapes are documented in
docs/DASHBOARD.md.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from itertools import islice, pairwise
from typing import Any

from syncpoint import codec
from syncpoint.liveness import holders, holds_run, working_on
from syncpoint.model import ProgressSample, RunHead, RunRecord, RunStatus, TaskRecord, TaskStatus
from syncpoint.progress_numbers import processed
from syncpoint.report import RunSummary, run_detail
from syncpoint.stores import mask_url
from syncpoint.stores.base import Store

TREND_RUNS = 8  # runs in a job's duration trend on the jobs page
RATE_WINDOW_SECONDS = 30.0  # the rate is measured over the samples of about the last half minute
FAILED_PAGE = 50
JOBS_PAGE = 100  # jobs per page of the jobs page (the API gives all unless asked for a page)
MAX_FAILED_SCAN = 200_000  # failed items read to count retryable ones or to search; beyond, counts are partial


def sample_processed(sample: ProgressSample) -> int:
    return max(sample.items_ok + sample.items_failed, sample.records)


def head_dict(run: RunHead) -> dict[str, Any]:
    """A run in an overview: ``codec.run_to_dict``'s fields without config, params and config digest."""
    return {
        "run_id": run.run_id, "job": run.job, "key": run.key, "status": run.status.value,
        "started_at": codec.ts(run.started_at), "updated_at": codec.ts(run.updated_at),
        "ended_at": codec.ts(run.ended_at), "attempts": run.attempts, "error": run.error,
        "exit_code": run.exit_code, "duration_seconds": round(run.duration_seconds, 3),
    }


def lock_dict(store: Store, job: str) -> dict[str, Any] | None:
    holder = store.lock_holder(job)
    return None if holder is None else dict(holder.__dict__)


def live_now(store: Store, run: RunHead | RunRecord | None) -> dict[str, Any] | None:
    """Who works on ``run`` (a job's newest run) right now: ``{"run_id", "lock", "workers"}``, or None.

    ``lock`` is the job lock's holder (a single process); ``workers`` the distinct holders of the run's live
    leases (``syncpoint.liveness``), read only when no process holds the lock: the workers of a distributed
    run take no job lock, and without this the page would call their run dead.
    """
    if run is None:
        return None
    working = working_on(store, run)
    if not working:
        return None
    lock = None if working.lock is None else dict(working.lock.__dict__)
    return {"run_id": run.run_id, "lock": lock, "workers": holders(working.workers)}


# -- the jobs page ------------------------------------------------------------------------------------------
def jobs_overview(store: Store, *, offset: int = 0, limit: int | None = None, query: str = "") -> dict[str, Any]:
    """Jobs (by name; those containing ``query``; ``limit`` of them from ``offset``), each with its last run,
    last success, duration trend (oldest first) and the run live now, if any.

    Three reads whatever the number of jobs (``list_jobs`` and ``latest_runs`` twice, for the chosen jobs
    only), plus a lock probe (and, when no process holds the lock, a lease read) for each job whose last run
    says it is running.
    """
    needle = query.strip().lower()
    names = [j for j in store.list_jobs() if needle in j.lower()]
    chosen = names[offset:] if limit is None else names[offset:offset + limit]
    recent = store.latest_runs(TREND_RUNS, jobs=chosen) if chosen else []
    done = store.latest_runs(statuses=[RunStatus.COMPLETED], jobs=chosen) if chosen else []
    successes = {r.job: r for r in done}
    by_job: dict[str, list[RunHead]] = {}
    for run in recent:
        by_job.setdefault(run.job, []).append(run)
    jobs = []
    for job in chosen:
        runs = by_job.get(job, [])
        last = runs[0] if runs else None
        live = live_now(store, last)
        success = successes.get(job)
        jobs.append({
            "job": job,
            "last_run": None if last is None else head_dict(last),
            "last_success_at": None if success is None else codec.ts(success.ended_at or success.updated_at),
            "durations": [
                {"run_id": r.run_id, "status": r.status.value, "duration_seconds": round(r.duration_seconds, 3)}
                for r in reversed(runs)
            ],
            "live": live,
        })
    return {"store": mask_url(store.location), "total_jobs": len(names), "offset": offset, "limit": limit,
            "q": query, "jobs": jobs}


def job_runs(store: Store, job: str, limit: int = 50) -> dict[str, Any]:
    """A job's newest runs (the shape of ``syncpoint runs list --json``) and their durations, oldest first;
    ``live`` is the job lock's holder, ``live_run`` who works on the newest run now (``live_now``)."""
    runs = store.list_runs(job, limit=limit)
    summaries = [RunSummary(r, store.get_tasks(r.run_id)).to_dict() for r in runs]
    return {"job": job, "runs": summaries, "live": lock_dict(store, job),
            "live_run": live_now(store, runs[0] if runs else None)}


# -- one run ------------------------------------------------------------------------------------------------
def run_view(store: Store, run: RunRecord, samples: list[ProgressSample] | None = None) -> dict[str, Any]:
    """``syncpoint runs show --json`` plus live progress (ratio, rate, ETA), failed-item counts and the
    config change since the job's previous run. A live page polls this: a handful of small reads."""
    found = run_detail(store, run, failed_limit=0)
    detail = found.to_dict()
    tasks = found.summary.tasks
    samples = store.get_samples(run.run_id) if samples is None else samples
    rate = rate_of(samples)
    running = run.status is RunStatus.RUNNING
    for data, task in zip(detail["tasks"], tasks, strict=True):
        del data["failed_items"], data["failed_items_truncated"]  # paged: /api/runs/{id}/failed
        data["done"] = done = processed(task)
        data["progress_ratio"] = ratio_of(task)
        active = running and task.status is TaskStatus.IN_PROGRESS
        data["eta_seconds"] = eta(task.total, done, rate) if active else None
    total = run_total(tasks)
    done = sum(processed(t) for t in tasks)
    detail["progress"] = {
        "done": done,
        "total": total,
        "ratio": None if not total else min(1.0, done / total),
        "rate_per_second": None if rate is None else round(rate, 3),
        "eta_seconds": eta(total, done, rate) if running else None,
        "samples": len(samples),
    }
    detail["failed"] = failed_counts(store, run.run_id, tasks)
    detail["config_changes"] = CONFIG_CHANGES.get(store, run)
    holder = found.lock if not found.leases or holds_run(found.lock, run) else None  # workers take no job lock
    detail["lock"] = dict(holder.__dict__) if detail["live"] and holder is not None else None
    return detail


def task_total(task: TaskRecord) -> int | None:
    """The task's known size: its total, or (complete without one) what it did."""
    if task.total:
        return task.total
    return processed(task) if task.status is TaskStatus.COMPLETED else None


def ratio_of(task: TaskRecord) -> float | None:
    total = task_total(task)
    if task.status is TaskStatus.COMPLETED:
        return 1.0
    return None if not total else min(1.0, processed(task) / total)


def run_total(tasks: list[TaskRecord]) -> int | None:
    """The run's size when every task's is known (else the ratio and ETA are unknown)."""
    totals = [task_total(t) for t in tasks]
    if not tasks or any(t is None for t in totals):
        return None
    return sum(t or 0 for t in totals)


def eta(total: int | None, done: int, rate: float | None) -> float | None:
    if not total or not rate or rate <= 0 or done >= total:
        return None
    return round((total - done) / rate, 1)


def rate_of(samples: list[ProgressSample]) -> float | None:
    """Items (or records) per second over the samples of about the last ``RATE_WINDOW_SECONDS``."""
    if len(samples) < 2:
        return None
    last = samples[-1]
    first = samples[-2]
    for sample in reversed(samples[:-1]):
        if (last.at - sample.at).total_seconds() > RATE_WINDOW_SECONDS:
            break
        first = sample
    seconds = (last.at - first.at).total_seconds()
    return None if seconds <= 0 else max(0.0, (sample_processed(last) - sample_processed(first)) / seconds)


def history(store: Store, run: RunRecord, samples: list[ProgressSample] | None = None) -> dict[str, Any]:
    """The run's samples and the rate between each two (items or records per second)."""
    samples = store.get_samples(run.run_id) if samples is None else samples
    rates = []
    for before, after in pairwise(samples):
        seconds = (after.at - before.at).total_seconds()
        if seconds > 0:
            rates.append({
                "at": codec.ts(after.at),
                "seconds": round((after.at - run.started_at).total_seconds(), 3),
                "per_second": round(max(0, sample_processed(after) - sample_processed(before)) / seconds, 3),
            })
    return {"run_id": run.run_id, "samples": [codec.sample_to_dict(s) for s in samples], "rates": rates}


def config_changes(store: Store, run: RunRecord) -> dict[str, Any]:
    """What changed in the config since the job's previous run (by start time): key paths, before, after."""
    previous = None
    for other in store.list_runs(run.job, limit=200):
        if (other.started_at, other.run_id) < (run.started_at, run.run_id):
            previous = other
            break
    if previous is None:
        return {"previous_run_id": None, "changes": []}
    before, after = _flatten(previous.config), _flatten(run.config)
    changes = [
        {"key": key, "before": before.get(key), "after": after.get(key), "added": key not in before,
         "removed": key not in after}
        for key in sorted(before.keys() | after.keys())
        if before.get(key, _MISSING) != after.get(key, _MISSING)
    ]
    return {"previous_run_id": previous.run_id, "changes": changes}


_MISSING = object()


class _ConfigChanges:
    """``config_changes`` remembered for a while per run: a run's config and its predecessor do not change
    while a page polls it once a second (a deleted predecessor shows for at most ``seconds``)."""

    def __init__(self, seconds: float = 30.0, size: int = 256) -> None:
        self._cache: OrderedDict[tuple[str, str], tuple[float, dict[str, Any]]] = OrderedDict()
        self._seconds, self._size = seconds, size
        self._mutex = threading.Lock()

    def get(self, store: Store, run: RunRecord) -> dict[str, Any]:
        key = (store.location, run.run_id)
        now = time.monotonic()
        with self._mutex:
            hit = self._cache.get(key)
            if hit is not None and now - hit[0] < self._seconds:
                return hit[1]
        found = config_changes(store, run)
        with self._mutex:
            self._cache[key] = (now, found)
            self._cache.move_to_end(key)
            if len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return found


CONFIG_CHANGES = _ConfigChanges()


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        flat: dict[str, Any] = {}
        for key, inner in value.items():
            flat.update(_flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix or "(config)": value}


# -- failed items -------------------------------------------------------------------------------------------
class _FailedCounts:
    """Retryable/permanent counts per task, cached by (run, task, failed count): a scrape or a poll during
    a run re-reads a task's failed items only when their number changed."""

    def __init__(self, size: int = 256) -> None:
        self._cache: OrderedDict[tuple[str, str, int], tuple[int, int, bool]] = OrderedDict()
        self._size = size
        self._mutex = threading.Lock()

    def get(self, store: Store, run_id: str, task: TaskRecord) -> tuple[int, int, bool]:
        key = (run_id, task.name, task.failed)
        with self._mutex:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        retryable = permanent = 0
        complete = True
        for n, item in enumerate(store.ledger_failed(run_id, task.name)):
            if n >= MAX_FAILED_SCAN:
                complete = False
                break
            if item.retryable:
                retryable += 1
            else:
                permanent += 1
        with self._mutex:
            self._cache[key] = (retryable, permanent, complete)
            if len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return retryable, permanent, complete


FAILED_COUNTS = _FailedCounts()


def failed_counts(store: Store, run_id: str, tasks: list[TaskRecord]) -> dict[str, Any]:
    retryable = permanent = 0
    complete = True
    for task in tasks:
        if task.failed:
            r, p, whole = FAILED_COUNTS.get(store, run_id, task)
            retryable, permanent, complete = retryable + r, permanent + p, complete and whole
    return {"total": sum(t.failed for t in tasks), "retryable": retryable, "permanent": permanent,
            "counted_all": complete}


def failed_page(
    store: Store, run_id: str, tasks: list[TaskRecord], *, task: str | None = None, query: str = "",
    offset: int = 0, limit: int = FAILED_PAGE,
) -> dict[str, Any]:
    """One page of failed items (item-ID order, task by task), optionally of one task and matching ``query``
    (case-insensitive, in the item ID or the error)."""
    needle = query.strip().lower()

    def matching() -> Iterator[dict[str, Any]]:
        scanned = 0
        for t in tasks:
            if not t.failed or (task is not None and t.name != task):
                continue
            for item in store.ledger_failed(run_id, t.name):
                scanned += 1
                if scanned > MAX_FAILED_SCAN:
                    return
                if needle and needle not in item.item_id.lower() and needle not in (item.error or "").lower():
                    continue
                yield {"task": t.name, "item_id": item.item_id, "error": item.error, "retryable": item.retryable}

    found = list(islice(matching(), offset, offset + limit + 1))
    return {
        "run_id": run_id, "task": task, "q": query, "offset": offset, "limit": limit,
        "items": found[:limit], "more": len(found) > limit,
    }

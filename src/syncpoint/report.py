"""Views of runs for people (rich tables) and scripts (JSON dicts): one place, used by ``--list-runs``,
``syncpoint runs list|show`` and ``syncpoint status``.

Every view is computed once as a plain summary (``RunSummary``, ``RunDetail``, ``LiveRun``) and then
rendered either as a table or as a JSON-ready dict, so the two never disagree. The JSON shapes are
``codec.run_to_dict`` / ``task_to_dict`` / ``phase_to_dict`` plus the computed fields documented in
docs/CLI.md.

A run shared by many workers (``syncpoint.distributed``) also has task leases: they are shown as a table of
their own (``syncpoint.lease_report``) and as a ``lease`` object per task, and they decide whether the run is
live (``syncpoint.liveness``). A run without leases is shown exactly as before.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from syncpoint import codec
from syncpoint.errors import LockHolder
from syncpoint.lease_report import counts, counts_text, lease_table, lease_to_dict
from syncpoint.liveness import describe_workers, holds_run, live_leases, working
from syncpoint.model import (
    FailedItem,
    LeaseInfo,
    LeaseState,
    PhaseRecord,
    RunHead,
    RunRecord,
    RunStatus,
    TaskRecord,
    TaskStatus,
    utcnow,
)
from syncpoint.stores import mask_url
from syncpoint.stores.base import Store
from syncpoint.tables import Column, FittedTable

PIPED_WIDTH = 200

#: The columns of ``runs list`` / ``--list-runs``; at 80 columns the ranked ones go first (highest rank first).
RUN_COLUMNS = (
    Column("run"), Column("job", fold=True), Column("key", rank=2, fold=True), Column("status"),
    Column("started", rank=1), Column("ended", rank=5), Column("duration", rank=3, justify="right"),
    Column("tasks", justify="right"), Column("ok/failed", justify="right"),
    Column("attempts", rank=4, justify="right"),
)


# -- formatting ---------------------------------------------------------------------------------------------
def short_time(value: datetime | None) -> str:
    return "" if value is None else value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def clock(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def duration_seconds(run: RunRecord) -> float:
    """Wall time of the run: to its end, or (still running) to its last commit (``RunHead``'s one rule)."""
    return RunHead.of(run).duration_seconds


def duration(run: RunRecord) -> str:
    return clock(duration_seconds(run))


def short_json(value: object, width: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= width else text[: width - 1] + "…"


# -- one run, summarised --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunSummary:
    run: RunRecord
    tasks: list[TaskRecord]

    @property
    def tasks_done(self) -> int:
        return sum(t.status is TaskStatus.COMPLETED for t in self.tasks)

    @property
    def ok(self) -> int:
        return sum(t.ok for t in self.tasks)

    @property
    def failed(self) -> int:
        return sum(t.failed for t in self.tasks)

    @property
    def records(self) -> int:
        return sum(t.records for t in self.tasks)

    @property
    def pages(self) -> int:
        return sum(t.pages for t in self.tasks)

    def to_dict(self) -> dict[str, Any]:
        return {
            **codec.run_to_dict(self.run),
            "duration_seconds": round(duration_seconds(self.run), 3),
            "tasks_done": self.tasks_done,
            "tasks_total": len(self.tasks),
            "items_ok": self.ok,
            "items_failed": self.failed,
            "records": self.records,
            "pages": self.pages,
        }

    def row(self) -> tuple[str, ...]:
        return (
            self.run.run_id, self.run.job, self.run.key or "", self.run.status.value, short_time(self.run.started_at),
            short_time(self.run.ended_at), duration(self.run), f"{self.tasks_done}/{len(self.tasks)}",
            f"{self.ok}/{self.failed}", str(self.run.attempts),
        )


def summarize(store: Store, run: RunRecord) -> RunSummary:
    return RunSummary(run, store.get_tasks(run.run_id))


def runs_table(store: Store, runs: Iterable[RunRecord | RunSummary]) -> FittedTable:
    table = FittedTable(RUN_COLUMNS, title=f"runs in {mask_url(store.location)}", hint="see --json")
    for item in runs:
        summary = item if isinstance(item, RunSummary) else summarize(store, item)
        table.add_row(*summary.row(), style=_status_style(summary.run.status))
    return table


def print_runs(store: Store, runs: list[RunRecord], console: Console | None = None) -> None:
    (console or table_console()).print(runs_table(store, runs))


def table_console() -> Console:
    """stdout at the terminal's width; piped (``| less -S``, ``| grep``, ``> file``) 200 columns unless
    ``COLUMNS`` says otherwise, so a pipe gets every column. Tables fit either way (``syncpoint.tables``)."""
    found = Console()
    return found if found.is_terminal or "COLUMNS" in os.environ else Console(width=PIPED_WIDTH)


def _status_style(status: RunStatus) -> str:
    return {RunStatus.FAILED: "red", RunStatus.RUNNING: "cyan", RunStatus.COMPLETED: ""}.get(status, "yellow")


# -- one run in detail --------------------------------------------------------------------------------------
TASK_COLUMNS = (
    Column("task", fold=True), Column("status"), Column("cursor", rank=2, fold=True),
    Column("pages", rank=4, justify="right"), Column("records", rank=1, justify="right"),
    Column("ok/failed", justify="right"), Column("total", rank=3, justify="right"), Column("updated", rank=5),
    Column("error", rank=1, fold=True),
)
FAILED_COLUMNS = (Column("task", fold=True), Column("item", fold=True), Column("retryable"),
                  Column("error", fold=True))
STATUS_COLUMNS = (
    Column("run"), Column("job", fold=True), Column("tasks", justify="right"),
    Column("ok/failed", justify="right"), Column("records", rank=1, justify="right"),
    Column("current task", rank=2, fold=True), Column("cursor", rank=4, fold=True), Column("updated", rank=3),
    Column("live", rank=1, fold=True),
)


@dataclass(frozen=True)
class RunDetail:
    summary: RunSummary
    phases: list[PhaseRecord]
    failed_items: dict[str, list[FailedItem]]  # first N per task that has failed items
    more_failed: dict[str, bool]
    location: str
    lock: LockHolder | None
    leases: list[LeaseInfo] = field(default_factory=list)  # by task name; none unless many workers share it

    @property
    def run(self) -> RunRecord:
        return self.summary.run

    @property
    def live(self) -> bool:
        """A process holds the job's lock for it, or a worker one of its leases (``syncpoint.liveness``)."""
        return bool(working(self.run, self.lock, self.leases))

    @property
    def retryable(self) -> bool | None:
        """Whether resuming may fix the run: None when there is nothing to fix."""
        failed = [t for t in self.summary.tasks if t.status is TaskStatus.FAILED]
        if failed:
            return any(t.retryable for t in failed)
        return None if self.run.status is RunStatus.COMPLETED else self.run.status.resumable

    def to_dict(self) -> dict[str, Any]:
        tasks = []
        by_task = {lease.task: lease for lease in self.leases}
        for task in self.summary.tasks:
            data = codec.task_to_dict(task)
            if self.leases:
                lease = by_task.get(task.name)
                data["lease"] = None if lease is None else lease_to_dict(lease)
            items = self.failed_items.get(task.name, [])
            data["failed_items"] = [
                {"item_id": i.item_id, "error": i.error, "retryable": i.retryable} for i in items
            ]
            data["failed_items_truncated"] = self.more_failed.get(task.name, False)
            tasks.append(data)
        return {
            "run": self.summary.to_dict(),
            "location": self.location,
            "live": self.live,
            "error": {"message": self.run.error, "retryable": self.retryable},
            "tasks": tasks,
            "phases": [codec.phase_to_dict(p) for p in self.phases],
        }

    def render(self) -> RenderableType:
        run = self.run
        head = Table.grid(padding=(0, 2))
        head.add_column(style="bold")
        head.add_column()
        rows: list[tuple[str, str]] = [
            ("run", run.run_id), ("job", run.job), ("key", run.key or "-"), ("status", run.status.value),
            ("live", _live_text(self.lock, run, self.leases)), ("started", short_time(run.started_at)),
            ("updated", short_time(run.updated_at)), ("ended", short_time(run.ended_at) or "-"),
            ("duration", duration(run)), ("attempts", str(run.attempts)),
            ("exit code", "-" if run.exit_code is None else str(run.exit_code)),
            ("tasks", f"{self.summary.tasks_done}/{len(self.summary.tasks)} done"),
            ("items", f"{self.summary.ok} ok, {self.summary.failed} failed"),
            ("records", f"{self.summary.records} in {self.summary.pages} pages"),
            ("error", _run_error_text(run, self.retryable)), ("config digest", run.config_digest),
            ("config", short_json(run.config, 200)), ("params", short_json(run.params, 200)),
            ("checkpoints", self.location),
        ]
        for name, value in rows:
            head.add_row(name, Text(value))
        parts: list[RenderableType] = [head, self._tasks_table()]
        if self.leases:
            parts.append(lease_table(self.leases, title="task leases"))
        if self.phases:
            phases = Table(title="phases", title_justify="left")
            for column in ("phase", "done at"):
                phases.add_column(column)
            for p in self.phases:
                phases.add_row(p.name, short_time(p.completed_at) or "not done")
            parts.append(phases)
        if self.failed_items:
            parts.append(self._failed_table())
        return Group(*parts)

    def _tasks_table(self) -> FittedTable:
        table = FittedTable(TASK_COLUMNS, title="tasks", hint="see --json")
        for t in self.summary.tasks:
            error = _error_text(t.error, t.retryable) if t.error else ""
            table.add_row(
                t.name, t.status.value, short_json(t.cursor, 40), str(t.pages), str(t.records),
                f"{t.ok}/{t.failed}", "" if t.total is None else str(t.total), short_time(t.updated_at), error,
                style="red" if t.status is TaskStatus.FAILED else None,
            )
        return table

    def _failed_table(self) -> FittedTable:
        table = FittedTable(FAILED_COLUMNS, title="failed items")
        for task, items in self.failed_items.items():
            for item in items:
                table.add_row(task, item.item_id, "yes" if item.retryable else "no", item.error or "")
            if self.more_failed.get(task):
                table.add_row(task, "…", "", "more not shown (see --failed N)")
        return table


def run_detail(store: Store, run: RunRecord, failed_limit: int = 20) -> RunDetail:
    summary = summarize(store, run)
    items: dict[str, list[FailedItem]] = {}
    more: dict[str, bool] = {}
    for task in summary.tasks:
        if task.failed and failed_limit > 0:
            found = list(islice(store.ledger_failed(run.run_id, task.name), failed_limit + 1))
            items[task.name] = found[:failed_limit]
            more[task.name] = len(found) > failed_limit
    holder = store.lock_holder(run.job) if run.status is RunStatus.RUNNING else None
    return RunDetail(summary, store.get_phases(run.run_id), items, more, mask_url(store.location), holder,
                     store.leases(run.run_id))


def _error_text(error: str | None, retryable: bool | None) -> str:
    if not error:
        return "-"
    return f"{error} ({'retryable' if retryable else 'not retryable'})" if retryable is not None else error


def _run_error_text(run: RunRecord, retryable: bool | None) -> str:
    if not run.error:
        return "-"
    if run.status in (RunStatus.INTERRUPTED, RunStatus.PARTIAL):
        return f"{run.error} (resume to continue)"
    return _error_text(run.error, retryable)


def _live_text(lock: LockHolder | None, run: RunRecord, leases: list[LeaseInfo]) -> str:
    if run.status is not RunStatus.RUNNING:
        return "no"
    if leases:
        return _workers_text(lock if holds_run(lock, run) else None, leases)
    if lock is None or not holds_run(lock, run):
        return "no — its process is gone; resume it with --resume"
    return f"yes — {lock.describe()}"


def _workers_text(lock: LockHolder | None, leases: list[LeaseInfo]) -> str:
    """Whether a run of many workers is live, and what to do when it is not: start a worker (not --resume)."""
    live = live_leases(leases)
    if live:
        return f"yes — {len(live)} task(s) leased to {describe_workers(live)}"
    if lock is not None:  # a fan-out adding tasks right now
        return f"yes — {lock.describe()}"
    if any(lease.state is LeaseState.LEASED for lease in leases):
        return ("no — no worker has sent a heartbeat for twice its stall timeout; "
                "start a worker to continue it")
    queued = sum(lease.state is LeaseState.QUEUED for lease in leases)
    return f"no — {queued} task(s) queued, no worker at work; start one to continue it"


# -- what is running now ------------------------------------------------------------------------------------
LEASE_ROWS = 20  # leases of one run in ``status`` (the tasks in progress); every one: ``runs show``


@dataclass(frozen=True)
class LiveRun:
    summary: RunSummary
    lock: LockHolder | None
    current: list[TaskRecord] = field(default_factory=list)
    leases: list[LeaseInfo] = field(default_factory=list)  # none unless many workers share the run

    @property
    def live(self) -> bool:
        return bool(working(self.summary.run, self.lock, self.leases))

    def current_leases(self) -> list[LeaseInfo]:
        """The leases of the tasks in ``current``, in its order."""
        by_task = {lease.task: lease for lease in self.leases}
        return [by_task[t.name] for t in self.current if t.name in by_task]

    def to_dict(self) -> dict[str, Any]:
        lock = None if self.lock is None else {k: v for k, v in self.lock.__dict__.items()}
        by_task = {lease.task: lease for lease in self.leases}
        current = []
        for t in self.current:
            entry: dict[str, Any] = {"task": t.name, "cursor": t.cursor, "records": t.records, "ok": t.ok,
                                     "failed": t.failed, "total": t.total, "updated_at": codec.ts(t.updated_at)}
            if self.leases:
                lease = by_task.get(t.name)
                entry["lease"] = None if lease is None else lease_to_dict(lease)
            current.append(entry)
        found = {
            **self.summary.to_dict(),
            "live": self.live,
            "lock": lock,
            "seconds_since_update": round((utcnow() - self.summary.run.updated_at).total_seconds(), 3),
            "current": current,
        }
        if self.leases:
            found["leases"] = counts(self.leases)
        return found


def running_runs(store: Store, job: str | None = None) -> list[LiveRun]:
    found = []
    for run in store.list_runs(job, statuses=[RunStatus.RUNNING]):
        summary = summarize(store, run)
        leases = store.leases(run.run_id)
        held = {lease.task for lease in leases if lease.state is LeaseState.LEASED}  # maybe not committed yet
        current = [t for t in summary.tasks if t.status is TaskStatus.IN_PROGRESS or t.name in held]
        current.sort(key=lambda t: t.updated_at or run.started_at, reverse=True)
        found.append(LiveRun(summary, store.lock_holder(run.job), current, leases))
    return found


def status_table(store: Store, runs: list[LiveRun]) -> FittedTable:
    table = FittedTable(STATUS_COLUMNS, title=f"running in {mask_url(store.location)}", hint="see --json")
    for live in runs:
        s = live.summary
        total = sum(t.total or 0 for t in s.tasks)
        records = f"{s.records}" + (f" of {total}" if total and all(t.total for t in s.tasks) else "")
        task = live.current[0] if live.current else None
        table.add_row(
            s.run.run_id, s.run.job, f"{s.tasks_done}/{len(s.tasks)}", f"{s.ok}/{s.failed}", records,
            task.name if task else "", short_json(task.cursor, 40) if task else "", short_time(s.run.updated_at),
            _live_cell(live), style=None if live.live else "yellow",
        )
    return table


def _live_cell(live: LiveRun) -> str:
    if live.leases:  # many workers: the lock is not theirs (only a fan-out takes it, for a moment)
        workers = {(lease.host, lease.pid) for lease in live_leases(live.leases)}
        if workers:
            return f"yes ({len(workers)} worker{'s' if len(workers) > 1 else ''})"
        return "yes (fan-out)" if holds_run(live.lock, live.summary.run) else "no — no live worker"
    if live.lock is not None and live.live:
        return f"yes (pid {live.lock.pid} on {live.lock.host})"
    return "no — stale, resume it"


def status_view(store: Store, runs: list[LiveRun]) -> RenderableType:
    """The status table and, for each run of many workers, the leases of its tasks in progress."""
    parts: list[RenderableType] = [status_table(store, runs)]
    for live in runs:
        if not live.leases:
            continue
        run_id = live.summary.run.run_id
        shown = live.current_leases()
        more = f"; {len(shown) - LEASE_ROWS} more in" if len(shown) > LEASE_ROWS else "; every task:"
        parts.append(Text(f"\ntask leases of run {run_id}: {counts_text(live.leases)}{more} "
                          f"syncpoint runs show {run_id}", style="bold"))
        if shown:
            parts.append(lease_table(shown[:LEASE_ROWS], title=None))
    return Group(*parts)

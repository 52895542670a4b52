"""Human-readable views of runs (tables), shared by ``--list-runs`` and the ``syncpoint`` command."""

from __future__ import annotations

from datetime import datetime

from rich.console import Console
from rich.table import Table

from syncpoint.model import RunRecord, TaskStatus
from syncpoint.stores.base import Store


def short_time(value: datetime | None) -> str:
    return "" if value is None else value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def duration(run: RunRecord) -> str:
    end = run.ended_at or run.updated_at
    seconds = int((end - run.started_at).total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def runs_table(store: Store, runs: list[RunRecord]) -> Table:
    table = Table(title=f"runs in {store.location}", title_justify="left")
    for column in ("run", "job", "key", "status", "started", "ended", "duration", "tasks", "items ok/failed",
                   "attempts"):
        table.add_column(column)
    for run in runs:
        tasks = store.get_tasks(run.run_id)
        done = sum(t.status is TaskStatus.COMPLETE for t in tasks)
        ok = sum(t.ok for t in tasks)
        failed = sum(t.failed for t in tasks)
        table.add_row(
            run.run_id, run.job, run.key or "", run.status.value, short_time(run.started_at),
            short_time(run.ended_at), duration(run), f"{done}/{len(tasks)}", f"{ok}/{failed}",
            str(run.attempts),
        )
    return table


def print_runs(store: Store, runs: list[RunRecord], console: Console | None = None) -> None:
    (console or Console()).print(runs_table(store, runs))

"""Progress while a run goes: a live display on a terminal, periodic log lines elsewhere, or nothing.

    with job.run(options) as run, progress.track(run, options):
        ...

A daemon thread samples the run's in-memory tasks about twice a second (``Run.task_snapshots``: a side-effect-free read
of each task's record and counters) and renders them; the run's hot path is not touched at all. Modes:

    live   a rich display on stderr: one line for the run, one per active task (bar, done/total, rec/s, ETA)
    log    one INFO line on logger ``syncpoint.progress`` every ``interval`` seconds (default 10) — CI, cron,
           Cloud Run — e.g. ``progress drucksachen: 750/1000 (75.0%) · 120.5 rec/s · ETA 0:02:04 · 5 failed``;
           the numbers are also attached to the record (``extra``) for JSON logs
    off    nothing

"Done" for a task is the larger of its record count and its item count (ok + failed); its total is
``TaskRecord.total`` (``task.set_total``). The run's total is known once every unfinished task has one.
Rates are measured over the last 30 seconds of this process, so a resumed run's earlier work does not
inflate them.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from syncpoint.model import TaskRecord, TaskStatus

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.live import Live

    from syncpoint.options import RunOptions
    from syncpoint.run import Run

log = logging.getLogger("syncpoint.progress")

DEFAULT_INTERVAL = 10.0
SAMPLE_EVERY = 0.5
RATE_WINDOW = 30.0
MAX_TASK_ROWS = 8
INTERVAL_ENV = "SYNCPOINT_PROGRESS_INTERVAL"


# -- numbers --------------------------------------------------------------------------------------------
def task_done(record: TaskRecord) -> int:
    return max(record.records, record.ok + record.failed)


@dataclass(frozen=True)
class Totals:
    """One sample of a run (or a task): done, total if known, failures, task counts."""

    done: int
    total: int | None
    failed: int
    tasks_done: int
    tasks: int
    tasks_failed: int

    @classmethod
    def of(cls, records: list[TaskRecord]) -> Totals:
        total: int | None = 0
        for r in records:
            if r.total is not None:
                total = None if total is None else total + max(r.total, task_done(r))
            elif r.status is TaskStatus.COMPLETE:
                total = None if total is None else total + task_done(r)
            else:
                total = None
        return cls(
            done=sum(task_done(r) for r in records),
            total=total if records else None,
            failed=sum(r.failed for r in records),
            tasks_done=sum(r.status is TaskStatus.COMPLETE for r in records),
            tasks=len(records),
            tasks_failed=sum(r.status is TaskStatus.FAILED for r in records),
        )


class Rate:
    """Records per second over a sliding window of samples."""

    def __init__(self, window: float = RATE_WINDOW) -> None:
        self.window = window
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, now: float, value: int) -> None:
        self._samples.append((now, value))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window:
            self._samples.popleft()

    @property
    def per_second(self) -> float:
        if len(self._samples) < 2:
            return 0.0
        (t0, v0), (t1, v1) = self._samples[0], self._samples[-1]
        return max(0.0, (v1 - v0) / (t1 - t0)) if t1 > t0 else 0.0


def clock(seconds: float) -> str:
    return str(timedelta(seconds=math.ceil(seconds)))


def eta(totals: Totals, rate: float) -> str | None:
    if totals.total is None:
        return None
    left = max(0, totals.total - totals.done)
    if left == 0:
        return clock(0)
    return clock(left / rate) if rate > 0 else "?"


def describe(label: str, totals: Totals, rate: float, *, elapsed: float | None = None) -> str:
    """``drucksachen: 750/1000 (75.0%) · 120.5 rec/s · ETA 0:02:04 · 5 failed`` (the log line's body)."""
    if totals.total is not None:
        pct = 100.0 * totals.done / totals.total if totals.total else 100.0
        parts = [f"{label}: {totals.done}/{totals.total} ({pct:.1f}%)"]
    else:
        parts = [f"{label}: {totals.done} done"]
    parts.append(f"{rate:.1f} rec/s")
    if elapsed is not None:
        parts.append(f"elapsed {clock(elapsed)}")
    else:
        left = eta(totals, rate)
        if left is not None:
            parts.append(f"ETA {left}")
    if totals.tasks > 1:
        parts.append(f"tasks {totals.tasks_done}/{totals.tasks}")
    if totals.failed:
        parts.append(f"{totals.failed} failed")
    if totals.tasks_failed:
        parts.append(f"{totals.tasks_failed} task{'s' if totals.tasks_failed > 1 else ''} failed")
    return " · ".join(parts)


def describe_active(records: list[TaskRecord]) -> str:
    """`` · load_zaken 750/1000 (75.0%)`` per task in progress with a known total, in a run of several tasks:
    the log line then says how far the current loader is, not only the whole run."""
    parts = []
    for r in records:
        if len(records) > 1 and r.status is TaskStatus.IN_PROGRESS and r.total:
            done = task_done(r)
            parts.append(f"{r.name} {done}/{r.total} ({100.0 * done / r.total:.1f}%)")
    return "".join(f" · {part}" for part in parts[:MAX_TASK_ROWS])


# -- the reporter ---------------------------------------------------------------------------------------
class ProgressReporter:
    """Samples ``run`` from a daemon thread and renders it ("live" or "log"); ``stop`` renders a final line."""

    def __init__(
        self,
        run: Run,
        mode: str = "log",
        *,
        interval: float = DEFAULT_INTERVAL,
        sample_every: float = SAMPLE_EVERY,
        console: Console | None = None,
    ) -> None:
        if mode not in ("live", "log", "off"):
            raise ValueError(f"progress mode must be live, log or off, not {mode!r}")
        self.run = run
        self.mode = mode
        self.interval = interval
        self.sample_every = min(sample_every, interval) if mode == "log" else sample_every
        self.console = console
        self._rate = Rate()
        self._task_rates: dict[str, Rate] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._live: Live | None = None
        self._started = time.monotonic()
        self._last_line = self._started
        self._origin: int | None = None

    @property
    def label(self) -> str:
        return self.run.job.name

    def start(self) -> ProgressReporter:
        if self.mode == "off":
            return self
        self._started = self._last_line = time.monotonic()
        records = self._sample()
        if self.mode == "live":
            self._start_live()
            if records is not None and self._live is not None:
                self._live.update(self._render(records), refresh=True)
        self._thread = threading.Thread(target=self._loop, name="syncpoint-progress", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sampling and render the final state (a last log line, or the live display's last frame)."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        records = self._sample()
        if records is None:
            return
        if self._live is not None:
            self._live.update(self._render(records, final=True), refresh=True)
            self._live.stop()
            self._live = None
        else:
            self._log(records, final=True)

    def __enter__(self) -> ProgressReporter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- sampling ---------------------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.wait(self.sample_every):
            try:
                self._tick()
            except Exception:  # a display problem must never end the sync
                log.debug("progress display failed", exc_info=True)

    def _tick(self) -> None:
        records = self._sample()
        if records is None:
            return
        if self._live is not None:
            self._live.update(self._render(records), refresh=True)
        elif self.mode == "log" and time.monotonic() - self._last_line >= self.interval:
            self._log(records)

    def _sample(self) -> list[TaskRecord] | None:
        try:
            records = self.run.task_snapshots()
        except RuntimeError:  # the run added a task while we iterated; take the next sample
            return None
        now = time.monotonic()
        done = Totals.of(records).done
        if self._origin is None:
            self._origin = done
        self._rate.add(now, done)
        for record in records:
            if record.status is TaskStatus.IN_PROGRESS:
                self._task_rates.setdefault(record.name, Rate()).add(now, task_done(record))
            else:
                self._task_rates.pop(record.name, None)
        return records

    # -- log lines --------------------------------------------------------------------------------------
    def _log(self, records: list[TaskRecord], *, final: bool = False) -> None:
        self._last_line = time.monotonic()
        totals = Totals.of(records)
        rate = self._rate.per_second if not final else self._average(totals)
        elapsed = self._last_line - self._started
        label = f"{self.label} (final)" if final else self.label
        log.info(
            "progress %s%s", describe(label, totals, rate, elapsed=elapsed if final else None),
            "" if final else describe_active(records),
            extra={
                "job": self.label, "run_id": self.run.run_id, "done": totals.done, "total": totals.total,
                "failed": totals.failed, "rate": round(rate, 3), "tasks_done": totals.tasks_done,
                "tasks": totals.tasks, "elapsed_seconds": round(elapsed, 3), "final": final,
            },
        )

    def _average(self, totals: Totals) -> float:
        """The mean rate since the reporter started (for the final line)."""
        elapsed = time.monotonic() - self._started
        origin = self._origin if self._origin is not None else totals.done
        return max(0.0, (totals.done - origin) / elapsed) if elapsed > 0 else 0.0

    # -- the live display -------------------------------------------------------------------------------
    def _start_live(self) -> None:
        from rich.console import Console
        from rich.live import Live

        console = self.console or Console(stderr=True)
        self._live = Live(
            console=console, auto_refresh=False, transient=False, redirect_stderr=True,
            redirect_stdout=sys.stdout.isatty(),  # never move a program's piped output to the terminal
        )
        self._live.start()

    def _render(self, records: list[TaskRecord], *, final: bool = False) -> RenderableType:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        totals = Totals.of(records)
        elapsed = time.monotonic() - self._started
        rate = self._average(totals) if final else self._rate.per_second
        head = Text(f"{self.run.run_id} · ", style="dim")
        head.append(describe(self.label, totals, rate, elapsed=elapsed if final else None), style="bold")
        table = Table.grid(padding=(0, 2))
        for justify in ("left", "left", "left", "right", "right", "right", "right"):
            table.add_column(justify=justify)
        shown = _rows_to_show(records)
        for record in shown:
            one = Totals.of([record])
            task_rate = self._task_rates[record.name].per_second if record.name in self._task_rates else 0.0
            bar: RenderableType = (
                ProgressBar(total=float(one.total or 1), completed=float(one.done), width=24)
                if one.total is not None else Text("")
            )
            left = eta(one, task_rate) if record.status is TaskStatus.IN_PROGRESS else None
            table.add_row(
                record.name, _status_text(record), bar,
                f"{one.done}/{one.total}" if one.total is not None else str(one.done),
                f"{task_rate:.1f} rec/s" if record.status is TaskStatus.IN_PROGRESS else "",
                f"ETA {left}" if left else "",
                f"{record.failed} failed" if record.failed else "",
            )
        hidden = len(records) - len(shown)
        parts: list[RenderableType] = [head, table]
        if hidden:
            parts.append(Text(f"… and {hidden} more task{'s' if hidden > 1 else ''}", style="dim"))
        return Group(*parts)


def _status_text(record: TaskRecord) -> str:
    return {
        TaskStatus.PENDING: "pending", TaskStatus.IN_PROGRESS: "running", TaskStatus.COMPLETE: "done",
        TaskStatus.FAILED: "failed",
    }[record.status]


def _rows_to_show(records: list[TaskRecord]) -> list[TaskRecord]:
    """The tasks worth a row: those in progress, then recently failed, then the last finished ones."""
    if len(records) <= MAX_TASK_ROWS:
        return records
    active = [r for r in records if r.status is TaskStatus.IN_PROGRESS]
    failed = [r for r in records if r.status is TaskStatus.FAILED]
    done = [r for r in records if r.status is TaskStatus.COMPLETE]
    chosen = (active + failed[-2:] + done[-2:])[:MAX_TASK_ROWS]
    keep = {id(r) for r in chosen}
    return [r for r in records if id(r) in keep]


# -- choosing a mode ------------------------------------------------------------------------------------
def choose_mode(progress: bool | None) -> str:
    """``False`` → off; ``True`` or ``None`` → live when stderr is a capable terminal, log lines otherwise."""
    if progress is False:
        return "off"
    from rich.console import Console

    console = Console(stderr=True)
    return "live" if console.is_terminal and not console.is_dumb_terminal else "log"


def interval_from(options: RunOptions | None) -> float:
    if options is not None and options.progress_interval is not None:
        return options.progress_interval
    env = os.environ.get(INTERVAL_ENV)
    if env:
        try:
            value = float(env)
        except ValueError:
            value = 0.0
        if value > 0:
            return value
        log.warning("ignoring %s=%r: not a positive number of seconds", INTERVAL_ENV, env)
    return DEFAULT_INTERVAL


@contextmanager
def track(run: Run, options: RunOptions | None = None) -> Iterator[ProgressReporter]:
    """Report ``run``'s progress for the duration of the block, as ``options`` ask (``--progress``...)."""
    reporter = ProgressReporter(
        run, choose_mode(options.progress if options is not None else None), interval=interval_from(options)
    )
    reporter.start()
    try:
        yield reporter
    finally:
        reporter.stop()

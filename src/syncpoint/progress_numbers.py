"""The numbers behind progress: done and totals, rates, ETA, and the one-line summary of a run.

"Done" for a task is the larger of its record count and its item count (ok + failed); its total is
``TaskRecord.total`` (``task.set_total``). The run's total is known once every unfinished task has one;
until then the tasks whose totals are known still give a lower bound of the time left ("ETA ≥…").
Rates are measured over the last 30 seconds of this process, so a resumed run's earlier work does not
inflate them; a task's rate and the run's come from the same samples, so they agree.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from datetime import timedelta

from syncpoint.model import TaskRecord, TaskStatus

RATE_WINDOW = 30.0


def processed(record: TaskRecord) -> int:
    """How far a task is: items recorded (done or failed), or records its cursor reported, whichever is
    larger. The progress display, the dashboard and the metrics all count with this; their JSON calls it
    ``done``."""
    return max(record.records, record.ok + record.failed)


@dataclass(frozen=True)
class Totals:
    """One sample of a run (or a task): done, total if known, failures, task counts; ``known_done`` and
    ``known_total`` are the same numbers over the tasks whose totals are known (or that are complete)."""

    done: int
    total: int | None
    failed: int
    tasks_done: int
    tasks: int
    tasks_failed: int
    known_done: int = 0
    known_total: int = 0

    @classmethod
    def of(cls, records: list[TaskRecord]) -> Totals:
        total: int | None = 0
        known_done = known_total = 0
        for r in records:
            done = processed(r)
            if r.total is not None:
                known_done += done
                known_total += max(r.total, done)
            elif r.status is TaskStatus.COMPLETED:
                known_done += done
                known_total += done
            else:
                total = None
        return cls(
            done=sum(processed(r) for r in records),
            total=known_total if records and total is not None else None,
            failed=sum(r.failed for r in records),
            tasks_done=sum(r.status is TaskStatus.COMPLETED for r in records),
            tasks=len(records),
            tasks_failed=sum(r.status is TaskStatus.FAILED for r in records),
            known_done=known_done,
            known_total=known_total,
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


def lower_bound_eta(totals: Totals, known_rate: float) -> str | None:
    """While some totals are unknown: the time the tasks with known totals still need, at their rate."""
    if totals.total is not None or totals.known_total <= totals.known_done:
        return None
    left = totals.known_total - totals.known_done
    return "≥" + clock(left / known_rate) if known_rate > 0 else "?"


def summary_parts(
    label: str, totals: Totals, rate: float, *, elapsed: float | None = None, known_rate: float = 0.0,
) -> list[tuple[str, int]]:
    """The parts of the summary line with their rank (0: always shown; higher: dropped first when short)."""
    if totals.total is not None:
        pct = 100.0 * totals.done / totals.total if totals.total else 100.0
        parts = [(f"{label}: {totals.done}/{totals.total} ({pct:.1f}%)", 0)]
    elif totals.known_total:
        parts = [(f"{label}: {totals.done} done ({totals.known_done}/{totals.known_total} of known totals)", 0)]
    else:
        parts = [(f"{label}: {totals.done} done", 0)]
    parts.append((f"{rate:.1f} rec/s", 1))
    if elapsed is not None:
        parts.append((f"elapsed {clock(elapsed)}", 1))
    else:
        left = eta(totals, rate) or lower_bound_eta(totals, known_rate)
        if left is not None:
            parts.append((f"ETA {left}", 1))
    if totals.tasks > 1:
        parts.append((f"tasks {totals.tasks_done}/{totals.tasks}", 2))
    if totals.failed:
        parts.append((f"{totals.failed} failed", 1))
    if totals.tasks_failed:
        parts.append((f"{totals.tasks_failed} task{'s' if totals.tasks_failed > 1 else ''} failed", 1))
    return parts


def describe(label: str, totals: Totals, rate: float, *, elapsed: float | None = None,
             known_rate: float = 0.0) -> str:
    """``drucksachen: 750/1000 (75.0%) · 120.5 rec/s · ETA 0:02:04 · 5 failed`` (the log line's body)."""
    return " · ".join(text for text, _ in summary_parts(label, totals, rate, elapsed=elapsed, known_rate=known_rate))


def fit_parts(parts: list[tuple[str, int]], width: int, sep: str = " · ") -> str:
    """Join ``parts``, leaving out the highest-ranked (least important) ones, last first, until it fits."""
    kept = list(parts)
    while len(sep.join(t for t, _ in kept)) > width and any(rank > 0 for _, rank in kept):
        worst = max(range(len(kept)), key=lambda i: (kept[i][1], i))
        del kept[worst]
    return sep.join(t for t, _ in kept)


def describe_active(records: list[TaskRecord], limit: int = 8) -> str:
    """`` · load_zaken 750/1000 (75.0%)`` per task in progress with a known total, in a run of several tasks:
    the log line then says how far the current loader is, not only the whole run."""
    parts = []
    for r in records:
        if len(records) > 1 and r.status is TaskStatus.IN_PROGRESS and r.total:
            done = processed(r)
            parts.append(f"{r.name} {done}/{r.total} ({100.0 * done / r.total:.1f}%)")
    return "".join(f" · {part}" for part in parts[:limit])

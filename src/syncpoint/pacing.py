"""Pacing: when to commit, when to stop. Counters, budgets, the deadline and the stop flag, and nothing else.

A ``Pacer`` knows no store and no task. The run's progress path tells it what was recorded
(``note``); it answers whether the hot path must look up (a commit is due, a budget is used up, a signal
arrived), and why to stop. Everything here is plain arithmetic under one small lock, so it is unit-tested
without a store and is safe to call from any worker thread.

Budgets count work done *in this invocation*: items recorded (ledger, watermark) or records reported by
cursors (``done(page, records=N)``), whichever is larger, so a sync that does both is not counted twice and a
page-cursor sync is bounded too. The item budget is exact for items: an item is *admitted* before it is
recorded, and once ``max_items`` items are recorded the next one is refused, so no more than N are ever
recorded (the refused item is redone by the next run). Concurrent helpers hand out no more items than the
budget has room for (``budget_left``), so N workers never overshoot either.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from syncpoint.errors import EXIT_PARTIAL


@dataclass(frozen=True)
class SavePolicy:
    """When buffered progress is committed; always also on stop, budget, error and at the end.

    The defaults bound the redo window after a ``kill -9`` to one page, 10,000 items or 5 seconds of work,
    whichever comes first (plus, under concurrency, the items in flight). Time is the bound that matters for
    slow items (an API call each); the item count only caps fast ones, where a transaction per 10,000
    random IDs costs a third of one per 1,000 (every commit rewrites most leaf pages of the ledger's B-tree;
    see benchmarks/bench_sqlite.py).
    """

    every_items: int = 10_000
    every_pages: int = 1
    every_seconds: float = 5.0


@dataclass(frozen=True)
class Budget:
    """Limits of one invocation: ``max_items`` (items or records) and ``max_seconds`` (wall clock)."""

    max_items: int | None = None
    max_seconds: float | None = None


class Pacer:
    """Counters since the last commit and since the start, the budgets, and the stop request."""

    def __init__(self, policy: SavePolicy, budget: Budget, clock: Callable[[], float] | None = None) -> None:
        self.policy = policy
        self.budget = budget
        self._clock: Callable[[], float] = clock or time.monotonic
        self._mu = threading.Lock()
        self.items_since = self.pages_since = 0
        self.items_total = self.records_total = 0
        self.started = self.last_commit = self._clock()
        self._limit = budget.max_items if budget.max_items is not None else float("inf")
        self._stop: tuple[str, int] | None = None
        self._deadline = self._next_deadline()

    # -- recording ---------------------------------------------------------------------------------------
    def admit_item(self) -> bool:
        """May one more item be recorded? False once ``max_items`` are recorded (the item is not recorded)."""
        return self.items_total < self._limit and self.records_total < self._limit

    def note(self, items: int = 0, pages: int = 0, records: int = 0) -> bool:
        """Count recorded progress; True when the caller must look up (commit due, budget, stop, clock)."""
        with self._mu:
            self.items_since += items
            self.pages_since += pages
            self.items_total += items
            self.records_total += records
            return (
                self._stop is not None
                or self.items_total > self._limit
                or self.records_total > self._limit
                or self.items_since >= self.policy.every_items
                or self.pages_since >= self.policy.every_pages
                or self._clock() >= self._deadline
            )

    def used(self) -> int:
        """Work done in this invocation, as the item budget counts it."""
        return max(self.items_total, self.records_total)

    # -- commits -----------------------------------------------------------------------------------------
    def commit_due(self, dirty: bool) -> bool:
        p = self.policy
        return (
            self.items_since >= p.every_items
            or self.pages_since >= p.every_pages
            or (dirty and self._clock() - self.last_commit >= p.every_seconds)
        )

    def committed(self) -> None:
        with self._mu:
            self.items_since = self.pages_since = 0
            self.last_commit = self._clock()
            self._deadline = self._next_deadline()

    def _next_deadline(self) -> float:
        """The next instant the hot path must look up from its counters: a time commit or the time budget."""
        deadline = self.last_commit + self.policy.every_seconds
        if self.budget.max_seconds is not None:
            deadline = min(deadline, self.started + self.budget.max_seconds)
        return deadline

    # -- stopping ----------------------------------------------------------------------------------------
    def request_stop(self, reason: str, exit_code: int) -> None:
        """A signal (or the program) asks the run to stop; the first request wins. Takes no lock: a signal
        handler calls it, and the interrupted thread may hold any lock at that instant."""
        if self._stop is None:
            self._stop = (reason, exit_code)

    @property
    def stop_requested(self) -> tuple[str, int] | None:
        return self._stop

    def sleep(self, seconds: float) -> None:
        """Sleep, but wake within 50 ms of a stop request (then return early: the next safe point stops)."""
        deadline = time.monotonic() + max(0.0, seconds)
        while self._stop is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.05))

    def stop_reason(self, *, before_work: bool = True) -> tuple[str, int] | None:
        """Why to stop now, or None. ``before_work``: at a safe point before the next piece of work, where a
        budget that is exactly used up stops; right after recording, it stops only once exceeded (a batch
        that ends exactly with its last item still completes)."""
        if self._stop is not None:
            return self._stop
        limit = self.budget.max_items
        if limit is not None and (self.used() >= limit if before_work else self.used() > limit):
            return f"item budget of {limit} reached", EXIT_PARTIAL
        seconds = self.budget.max_seconds
        if seconds is not None and self._clock() - self.started >= seconds:
            return f"time budget of {seconds:g}s reached", EXIT_PARTIAL
        return None

    def budget_left(self) -> float:
        """Items that may still be recorded; ``inf`` without an item budget. A concurrent helper hands out no
        more items than this at once, so its workers never overshoot the budget."""
        return self._limit - self.used()

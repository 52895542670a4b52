"""``run.map``: a function over work with N threads, each outcome recorded as it finishes (out of order).

    summary = run.map(fetch_and_store, task.pending(ids), concurrency=16)

What it hands out (``syncpoint.sources``): ``task.pending(items)`` — items not yet recorded, each recorded
done or failed; ``run.pending_tasks(...)`` — tasks, each completed or failed like ``task.isolated()``;
``task.slices(...)`` — slices of an ordered range, merged into the task's interval set; or any iterable,
whose outcomes ``fn`` records itself (the first exception then stops the map and is raised, like
``Executor.map``).

Workers take the next unit themselves (no dispatcher between them and the work). Stopping: once a signal
arrives or a budget is used up, no new work is handed out (workers look before taking each unit); work in
flight may finish and be recorded within ``grace`` seconds (default ``DEFAULT_GRACE``); what is still running
then is abandoned — its outcome is never recorded, so it is redone on resume — and the run commits and stops
(``Stopped``: exit 130/143, or 2 for a budget). Under an item budget no more items are handed out than the
budget has room for. An exception in ``fn`` fails its item, slice or task (retryable unless declared
permanent, ``syncpoint.failures``), never the process — every ``Exception``, or those of ``errors=``. Any
other exception, or one met while handing out or recording the work (a store that cannot be read), ends the
map: the run is asked to stop, so nothing more is handed out and the other workers stop at their next safe
point; the unit is not recorded (a task stays in progress at its cursor, redone on resume); and the
exception is raised once the workers have stopped. Workers are daemon threads, so an abandoned one cannot
hold the process open.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from syncpoint.errors import EXIT_FAILED, Stopped, UsageError
from syncpoint.failures import describe
from syncpoint.sources import PendingItems, Slices
from syncpoint.task import ErrorTypes, Task

if TYPE_CHECKING:
    from syncpoint.pacing import Pacer

log = logging.getLogger("syncpoint.workers")


class MapHost(Protocol):
    """What a map needs of the run it works in: ``Run``, and ``WorkerRun`` (one task under a lease)."""

    @property
    def pacer(self) -> Pacer: ...

    @property
    def stopping(self) -> bool: ...

    def checkpoint(self) -> None: ...

DEFAULT_GRACE = 10.0
POLL = 0.1


@dataclass
class MapSummary:
    """What a map did: units that succeeded, failed (recorded), were abandoned at a stop; seconds taken."""

    done: int = 0
    failed: int = 0
    abandoned: int = 0
    elapsed: float = 0.0


class Outcomes(Protocol):
    """How a kind of work records its outcomes."""

    counts_items: bool  # each unit records one item: hand out no more than the item budget has room for
    commits: bool  # recording may commit and read the store (a task's completion): off the event loop
    raises: bool  # fn records its own outcomes; the first exception stops the map and is raised
    errors: ErrorTypes  # the exceptions from fn recorded as the unit's failure; any other ends the map

    def units(self) -> Iterator[Any]: ...

    def succeeded(self, unit: Any, result: object) -> None: ...

    def failed(self, unit: Any, error: BaseException) -> None: ...


class _Recorded:
    """Work that records itself (pending items, slices)."""

    commits = False
    raises = False

    def __init__(self, source: PendingItems[Any] | Slices, errors: ErrorTypes) -> None:
        self.source = source
        self.counts_items = isinstance(source, PendingItems)
        self.errors = errors

    def units(self) -> Iterator[Any]:
        return iter(self.source)

    def succeeded(self, unit: Any, result: object) -> None:
        self.source.succeeded(unit, result)

    def failed(self, unit: Any, error: BaseException) -> None:
        self.source.failed(unit, error)


class _Tasks:
    """Tasks: each started, then completed or failed (like ``task.isolated()``)."""

    counts_items = False
    commits = True
    raises = False

    def __init__(self, tasks: Iterable[Task], errors: ErrorTypes) -> None:
        self.tasks = tasks
        self.errors = errors

    def units(self) -> Iterator[Any]:
        for task in self.tasks:
            task.start()
            yield task

    def succeeded(self, unit: Any, result: object) -> None:
        unit.complete()

    def failed(self, unit: Any, error: BaseException) -> None:
        unit.fail(error)
        unit.run.log.warning("task %s failed: %s", unit.name, unit.record.error)


class _Plain:
    """Anything else: ``fn`` records what it wants; an exception stops the map and is raised."""

    counts_items = False
    commits = False
    raises = True
    errors: ErrorTypes = ()

    def __init__(self, items: Iterable[Any]) -> None:
        self.items = items

    def units(self) -> Iterator[Any]:
        return iter(self.items)

    def succeeded(self, unit: Any, result: object) -> None:
        pass

    def failed(self, unit: Any, error: BaseException) -> None:
        raise error


def outcomes_for(work: Iterable[Any], errors: ErrorTypes = Exception) -> Outcomes:
    if isinstance(work, (PendingItems, Slices)):
        return _Recorded(work, errors)
    if isinstance(work, (list, tuple)) and work and all(isinstance(t, Task) for t in work):
        return _Tasks(work, errors)
    return _Plain(work)


def is_unit_failure(kind: Outcomes, error: Exception) -> bool:
    """Is ``error`` from ``fn`` the unit's own failure, to record? (Else it ends the map.)"""
    return kind.raises or isinstance(error, kind.errors)


def end_map(run: MapHost, kind: Outcomes, error: BaseException) -> None:
    """An error that ends the map (not a unit's own, or met handing out or recording the work): the run is
    asked to stop, so the workers still running stop at their next safe point instead of finishing their unit.
    Work whose ``fn`` records its own outcomes keeps ``Executor.map``'s rule: what runs finishes."""
    if not kind.raises:
        run.pacer.request_stop(f"stopped by an error: {describe(error)}", EXIT_FAILED)


class _Pool:
    """The workers' shared state: the work, the in-flight count, and the gate that abandons them."""

    def __init__(self, units: Iterator[Any], concurrency: int) -> None:
        self.cond = threading.Condition()
        self.units = units
        self.units_lock = threading.Lock()  # a generator cannot be advanced by two threads at once
        self.in_flight = 0
        self.waiting_for_room = 0  # workers waiting for item-budget room (woken when an item lands)
        self.workers = concurrency
        self.recording = 0
        self.exhausted = False
        self.abandoned = False
        self.first_error: BaseException | None = None
        self.stop_seen = False


def run_map(
    run: MapHost, fn: Callable[[Any], object], work: Iterable[Any], *, concurrency: int = 8, grace: float | None = None,
    errors: ErrorTypes = Exception,
) -> MapSummary:
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise UsageError(f"concurrency must be a positive integer, got {concurrency!r}")
    grace = DEFAULT_GRACE if grace is None else grace
    kind = outcomes_for(work, errors)
    pool = _Pool(kind.units(), concurrency)
    summary = MapSummary()
    started = time.monotonic()
    for i in range(concurrency):
        threading.Thread(
            target=_worker, args=(run, fn, kind, pool, summary), name=f"syncpoint-map-{i}", daemon=True
        ).start()
    _wait(run, pool, grace, summary)
    summary.elapsed = time.monotonic() - started
    if pool.first_error is not None:
        raise pool.first_error
    if pool.stop_seen or run.stopping:
        run.checkpoint()  # commits and raises Stopped (a signal, or a budget now used up)
    return summary


def _must_stop(run: MapHost, pool: _Pool) -> bool:
    return pool.stop_seen or pool.first_error is not None or run.stopping


def _wait(run: MapHost, pool: _Pool, grace: float, summary: MapSummary) -> None:
    """Wait for the workers: until the work runs out; after a stop, within ``grace`` for the work in flight."""
    deadline: float | None = None
    with pool.cond:
        while pool.workers > 0:
            if deadline is None and _must_stop(run, pool):
                deadline = time.monotonic() + grace
                pool.cond.notify_all()  # workers waiting for budget room look up and leave
            left = POLL if deadline is None else min(POLL, deadline - time.monotonic())
            if left <= 0 and pool.in_flight > 0:
                pool.abandoned = True
                summary.abandoned = pool.in_flight
                while pool.recording > 0:  # an outcome being recorded right now finishes first
                    pool.cond.wait(POLL)
                log.warning("abandoned %d unit(s) still running after the %gs grace period; a resume redoes them",
                            summary.abandoned, grace)
                return
            pool.cond.wait(max(left, 0.001))


def _take(run: MapHost, kind: Outcomes, pool: _Pool) -> tuple[bool, Any]:
    """The next unit for a worker, or (False, None) when it should leave: the work ran out, or a stop."""
    with pool.cond:
        while True:
            if pool.exhausted or _must_stop(run, pool):
                return False, None
            # Under an item budget, hand out no more items than it has room for (counting those in flight).
            if not kind.counts_items or run.pacer.budget_left() - pool.in_flight > 0:
                break
            pool.waiting_for_room += 1
            pool.cond.wait(POLL)
            pool.waiting_for_room -= 1
        pool.in_flight += 1
    try:
        with pool.units_lock:
            return True, next(pool.units)
    except StopIteration:
        pass
    except BaseException as exc:  # the work itself failed (a lookup in the store): stop and raise it
        _ends(run, kind, pool, exc)
    with pool.cond:
        pool.exhausted = True
        pool.in_flight -= 1
        pool.cond.notify_all()
    return False, None


def _worker(run: MapHost, fn: Callable[[Any], object], kind: Outcomes, pool: _Pool, summary: MapSummary) -> None:
    try:
        while True:
            ok, unit = _take(run, kind, pool)
            if not ok:
                return
            try:
                _one(run, fn, kind, pool, summary, unit)
            finally:
                with pool.cond:
                    pool.in_flight -= 1
                    if pool.waiting_for_room:  # only they need to know at once; the waiter polls
                        pool.cond.notify_all()
    finally:
        with pool.cond:
            pool.workers -= 1
            pool.cond.notify_all()


def _one(
    run: MapHost, fn: Callable[[Any], object], kind: Outcomes, pool: _Pool, summary: MapSummary, unit: Any
) -> None:
    error: BaseException | None = None
    result: object = None
    try:
        result = fn(unit)
    except Stopped:
        _saw_stop(pool)
        return  # fn stopped at a safe point (run.checkpoint, a wait cut short): redone on resume
    except Exception as exc:
        if not is_unit_failure(kind, exc):
            _ends(run, kind, pool, exc)  # not recorded: a task stays in progress at its cursor
            return
        error = exc
    with pool.cond:
        if pool.abandoned:
            return
        pool.recording += 1
    try:
        if error is None:
            kind.succeeded(unit, result)
        else:
            kind.failed(unit, error)
        with pool.cond:
            if error is None:
                summary.done += 1
            else:
                summary.failed += 1
    except Stopped:
        _saw_stop(pool)
    except Exception as exc:
        _ends(run, kind, pool, exc)
    finally:
        with pool.cond:
            pool.recording -= 1
            if pool.abandoned:  # the waiter is waiting for the outcomes being recorded to land
                pool.cond.notify_all()


def _ends(run: MapHost, kind: Outcomes, pool: _Pool, error: BaseException) -> None:
    """The first error that ends the map is the one raised; the run is asked to stop (``end_map``)."""
    with pool.cond:
        if pool.first_error is None:
            pool.first_error = error
        pool.cond.notify_all()
    end_map(run, kind, error)


def _saw_stop(pool: _Pool) -> None:
    with pool.cond:
        pool.stop_seen = True
        pool.cond.notify_all()

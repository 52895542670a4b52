"""The asyncio front: the same run, with commits and store reads off the event loop.

    async with job.arun(options) as run:
        task = run.task("users")
        await run.map(fetch_and_store, task.pending(user_ids), concurrency=64)
    raise SystemExit(run.exit_code)

Progress calls (``task.item_done``, cursors' ``done``, ``state.set``) are plain method calls that only touch
memory: in an async run a commit that falls due is not done in the caller but handed to a committer task,
which runs it in a thread (``asyncio.to_thread``), so the loop never waits for the store. Opening and
closing the run, ledger lookups (``task.pending`` under ``map``), ``await run.checkpoint()`` and
``await run.commit()`` run off the loop as well. The rules of stopping, budgets and failures are the
threaded ``run.map``'s (``syncpoint.workers``); the grace period's leftovers are cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from syncpoint.errors import Stopped, UsageError
from syncpoint.sources import PendingItems
from syncpoint.task import ErrorTypes
from syncpoint.workers import DEFAULT_GRACE, POLL, MapSummary, Outcomes, end_map, is_unit_failure, outcomes_for

if TYPE_CHECKING:
    from syncpoint.model import RunRecord
    from syncpoint.run import Run
    from syncpoint.state import JobState
    from syncpoint.task import Task


class AsyncRun:
    """A run for ``async with``; ``sync`` is the underlying ``Run`` (its progress calls are safe here)."""

    def __init__(self, run: Run) -> None:
        self.sync = run
        self._wake: asyncio.Event | None = None
        self._committer: asyncio.Task[None] | None = None
        self._commit_error: BaseException | None = None

    # -- the run's face ------------------------------------------------------------------------------------
    @property
    def run_id(self) -> str:
        return self.sync.run_id

    @property
    def record(self) -> RunRecord:
        return self.sync.record

    @property
    def state(self) -> JobState:
        return self.sync.state

    @property
    def exit_code(self) -> int | None:
        return self.sync.exit_code

    @property
    def stopping(self) -> bool:
        return self.sync.stopping

    @property
    def resumed(self) -> bool:
        return self.sync.resumed

    def task(self, name: str) -> Task:
        return self.sync.task(name)

    def pending_tasks(self, names: Iterable[str] | None = None, **kw: Any) -> list[Task]:
        return self.sync.pending_tasks(names, **kw)

    # -- opening and closing -------------------------------------------------------------------------------
    async def __aenter__(self) -> AsyncRun:
        loop = asyncio.get_running_loop()
        signals = self.sync.watch_signals()
        signals.__enter__()  # on the loop's thread: the main thread, where handlers can be installed
        try:
            await asyncio.to_thread(self.sync.open)
        except BaseException:
            signals.__exit__(None, None, None)
            raise
        wake = self._wake = asyncio.Event()

        def defer() -> None:
            loop.call_soon_threadsafe(wake.set)

        self.sync.defer_commit = defer
        self._committer = asyncio.create_task(self._commit_when_due(wake))
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        if self._committer is not None:
            self._committer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._committer
        self.sync.defer_commit = None
        if isinstance(exc, asyncio.CancelledError):
            exc = KeyboardInterrupt()  # the loop was cancelled (Ctrl+C under asyncio.run): an interruption
        try:
            return await asyncio.to_thread(self.sync.close, exc)
        finally:
            self.sync.watch_signals().__exit__(None, None, None)

    async def _commit_when_due(self, wake: asyncio.Event) -> None:
        while True:
            await wake.wait()
            wake.clear()
            if self.sync.pacer.commit_due(self.sync.buffer.dirty):
                try:
                    await asyncio.to_thread(self.sync.commit)
                except Exception as exc:  # said again at the next safe point, and by the final commit
                    self._commit_error = exc
                    return

    # -- safe points -----------------------------------------------------------------------------------------
    async def checkpoint(self) -> None:
        """A safe point: commit (off the loop) if due; raise ``Stopped`` if a signal or budget asks."""
        if self._commit_error is not None:
            raise self._commit_error
        reason = self.sync.pacer.stop_reason()
        if reason is not None:
            raise Stopped(*reason)  # the final commit (off the loop) follows in __aexit__
        if self.sync.pacer.commit_due(self.sync.buffer.dirty):
            await asyncio.to_thread(self.sync.commit)

    async def commit(self) -> None:
        await asyncio.to_thread(self.sync.commit)

    async def sleep(self, seconds: float) -> None:
        """Sleep, but wake at once when a stop is requested (rate-limit waits)."""
        deadline = time.monotonic() + max(0.0, seconds)
        while self.sync.stop_requested is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            await asyncio.sleep(min(left, 0.05))

    async def map(
        self,
        fn: Callable[[Any], Awaitable[object]],
        work: Iterable[Any],
        *,
        concurrency: int = 64,
        grace: float | None = None,
        errors: ErrorTypes = Exception,
    ) -> MapSummary:
        """``await fn(unit)`` over ``work`` with ``concurrency`` coroutines; ``errors`` and the rest as
        ``Run.map`` (``syncpoint.workers``)."""
        return await _amap(self, fn, work, concurrency=concurrency, grace=DEFAULT_GRACE if grace is None else grace,
                           errors=errors)


async def _units(kind: Outcomes, work: Iterable[Any]) -> AsyncIterator[Any]:
    if isinstance(work, PendingItems):
        for chunk in work.batches():
            for item in await asyncio.to_thread(work.fresh, chunk):
                yield item
        return
    for unit in kind.units():
        yield unit


async def _amap(
    arun: AsyncRun, fn: Callable[[Any], Awaitable[object]], work: Iterable[Any], *, concurrency: int, grace: float,
    errors: ErrorTypes,
) -> MapSummary:
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise UsageError(f"concurrency must be a positive integer, got {concurrency!r}")
    run = arun.sync
    kind = outcomes_for(work, errors)
    summary = MapSummary()
    flags = {"stop": False}
    first_error: list[BaseException] = []
    started = time.monotonic()

    def ends(exc: BaseException) -> None:
        first_error.append(exc)
        end_map(run, kind, exc)

    async def one(unit: Any) -> None:
        try:
            result = await fn(unit)
            error: BaseException | None = None
        except Stopped:
            flags["stop"] = True
            return
        except Exception as exc:
            if not is_unit_failure(kind, exc):
                ends(exc)  # not recorded: a task stays in progress at its cursor
                return
            result, error = None, exc
        try:
            if kind.commits:  # a task's completion may commit and count in the store: off the loop
                if error is None:
                    await asyncio.to_thread(kind.succeeded, unit, result)
                else:
                    await asyncio.to_thread(kind.failed, unit, error)
            elif error is None:
                kind.succeeded(unit, result)
            else:
                kind.failed(unit, error)
            if error is None:
                summary.done += 1
            else:
                summary.failed += 1
        except Stopped:
            flags["stop"] = True
        except Exception as exc:
            ends(exc)

    def must_stop() -> bool:
        return flags["stop"] or bool(first_error) or run.stopping

    in_flight: set[asyncio.Task[None]] = set()
    units = _units(kind, work).__aiter__()
    exhausted = False
    while not exhausted and not must_stop():
        if len(in_flight) < concurrency and not (kind.counts_items and run.pacer.budget_left() - len(in_flight) <= 0):
            try:
                unit = await units.__anext__()
            except StopAsyncIteration:
                exhausted = True
                continue
            in_flight.add(asyncio.create_task(one(unit)))
            continue
        _, in_flight = await asyncio.wait(in_flight, timeout=POLL, return_when=asyncio.FIRST_COMPLETED)
    deadline = time.monotonic() + grace if must_stop() else None
    while in_flight:
        if deadline is None and must_stop():
            deadline = time.monotonic() + grace
        left = POLL if deadline is None else deadline - time.monotonic()
        if left <= 0:
            summary.abandoned = len(in_flight)
            for pending in in_flight:
                pending.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)
            run.log.warning("abandoned %d unit(s) still running after the %gs grace period; a resume redoes them",
                            summary.abandoned, grace)
            break
        _, in_flight = await asyncio.wait(in_flight, timeout=min(POLL, left))
    summary.elapsed = time.monotonic() - started
    if first_error:
        raise first_error[0]
    if flags["stop"] or run.stopping:
        await arun.checkpoint()
    return summary


"""A task inside a run: status, counters, cursor, and its item ledger.

Everything a task changes is buffered (``syncpoint.buffer``) and reaches the store with the run's next commit
(group commit). Membership questions ("was this ID processed?") are answered from the buffer first and then
from the store — a resume never loads the ledger, and it is never held whole in memory.

Every method is safe from any thread: counters and ledger entries change under the buffer's lock, and the
run's pacing decides, after each change, whether to commit or stop (in the calling thread).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn, Protocol, TypeVar

from syncpoint.buffer import ChangeBuffer
from syncpoint.codec import check_json
from syncpoint.failures import describe
from syncpoint.model import JSON, LedgerEntry, LedgerKind, TaskRecord, TaskStatus, utcnow
from syncpoint.names import check_item_id
from syncpoint.renamed import warn_renamed
from syncpoint.stores.base import ItemOutcome, Store

if TYPE_CHECKING:
    import logging

    from syncpoint.cursors import OffsetCursor, Order, PageCursor, TokenCursor, Watermark
    from syncpoint.intervals import Point
    from syncpoint.sources import PendingItems, Slices

T = TypeVar("T")

ErrorTypes = type[Exception] | tuple[type[Exception], ...]
"""The exceptions a task (``Task.isolated``) or a map (``Run.map``) takes as a unit's own failure."""


class TaskHost(Protocol):
    """What a task needs from its run (``syncpoint.run.Run`` provides it)."""

    @property
    def run_id(self) -> str: ...

    @property
    def store(self) -> Store: ...

    @property
    def buffer(self) -> ChangeBuffer: ...

    @property
    def log(self) -> logging.Logger: ...

    @property
    def retry_failed(self) -> bool: ...

    @property
    def tainted(self) -> bool: ...

    def after_progress(self, items: int, pages: int, records: int) -> None: ...

    def refuse_item(self) -> NoReturn: ...

    def admit_item(self) -> bool: ...

    def checkpoint(self) -> None: ...

    def commit(self) -> None: ...

    def is_retryable(self, error: BaseException) -> bool: ...


class Task:
    """One unit of progress. Use it as a context manager to mark it in progress, then complete or failed."""

    def __init__(self, run: TaskHost, record: TaskRecord) -> None:
        self.run = run
        self._buffer = run.buffer
        self._base = record
        # The per-item hot fields live here and are folded into the record only when it is read: a
        # frozen-dataclass copy per item would cost more than the ledger write itself.
        self._ok, self._failed = record.ok, record.failed
        self._pages, self._records, self._cursor = record.pages, record.records, record.cursor
        self._stale = False
        self._buffer.expect_failed(record.name, record.failed)  # a resumed task's failures, to retry exactly

    @property
    def record(self) -> TaskRecord:
        """The task as the store will see it at the next commit: its progress right now. Read-only: safe from
        another thread (progress displays read it)."""
        base = self._base
        if not self._stale:
            return base
        return dataclasses.replace(
            base, ok=self._ok, failed=self._failed, pages=self._pages, records=self._records,
            cursor=self._cursor, updated_at=utcnow(),
        )

    def fold(self) -> TaskRecord:
        """Fold the live counters into the stored record (the buffer calls this under its lock)."""
        self._base = self.record
        self._stale = False
        return self._base

    # -- plain properties ----------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._base.name

    @property
    def position(self) -> int:
        return self._base.position

    @property
    def status(self) -> TaskStatus:
        return self._base.status

    @property
    def cursor(self) -> JSON:
        return self._cursor

    @property
    def is_complete(self) -> bool:
        """The task's status is ``COMPLETED`` (not: "an item is done", which ``is_item_done`` asks)."""
        return self._base.status is TaskStatus.COMPLETED

    @property
    def done(self) -> bool:
        """Deprecated: ``is_complete`` ("done" is an item's or a page's word now)."""
        warn_renamed("Task.done", "Task.is_complete")
        return self.is_complete

    def _update(self, **changes: Any) -> None:
        with self._buffer.lock:
            self._base = dataclasses.replace(self.fold(), updated_at=utcnow(), **changes)
            self._buffer.touch(self)

    def _touch(self) -> None:
        """Lock held."""
        if not self._stale:
            self._stale = True
            self._buffer.touch(self)

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> None:
        if self._base.status is not TaskStatus.IN_PROGRESS:
            self._update(
                status=TaskStatus.IN_PROGRESS, error=None, retryable=False,
                started_at=self._base.started_at or utcnow(), completed_at=None,
            )

    def complete(self) -> None:
        """Mark the task complete — or failed, when items failed with retryable errors (a resume retries them)."""
        self.finish()
        self.run.after_progress(0, 0, 0)

    def finish(self) -> None:
        """Complete without the safe-point check (the run's end, where a late signal must not stop it)."""
        retryable = self._retryable_failures()
        if retryable:
            self._update(
                status=TaskStatus.FAILED, retryable=True, completed_at=utcnow(),
                error=f"{retryable} item(s) failed with retryable errors; --resume retries them",
            )
            return
        self._update(status=TaskStatus.COMPLETED, error=None, retryable=False, completed_at=utcnow())

    def _retryable_failures(self) -> int:
        """Items of this task whose last outcome is a retryable failure (committed first, then counted)."""
        if self._failed <= 0 or self.run.tainted:
            return 0
        self.run.commit()
        return sum(1 for _ in self.failed_items(retryable=True))

    def fail(self, error: BaseException | str, *, retryable: bool | None = None) -> None:
        """Mark the task failed; ``retryable`` defaults to the run's rule (``syncpoint.failures``)."""
        message, retryable = self._classify(error, retryable)
        self._update(status=TaskStatus.FAILED, error=message, retryable=retryable, completed_at=utcnow())
        self.run.commit()

    def _classify(self, error: BaseException | str, retryable: bool | None) -> tuple[str, bool]:
        if retryable is None:
            retryable = True if isinstance(error, str) else self.run.is_retryable(error)
        return describe(error), retryable

    def set_total(self, total: int | None) -> None:
        """Known number of items or records, for progress and ETA."""
        self._update(total=total)

    def __enter__(self) -> Task:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            self.complete()
        elif isinstance(exc, Exception):
            self.fail(exc)
        # Stopped, KeyboardInterrupt, SystemExit: the task stays in progress and resumes later.

    @contextmanager
    def isolated(self, errors: ErrorTypes = Exception) -> Iterator[Task]:
        """Like ``with task:``, but an exception of ``errors`` only fails this task and the run goes on.

        ``errors`` — an exception type or a tuple of them; every ``Exception`` by default — are the errors
        that are this task's own. Any other exception is raised, leaving the task in progress at its cursor
        (a resume continues it). Narrow it when some errors must end the run: with ``errors=HttpError`` a
        user whose token was revoked fails alone, while a full disk or a failed commit stops the run instead
        of failing every task in turn. (After a failed commit in a bound transaction every error is raised.)
        """
        self.start()
        try:
            yield self
        except errors as exc:
            if self.run.tainted:
                raise  # a bound transaction was rolled back: the run cannot go on, whatever the task
            self.fail(exc)
            self.run.log.warning("task %s failed: %s", self.name, self.record.error)
        else:
            self.complete()

    # -- cursors -------------------------------------------------------------------------------------
    def set_cursor(self, cursor: JSON, *, pages: int = 0, records: int = 0) -> None:
        """Record where to continue; counts ``pages``/``records`` toward progress and the save policy."""
        self._progress(cursor, pages=pages, records=records, items=0)

    def _progress(self, cursor: JSON, *, pages: int, records: int, items: int) -> None:
        check_json(cursor, "cursor")
        if self._base.status is not TaskStatus.IN_PROGRESS:
            self.start()
        with self._buffer.lock:
            self._cursor = cursor
            self._pages += pages
            self._records += records
            self._touch()
        self.run.after_progress(items, pages, records)

    def page_cursor(self, first: int = 1) -> PageCursor:
        from syncpoint.cursors import PageCursor

        return PageCursor(self, first)

    def token_cursor(self) -> TokenCursor:
        from syncpoint.cursors import TokenCursor

        return TokenCursor(self)

    def offset_cursor(self) -> OffsetCursor:
        from syncpoint.cursors import OffsetCursor

        return OffsetCursor(self)

    def watermark(self, order: Order | str = "newest_first") -> Watermark:
        """A watermark cursor for an API that serves records in ``order`` (``syncpoint.Order``, or its value)."""
        from syncpoint.cursors import Watermark

        return Watermark(self, order)

    def slices(self, start: Point, end: Point, step: Any) -> Slices:
        """``[start, end)`` cut into slices of ``step`` (an int, or a ``timedelta`` for dates and times) that
        may finish in any order; iterating gives the unfinished ones, in order (see ``syncpoint.sources``)."""
        from syncpoint.sources import Slices

        return Slices(self, start, end, step)

    # -- the watermark's boundary IDs (for ``syncpoint.cursors``) -------------------------------------
    def advance_watermark(self, cursor: JSON, item_id: str, *, new_boundary: bool) -> None:
        """Record one item at the watermark: ``item_id`` joins the boundary set (a fresh one if the value
        moved), the cursor is written, and one item and record are counted. A safe point."""
        if not self.run.admit_item():
            self.run.refuse_item()
        entry = LedgerEntry(self.run.run_id, self.name, item_id, True, kind=LedgerKind.BOUNDARY)
        with self._buffer.lock:
            if new_boundary:
                self._buffer.clear(self, LedgerKind.BOUNDARY)
            self._buffer.put(self, entry)
        self._progress(cursor, pages=0, records=1, items=1)

    def boundary_has(self, item_id: str) -> bool:
        """Was ``item_id`` recorded at the current watermark value?"""
        return item_id in self._buffer.lookup(self.run.store, self.name, [item_id], LedgerKind.BOUNDARY)

    # -- the item ledger -----------------------------------------------------------------------------
    def item_done(self, item_id: str | int) -> None:
        """Record one item as processed. A safe point: a pending stop takes effect after this.

        Under an item budget (``--max-items N``) no more than N items are recorded: the item after the Nth is
        not recorded, and the run stops (``Stopped``) — it is redone by the next run."""
        self._record(LedgerEntry(self.run.run_id, self._base.name, check_item_id(item_id), True))

    def item_failed(
        self, item_id: str | int, error: BaseException | str, *, retryable: bool | None = None
    ) -> None:
        """Record one item as failed, with its error. ``retryable`` defaults to the run's rule: an exception is
        retryable unless declared permanent (its ``retryable`` attribute, the job's ``permanent_errors``); a
        plain message is retryable unless ``retryable=False``. See ``syncpoint.failures``."""
        message, retryable = self._classify(error, retryable)
        self._record(LedgerEntry(self.run.run_id, self.name, check_item_id(item_id), False, message, retryable))

    def _record(self, entry: LedgerEntry) -> None:
        if not self.run.admit_item():
            self.run.refuse_item()
        if self._base.status is not TaskStatus.IN_PROGRESS:
            self.start()
        stored_failure = self._buffer.prepare(self.run.store, self.name, entry.item_id)
        with self._buffer.lock:
            before = self._buffer.put(self, entry, stored_failure=stored_failure)
            if before is True:
                self._ok -= 1
            elif before is False:
                self._failed -= 1
            if entry.ok:
                self._ok += 1
            else:
                self._failed += 1
            self._touch()
        self.run.after_progress(1, 0, 0)

    def is_item_done(self, item_id: str | int) -> bool:
        """Is ``item_id`` one to skip: recorded done (``item_done``), or failed for good (unless retrying
        failures)? For one ID; ask ``done_item_ids`` for a page of them."""
        item_id = check_item_id(item_id)
        return item_id in self.done_item_ids([item_id])

    def done_item_ids(self, item_ids: Sequence[str]) -> set[str]:
        """The IDs among ``item_ids`` to skip: recorded done, or failed for good (unless retrying failures).

        One store query for the whole page. Retryable failures are always offered again.
        """
        outcomes = self._buffer.lookup(self.run.store, self.name, item_ids)
        retry = self.run.retry_failed
        return {
            item_id for item_id, outcome in outcomes.items()
            if outcome is ItemOutcome.OK or (outcome is ItemOutcome.FAILED_PERMANENT and not retry)
        }

    def is_done(self, item_id: str | int) -> bool:
        """Deprecated: ``is_item_done``."""
        warn_renamed("Task.is_done", "Task.is_item_done")
        return self.is_item_done(item_id)

    def done_ids(self, item_ids: Sequence[str]) -> set[str]:
        """Deprecated: ``done_item_ids``."""
        warn_renamed("Task.done_ids", "Task.done_item_ids")
        return self.done_item_ids(item_ids)

    def pending(self, items: Iterable[T], key: Callable[[T], str] = str, *, batch: int = 500) -> PendingItems[T]:
        """The items still to process (``done_item_ids`` asked once per ``batch``), for ``run.map`` or a loop."""
        from syncpoint.sources import PendingItems

        return PendingItems(self, items, key, batch)

    def iterate(self, items: Iterable[T], key: Callable[[T], str] = str, *, batch: int = 500) -> Iterator[T]:
        """Yield the items still to process, asking the store once per ``batch``; a safe point before each."""
        for item in self.pending(items, key, batch=batch):
            self.run.checkpoint()
            yield item

    def failed_items(self, *, retryable: bool | None = None) -> Iterator[tuple[str, str | None, bool]]:
        """Committed failed items: (item ID, error, retryable), streamed; only one kind with ``retryable``."""
        for item in self.run.store.ledger_failed(self.run.run_id, self.name):
            if retryable is None or item.retryable is retryable:
                yield item.item_id, item.error, item.retryable

    def __repr__(self) -> str:
        return f"<Task {self.name!r} {self.status.value} cursor={self.cursor!r}>"


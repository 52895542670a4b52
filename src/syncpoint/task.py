"""A task inside a run: status, counters, cursor, and its item ledger.

Everything a task changes is buffered in memory and reaches the store with the run's next commit (group
commit). Membership questions ("was this ID processed?") are answered from the uncommitted buffer first
and then from the store — a resume never loads the ledger, and it is never held whole in memory.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from syncpoint.model import JSON, LedgerEntry, LedgerKind, TaskRecord, TaskStatus, utcnow
from syncpoint.stores.base import ItemOutcome

if TYPE_CHECKING:
    from syncpoint.cursors import OffsetCursor, PageCursor, TokenCursor, Watermark
    from syncpoint.run import Run

T = TypeVar("T")


class Task:
    """One unit of progress. Use it as a context manager to mark it in progress, then complete or failed."""

    def __init__(self, run: Run, record: TaskRecord) -> None:
        self.run = run
        self._base = record
        # The per-item hot fields live here and are folded into the record only when it is read: a
        # frozen-dataclass copy per item would cost more than the ledger write itself.
        self._ok, self._failed = record.ok, record.failed
        self._pages, self._records, self._cursor = record.pages, record.records, record.cursor
        self._stale = False
        self._pending: dict[LedgerKind, dict[str, LedgerEntry]] = {k: {} for k in LedgerKind}
        self._pending_items = self._pending[LedgerKind.ITEMS]
        self._cleared: set[LedgerKind] = set()
        self._retrying: set[str] = set()

    @property
    def record(self) -> TaskRecord:
        """The task as the store will see it at the next commit. Read-only: safe from another thread."""
        base = self._base
        if not self._stale:
            return base
        return dataclasses.replace(
            base, ok=self._ok, failed=self._failed, pages=self._pages, records=self._records,
            cursor=self._cursor, updated_at=utcnow(),
        )

    def snapshot(self) -> TaskRecord:
        """The task's progress right now (same as ``record``), for progress displays in other threads."""
        return self.record

    def _fold(self) -> TaskRecord:
        """Fold the hot counters into the stored base record (the run's own thread only)."""
        self._base = self.record
        self._stale = False
        return self._base

    # -- plain properties ----------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._base.name

    @property
    def status(self) -> TaskStatus:
        return self._base.status

    @property
    def cursor(self) -> JSON:
        return self._cursor

    @property
    def done(self) -> bool:
        return self._base.status is TaskStatus.COMPLETE

    def _update(self, **changes: Any) -> None:
        self._base = dataclasses.replace(self._fold(), updated_at=utcnow(), **changes)
        self.run._mark_dirty(self)

    def _touch(self) -> None:
        if not self._stale:
            self._stale = True
            self.run._dirty[self._base.name] = self

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> None:
        if self._base.status is not TaskStatus.IN_PROGRESS:
            self._update(
                status=TaskStatus.IN_PROGRESS, error=None, retryable=False,
                started_at=self._base.started_at or utcnow(), completed_at=None,
            )

    def complete(self) -> None:
        self._mark_complete()
        self.run._after_progress(0, 0)

    def _mark_complete(self) -> None:
        """Complete without the safe-point check: for the run's end, where a late signal must not stop it."""
        self._update(status=TaskStatus.COMPLETE, error=None, retryable=False, completed_at=utcnow())

    def fail(self, error: BaseException | str, *, retryable: bool | None = None) -> None:
        """Mark the task failed; ``retryable`` defaults to the exception's own ``retryable`` attribute."""
        if retryable is None:
            retryable = bool(getattr(error, "retryable", False))
        message = error if isinstance(error, str) else (str(error) or type(error).__name__)
        self._update(status=TaskStatus.FAILED, error=message, retryable=retryable, completed_at=utcnow())
        self.run._task_failed(self)

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
    def isolated(self) -> Iterator[Task]:
        """Like ``with task:``, but an exception only fails this task and the run goes on."""
        self.start()
        try:
            yield self
        except Exception as exc:
            if self.run._tainted:
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
        self.run._check_json(cursor, "cursor")
        if self._base.status is TaskStatus.PENDING:
            self.start()
        self._cursor = cursor
        self._pages += pages
        self._records += records
        self._touch()
        self.run._after_progress(items, pages, records)

    def page_cursor(self, first: int = 1) -> PageCursor:
        from syncpoint.cursors import PageCursor

        return PageCursor(self, first)

    def token_cursor(self) -> TokenCursor:
        from syncpoint.cursors import TokenCursor

        return TokenCursor(self)

    def offset_cursor(self) -> OffsetCursor:
        from syncpoint.cursors import OffsetCursor

        return OffsetCursor(self)

    def watermark(self, order: str = "newest_first") -> Watermark:
        from syncpoint.cursors import Watermark

        return Watermark(self, order)

    # -- the item ledger -----------------------------------------------------------------------------
    def item_done(self, item_id: str) -> None:
        """Record one item as processed. A safe point: a pending stop takes effect after this."""
        self._record_item(LedgerEntry(self.run.run_id, self._base.name, self.run._check_item_id(item_id), True))

    def item_failed(self, item_id: str, error: BaseException | str, *, retryable: bool | None = None) -> None:
        """Record one item as failed (kept, with its error, for ``--retry-failed`` and ``runs show``)."""
        if retryable is None:
            retryable = bool(getattr(error, "retryable", False))
        message = error if isinstance(error, str) else (str(error) or type(error).__name__)
        item_id = self.run._check_item_id(item_id)
        self._record_item(LedgerEntry(self.run.run_id, self.name, item_id, False, message, retryable))

    def _record_item(self, entry: LedgerEntry) -> None:
        if self._base.status is not TaskStatus.IN_PROGRESS:
            self.start()
        pending = self._pending_items
        previous = pending.get(entry.item_id)
        if previous is not None:
            if previous.ok:
                self._ok -= 1
            else:
                self._failed -= 1
        elif entry.item_id in self._retrying:
            self._failed -= 1
        if entry.ok:
            self._ok += 1
        else:
            self._failed += 1
        pending[entry.item_id] = entry
        self._touch()
        self.run._after_progress(1, 0)

    def is_done(self, item_id: str) -> bool:
        return item_id in self.done_ids([item_id])

    def done_ids(self, item_ids: Sequence[str]) -> set[str]:
        """The IDs among ``item_ids`` to skip: processed, or failed for good (unless retrying failures).

        One store query for the whole page. Retryable failures are always offered again.
        """
        outcomes = self._lookup(item_ids, LedgerKind.ITEMS)
        skip: set[str] = set()
        for item_id, outcome in outcomes.items():
            if outcome is ItemOutcome.OK or (
                outcome is ItemOutcome.FAILED_PERMANENT and not self.run.retry_failed
            ):
                skip.add(item_id)
            elif item_id not in self._pending[LedgerKind.ITEMS]:
                self._retrying.add(item_id)
        return skip

    def iterate(self, items: Iterable[T], key: Callable[[T], str] = str, *, batch: int = 500) -> Iterator[T]:
        """Yield the items still to process, asking the store once per ``batch``; a safe point before each."""
        chunk: list[T] = []
        for item in items:
            chunk.append(item)
            if len(chunk) >= batch:
                yield from self._fresh(chunk, key)
                chunk = []
        yield from self._fresh(chunk, key)

    def _fresh(self, chunk: list[T], key: Callable[[T], str]) -> Iterator[T]:
        if not chunk:
            return
        skip = self.done_ids([key(item) for item in chunk])
        for item in chunk:
            if key(item) not in skip:
                self.run.checkpoint()
                yield item

    def failed_items(self) -> Iterator[tuple[str, str | None, bool]]:
        """Committed failed items: (item ID, error, retryable), streamed."""
        for item in self.run.store.ledger_failed(self.run.run_id, self.name):
            yield item.item_id, item.error, item.retryable

    def _lookup(self, item_ids: Sequence[str], kind: LedgerKind) -> dict[str, ItemOutcome]:
        pending = self._pending[kind]
        found = {i: ItemOutcome.of(pending[i]) for i in item_ids if i in pending}
        rest = [i for i in item_ids if i not in found]
        if rest and kind not in self._cleared and self.run._persisted(self):
            found.update(self.run.store.ledger_lookup(self.run.run_id, self.name, rest, kind))
        return found

    # -- the run's commit protocol -------------------------------------------------------------------
    def _take_changes(self) -> tuple[list[LedgerKind], list[LedgerEntry]]:
        clears = sorted(self._cleared)
        entries = [e for kind in LedgerKind for e in self._pending[kind].values()]
        return clears, entries

    def _committed(self) -> None:
        for kind in LedgerKind:
            self._pending[kind] = {}
        self._pending_items = self._pending[LedgerKind.ITEMS]
        self._cleared.clear()
        self._retrying.clear()

    def _reset_boundary(self) -> None:
        self._pending[LedgerKind.BOUNDARY].clear()
        self._cleared.add(LedgerKind.BOUNDARY)

    def _add_boundary(self, item_id: str) -> None:
        self._pending[LedgerKind.BOUNDARY][item_id] = LedgerEntry(
            self.run.run_id, self.name, item_id, ok=True, kind=LedgerKind.BOUNDARY
        )

    def _boundary_has(self, item_id: str) -> bool:
        return item_id in self._lookup([item_id], LedgerKind.BOUNDARY)

    def __repr__(self) -> str:
        return f"<Task {self.name!r} {self.status.value} cursor={self.cursor!r}>"


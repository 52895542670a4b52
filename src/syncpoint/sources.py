"""Work a task hands out: the items still to process, and slices of an ordered range that may finish in any
order. Both iterate in a plain ``for`` loop and feed ``run.map`` (``syncpoint.workers``) and the asyncio
``map`` (``syncpoint.aio``), which record each unit's outcome as it finishes.

Slices: ``[start, end)`` (offsets, page numbers, dates, times) cut into slices of ``step``. Finished slices
are kept as an interval set (``syncpoint.intervals``) in the task's cursor, merged as neighbours finish, so
the cursor's size is bounded by the number of gaps — at most the slices in flight when the run stopped —
never by the number of slices. A resume hands out only the gaps. The contiguous finished prefix from
``start`` is the task's watermark (``Slices.watermark``, also in the cursor for ``jq``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from syncpoint.errors import UsageError
from syncpoint.intervals import IntervalSet, Point, slices

if TYPE_CHECKING:
    from syncpoint.task import Task

T = TypeVar("T")


class PendingItems(Generic[T]):
    """The items of ``items`` that the task has not recorded (done, or failed for good), asked in batches."""

    def __init__(self, task: Task, items: Iterable[T], key: Callable[[T], str], batch: int) -> None:
        if batch < 1:
            raise UsageError(f"batch must be at least 1, got {batch}")
        self.task = task
        self.items = items
        self.key = key
        self.batch = batch

    def batches(self) -> Iterator[list[T]]:
        """The raw items in batches (no store access)."""
        chunk: list[T] = []
        for item in self.items:
            chunk.append(item)
            if len(chunk) >= self.batch:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def fresh(self, chunk: list[T]) -> list[T]:
        """The items of ``chunk`` still to process: one ledger lookup (this does store I/O)."""
        skip = self.task.done_item_ids([self.key(item) for item in chunk])
        return [item for item in chunk if self.key(item) not in skip]

    def __iter__(self) -> Iterator[T]:
        for chunk in self.batches():
            yield from self.fresh(chunk)

    # -- outcomes, for the concurrent helpers -------------------------------------------------------------
    def succeeded(self, item: T, result: object) -> None:
        self.task.item_done(self.key(item))

    def failed(self, item: T, error: BaseException) -> None:
        self.task.item_failed(self.key(item), error)


@dataclass(frozen=True)
class Slice:
    """One slice ``[start, end)`` of an ordered range."""

    start: Point
    end: Point

    @property
    def key(self) -> str:
        """The slice's ID in the task's ledger, where a failed slice is recorded with its error."""
        return f"{_text(self.start)}/{_text(self.end)}"


class Slices:
    """``[start, end)`` in slices of ``step``; iterating gives the unfinished ones in order."""

    def __init__(self, task: Task, start: Point, end: Point, step: Any) -> None:
        self.task = task
        self.start, self.end, self.step = start, end, step
        self._mu = threading.Lock()
        self._done = _restore(task, start)
        self._failed_keys: set[str] | None = None
        slices(start, start, step)  # refuses mismatched kinds of start and step now, not at the first slice

    @property
    def watermark(self) -> Point:
        """The end of the contiguous finished prefix from ``start``: everything before it is done."""
        with self._mu:
            return self._done.prefix_end(self.start)

    @property
    def finished(self) -> IntervalSet:
        with self._mu:
            return IntervalSet(self._done.intervals())

    def __iter__(self) -> Iterator[Slice]:
        for a, b in slices(self.start, self.end, self.step):
            with self._mu:
                gaps = self._done.gaps(a, b)
            for gap_start, gap_end in gaps:
                yield Slice(gap_start, gap_end)

    def done(self, piece: Slice, records: int = 0) -> None:
        """``piece`` is written: merge it into the finished set and write the cursor. A safe point."""
        self._clear_failure(piece)
        with self._mu:
            self._done.add(piece.start, piece.end)
            cursor = {
                "type": "slices", "start": _text(self.start), "watermark": _text(self._done.prefix_end(self.start)),
                "done": self._done.to_json(),
            }
            self.task.set_cursor(cursor, pages=1, records=records)

    def _clear_failure(self, piece: Slice) -> None:
        """A slice that failed in an earlier attempt and now succeeded: its failure entry is replaced."""
        if self._failed_keys is None:
            self._failed_keys = (
                {item_id for item_id, _, _ in self.task.failed_items()} if self.task.record.failed else set()
            )
        if piece.key in self._failed_keys:
            self.task.item_done(piece.key)
            self._failed_keys.discard(piece.key)

    # -- outcomes, for the concurrent helpers -------------------------------------------------------------
    def succeeded(self, piece: Slice, result: object) -> None:
        self.done(piece, records=result if isinstance(result, int) and not isinstance(result, bool) else 0)

    def failed(self, piece: Slice, error: BaseException) -> None:
        self.task.item_failed(piece.key, error)


def _restore(task: Task, start: Point) -> IntervalSet:
    cursor = task.cursor
    if not isinstance(cursor, dict) or cursor.get("type") != "slices":
        if cursor is not None:
            raise UsageError(
                f"task {task.name!r} was checkpointed with a {_cursor_type(cursor)} cursor, not slices; "
                "start a new run to change how it is processed"
            )
        return IntervalSet()
    done = IntervalSet.from_json(cursor.get("done"), where=f"task {task.name!r}'s cursor")
    if done.kind is not None:
        _check_kind(done, start, task)
    return done


def _check_kind(done: IntervalSet, start: Point, task: Task) -> None:
    kinds = {int: "int", datetime: "datetime", date: "date"}
    mine = next(v for k, v in kinds.items() if isinstance(start, k))
    if done.kind != mine:
        raise UsageError(
            f"task {task.name!r} was checkpointed with {done.kind} slices, not {mine}; start a new run to change"
        )


def _cursor_type(cursor: object) -> str:
    return str(cursor.get("type")) if isinstance(cursor, dict) else type(cursor).__name__


def _text(point: Point) -> str:
    return point.isoformat() if isinstance(point, (datetime, date)) else str(point)

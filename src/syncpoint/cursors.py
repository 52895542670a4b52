"""Cursor helpers: where a task continues — a page number, an opaque token, an offset, or a watermark.

Each helper reads the task's JSON cursor and writes it back through ``Task.set_cursor``, so it commits with
the run's next group commit. Call ``done(...)`` *after* the page's records are written to the destination:
a crash before the commit re-does at most the pages since the last commit (the redo window).

The watermark is order-aware. Oldest-first iteration resumes at values >= the highest value reached;
newest-first resumes at values <= the lowest value reached. Either way the filter is inclusive, so the
records sharing exactly the boundary value come back; the watermark remembers which of those IDs it has
already seen — in the store's ledger rows (kind BOUNDARY), not in the cursor blob, so the cursor stays
small even when a million records share one timestamp — and ``skip`` tells the sync to pass over them.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from syncpoint.dates import parse_datetime
from syncpoint.errors import UsageError

if TYPE_CHECKING:
    from syncpoint.task import Task

NEWEST_FIRST = "newest_first"
"""The API serves the newest records first: a resume asks for records up to the value reached (inclusive)."""
OLDEST_FIRST = "oldest_first"
"""The API serves the oldest records first: a resume asks for records from the value reached (inclusive)."""
WatermarkValue = datetime | date | str | int | float


class PageCursor:
    """Page-number paging: ``page`` is the next page to fetch (``first`` on a fresh task)."""

    def __init__(self, task: Task, first: int = 1) -> None:
        self.task = task
        cursor = task.cursor if isinstance(task.cursor, dict) else {}
        self.page: int = int(cursor.get("page", first)) if cursor.get("type") == "page" else first

    def done(self, page: int, records: int = 0) -> None:
        """Page ``page`` is written; continue at ``page + 1``."""
        self.page = page + 1
        self.task.set_cursor({"type": "page", "page": self.page}, pages=1, records=records)


class TokenCursor:
    """Opaque next-page tokens (``cursor=…``, ``@odata.nextLink``, ``Link: rel=next`` URLs).

    ``token`` is the token of the next page to fetch: None on a fresh task (the first page is asked for
    without one) and None again once the last page is done. ``finished`` tells the two apart, so loop with
    ``while not cursor.finished:`` — a run stopped right after the last page's ``done(None)`` (a budget, a
    signal) must not start over from the first page when it resumes."""

    def __init__(self, task: Task) -> None:
        self.task = task
        cursor = task.cursor if isinstance(task.cursor, dict) else {}
        mine = cursor.get("type") == "token"
        self.token: str | None = cursor.get("token") if mine else None
        self.finished: bool = mine and self.token is None

    def done(self, next_token: str | None, records: int = 0) -> None:
        """The page is written; ``next_token`` (None after the last page) is where to continue."""
        self.token = next_token
        self.finished = next_token is None
        self.task.set_cursor({"type": "token", "token": next_token}, pages=1, records=records)


class OffsetCursor:
    """``offset``/``$skip`` paging: ``offset`` is the number of records already written."""

    def __init__(self, task: Task) -> None:
        self.task = task
        cursor = task.cursor if isinstance(task.cursor, dict) else {}
        self.offset: int = int(cursor.get("offset", 0)) if cursor.get("type") == "offset" else 0

    def done(self, records: int) -> None:
        self.offset += records
        self.task.set_cursor({"type": "offset", "offset": self.offset}, pages=1, records=records)


class Watermark:
    """A timestamp or ID watermark that knows its iteration order and the IDs at its boundary."""

    def __init__(self, task: Task, order: str = NEWEST_FIRST) -> None:
        if order not in (NEWEST_FIRST, OLDEST_FIRST):
            raise UsageError(f"watermark order must be {NEWEST_FIRST!r} or {OLDEST_FIRST!r}, not {order!r}")
        self.task = task
        self.order = order
        cursor = task.cursor if isinstance(task.cursor, dict) else {}
        self.value: WatermarkValue | None = None
        self._type: str | None = None
        if cursor.get("type") == "watermark":
            if cursor.get("order") != order:
                raise UsageError(
                    f"task {task.name!r} was checkpointed with order {cursor.get('order')!r}, not {order!r}; "
                    "start a new run to change the order"
                )
            self._type = cursor.get("value_type")
            self.value = _decode(cursor.get("value"), self._type)

    def bounds(
        self, start: WatermarkValue | None = None, end: WatermarkValue | None = None
    ) -> tuple[WatermarkValue | None, WatermarkValue | None]:
        """The (start, end) filter for the next request: explicit overrides win over the checkpoint."""
        if self.order == NEWEST_FIRST:
            return start, end if end is not None else self.value
        return start if start is not None else self.value, end

    def skip(self, item_id: str, value: WatermarkValue) -> bool:
        """True for a record that was processed before the interruption (it sits on the boundary)."""
        if self.value is None or _key(value) != _key(self.value):
            return False
        return self.task.boundary_has(str(item_id))

    def advance(self, item_id: str, value: WatermarkValue) -> None:
        """Record ``item_id`` (with watermark ``value``) as written. A safe point."""
        item_id = str(item_id)
        moved = self.value is None or self._beyond(value)
        if moved:
            self.value = value
            self._type = _type_name(value)
        # A value behind the watermark (out-of-order source) is already covered by the resume filter; one at
        # exactly the watermark joins its boundary set.
        cursor = {"type": "watermark", "order": self.order, "value": _encode(self.value), "value_type": self._type}
        if moved or (self.value is not None and _key(value) == _key(self.value)):
            self.task.advance_watermark(cursor, item_id, new_boundary=moved)
        else:
            self.task.set_cursor(cursor, records=1)

    def page_done(self) -> None:
        """Count one page (the save policy commits every page by default); call it after the page's rows.
        Its records were counted one by one by ``advance``."""
        self.task.set_cursor(self.task.cursor, pages=1)

    def _beyond(self, value: WatermarkValue) -> bool:
        assert self.value is not None
        if self.order == NEWEST_FIRST:
            return bool(_key(value) < _key(self.value))
        return bool(_key(value) > _key(self.value))


def _type_name(value: WatermarkValue) -> str:
    if isinstance(value, datetime):
        return "datetime"
    if isinstance(value, date):
        return "date"
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise UsageError(f"watermark values must be datetimes, dates, strings or numbers, not {value!r}")
    return type(value).__name__


def _encode(value: WatermarkValue | None) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return value


def _decode(raw: Any, value_type: str | None) -> WatermarkValue | None:
    if raw is None:
        return None
    if value_type == "datetime":
        return parse_datetime(str(raw), what="watermark")
    if value_type == "date":
        return date.fromisoformat(str(raw))
    if isinstance(raw, (str, int, float)) and not isinstance(raw, bool):
        return raw
    raise UsageError(f"checkpointed watermark value {raw!r} is not a datetime, date, string or number")


def _key(value: WatermarkValue) -> Any:
    """Comparable form: aware datetimes compare as instants whatever their UTC offset."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return parse_datetime(value.isoformat())
    return value

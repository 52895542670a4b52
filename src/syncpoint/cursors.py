"""Cursor helpers: where a task continues — a page number, an opaque token, an offset, or a watermark.

Each helper reads the task's JSON cursor and writes it back through ``Task.set_cursor``, so it commits with
the run's next group commit. Call ``done(...)`` *after* the page's records are written to the destination:
a crash before the commit re-does at most the pages since the last commit (the redo window).

The page, token and offset cursors carry extra fields for what else a resume must know in the same commit
as the position — the length of the file the pages went to (``syncpoint.JsonlSink``), a count, the newest
ID seen: ``cursor.done(token, extra={"bytes": size})``, and ``cursor.extra`` on resume. They are stored
beside the cursor's own fields in one flat JSON object, so a cursor written before they existed reads back
with none.

The watermark is order-aware. Oldest-first iteration resumes at values >= the highest value reached;
newest-first resumes at values <= the lowest value reached. Either way the filter is inclusive, so the
records sharing exactly the boundary value come back; the watermark remembers which of those IDs it has
already seen — in the store's ledger rows (kind BOUNDARY), not in the cursor blob, so the cursor stays
small even when a million records share one timestamp — and ``skip`` tells the sync to pass over them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from syncpoint.codec import check_json
from syncpoint.dates import parse_datetime
from syncpoint.errors import UsageError

if TYPE_CHECKING:
    from syncpoint.task import Task


class Order(str, enum.Enum):
    """The order in which an API serves records, which decides how a watermark resumes. An enum, like the
    statuses; a ``str`` enum, so the plain strings ``"newest_first"`` / ``"oldest_first"`` (what the cursor
    stores) are accepted and compare equal."""

    NEWEST_FIRST = "newest_first"
    """Newest records first: a resume asks for records up to the value reached (inclusive)."""
    OLDEST_FIRST = "oldest_first"
    """Oldest records first: a resume asks for records from the value reached (inclusive)."""


NEWEST_FIRST = Order.NEWEST_FIRST
"""``Order.NEWEST_FIRST`` (the same member), the short name ``task.watermark(syncpoint.NEWEST_FIRST)`` reads."""
OLDEST_FIRST = Order.OLDEST_FIRST
"""``Order.OLDEST_FIRST`` (the same member), the short name ``task.watermark(syncpoint.OLDEST_FIRST)`` reads."""
WatermarkValue = datetime | date | str | int | float


class _Positioned:
    """What the page, token and offset cursors share: their own field, and the caller's extra fields.

    The stored cursor is one flat JSON object: ``{"type": "token", "token": "abc", "bytes": 4096}`` — the
    kind, the cursor's own field, and the extra fields beside them. A cursor written before extra fields
    existed has none, and one written by hand in that shape (the kind, the field, more keys) reads back with
    those keys as its extra fields."""

    _kind = ""
    _field = ""

    def __init__(self, task: Task) -> None:
        self.task = task
        cursor = task.cursor if isinstance(task.cursor, dict) else {}
        self._stored: dict[str, Any] = cursor if cursor.get("type") == self._kind else {}
        #: The extra fields recorded with the cursor (``done(..., extra={...})``): what else a resume needs
        #: to know, such as the byte length of the file the pages went to. Empty on a fresh task.
        self.extra: dict[str, Any] = {k: v for k, v in self._stored.items() if k not in ("type", self._field)}

    def _record(self, value: Any, records: int, extra: Mapping[str, Any] | None) -> None:
        """Move to ``value`` and record it. Checked first: a refused ``done()`` (extra fields named like the
        cursor's own, or not JSON) leaves the cursor where it was, in memory as in the store."""
        fields = self.extra if extra is None else dict(extra)
        clash = sorted({"type", self._field} & set(fields))
        if clash:
            raise UsageError(f"a {self._kind} cursor's extra fields cannot be named {', '.join(clash)}: "
                             "the cursor's own fields")
        cursor = {"type": self._kind, self._field: value, **fields}
        check_json(cursor, "cursor")
        self._move(value)
        self.extra = fields
        self.task.set_cursor(cursor, pages=1, records=records)

    def _move(self, value: Any) -> None:
        """Take ``value`` as the position in memory (each cursor keeps it in its own attribute)."""
        raise NotImplementedError


class PageCursor(_Positioned):
    """Page-number paging: ``page`` is the next page to fetch (``first`` on a fresh task)."""

    _kind = _field = "page"

    def __init__(self, task: Task, first: int = 1) -> None:
        super().__init__(task)
        self.page: int = int(self._stored.get("page", first))

    def done(self, page: int, records: int = 0, *, extra: Mapping[str, Any] | None = None) -> None:
        """Page ``page`` is written; continue at ``page + 1``. ``extra``: fields to record with the cursor
        (they replace the previous ones; None keeps them), read back as ``extra`` on resume."""
        self._record(page + 1, records, extra)

    def _move(self, value: Any) -> None:
        self.page = value


class TokenCursor(_Positioned):
    """Opaque next-page tokens (``cursor=…``, ``@odata.nextLink``, ``Link: rel=next`` URLs).

    ``token`` is the token of the next page to fetch: None on a fresh task (the first page is asked for
    without one) and None again once the last page is done. ``finished`` tells the two apart, so loop with
    ``while not cursor.finished:`` — a run stopped right after the last page's ``done(None)`` (a budget, a
    signal) must not start over from the first page when it resumes."""

    _kind = _field = "token"

    def __init__(self, task: Task) -> None:
        super().__init__(task)
        self.token: str | None = self._stored.get("token")
        self.finished: bool = bool(self._stored) and self.token is None

    def done(self, next_token: str | None, records: int = 0, *, extra: Mapping[str, Any] | None = None) -> None:
        """The page is written; ``next_token`` (None after the last page) is where to continue. ``extra``:
        fields to record with the cursor (they replace the previous ones; None keeps them), read back as
        ``extra`` on resume."""
        self._record(next_token, records, extra)

    def _move(self, value: Any) -> None:
        self.token = value
        self.finished = value is None


class OffsetCursor(_Positioned):
    """``offset``/``$skip`` paging: ``offset`` is the number of records already written."""

    _kind = _field = "offset"

    def __init__(self, task: Task) -> None:
        super().__init__(task)
        self.offset: int = int(self._stored.get("offset", 0))

    def done(self, records: int, *, extra: Mapping[str, Any] | None = None) -> None:
        """``records`` more are written; continue after them. ``extra``: fields to record with the cursor (they
        replace the previous ones; None keeps them), read back as ``extra`` on resume."""
        self._record(self.offset + records, records, extra)

    def _move(self, value: Any) -> None:
        self.offset = value


class Watermark:
    """A timestamp or ID watermark that knows its iteration order and the IDs at its boundary."""

    def __init__(self, task: Task, order: Order | str = Order.NEWEST_FIRST) -> None:
        try:
            self.order = Order(order)
        except ValueError:
            raise UsageError(f"watermark order must be {NEWEST_FIRST.value!r} or {OLDEST_FIRST.value!r}, "
                             f"not {order!r}") from None
        self.task = task
        cursor = task.cursor if isinstance(task.cursor, dict) else {}
        self.value: WatermarkValue | None = None
        self._type: str | None = None
        if cursor.get("type") == "watermark":
            if cursor.get("order") != self.order.value:
                raise UsageError(
                    f"task {task.name!r} was checkpointed with order {cursor.get('order')!r}, "
                    f"not {self.order.value!r}; "
                    "start a new run to change the order"
                )
            self._type = cursor.get("value_type")
            self.value = _decode(cursor.get("value"), self._type)

    def bounds(
        self, start: WatermarkValue | None = None, end: WatermarkValue | None = None
    ) -> tuple[WatermarkValue | None, WatermarkValue | None]:
        """The (start, end) filter for the next request: explicit overrides win over the checkpoint."""
        if self.order is Order.NEWEST_FIRST:
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
        cursor = {"type": "watermark", "order": self.order.value, "value": _encode(self.value),
                  "value_type": self._type}
        if moved or (self.value is not None and _key(value) == _key(self.value)):
            self.task.advance_watermark(cursor, item_id, new_boundary=moved)
        else:
            self.task.set_cursor(cursor, records=1)

    def done(self) -> None:
        """The page is written: count it (the save policy commits every page by default). Called, as on every
        cursor, after the page's rows; its records were counted one by one by ``advance``."""
        self.task.set_cursor(self.task.cursor, pages=1)

    def _beyond(self, value: WatermarkValue) -> bool:
        assert self.value is not None
        if self.order is Order.NEWEST_FIRST:
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

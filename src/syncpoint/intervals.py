"""Which parts of an ordered range are finished, when N workers finish them out of order.

Offsets, page numbers and time windows complete out of order under concurrency, so "the highest finished
item" is not a safe resume point: something below it may still be missing. Recording the finished parts as
half-open intervals, merged as neighbours complete, keeps the record as small as the number of *gaps* (not
of items), lets a resume redo exactly the gaps, and gives the task's watermark as the end of the contiguous
finished run from the origin (the same idea as Airbyte's concurrent cursor ``merge_intervals``).

The set is persisted inside a task's JSON cursor, so ``to_json``/``from_json`` round-trip exactly, and a
damaged value read back raises ``CorruptState`` rather than being guessed at: guessing could skip work.

Internally every point is an ``int`` key (datetimes: microseconds since the epoch in UTC; dates: the
proleptic ordinal), so all the searching is plain integer bisection, exact, and independent of the kind.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from datetime import date, datetime, timedelta, timezone
from typing import Any, Literal, TypeAlias

from syncpoint.errors import CorruptState

Point: TypeAlias = int | datetime | date
"""One kind per set; datetimes must be timezone-aware and are normalised to UTC."""

Kind = Literal["int", "datetime", "date"]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)
_DAY = timedelta(days=1)
_MIN_US = (datetime.min.replace(tzinfo=timezone.utc) - _EPOCH) // _US
_MAX_US = (datetime.max.replace(tzinfo=timezone.utc) - _EPOCH) // _US


# -- points <-> integer keys -------------------------------------------------------------------------
def _kind_of(point: object) -> Kind:
    """The kind of one point; ``datetime`` before ``date`` (it is a subclass) and ``bool`` is not an int."""
    if isinstance(point, datetime):
        if point.tzinfo is None or point.utcoffset() is None:
            raise ValueError(
                f"datetime {point.isoformat()} is naive; interval points must be timezone-aware "
                "(e.g. datetime(..., tzinfo=timezone.utc))"
            )
        return "datetime"
    if isinstance(point, date):
        return "date"
    if isinstance(point, int) and not isinstance(point, bool):
        return "int"
    raise TypeError(f"interval points must be int, datetime or date, got {type(point).__name__} {point!r}")


def _key(point: object, kind: Kind) -> int:
    """The integer key of a point already known (by ``_kind_of``) to be of ``kind``."""
    if kind == "datetime":
        assert isinstance(point, datetime)
        key = (point - _EPOCH) // _US
        if not _MIN_US <= key <= _MAX_US:
            raise ValueError(f"datetime {point.isoformat()} is outside the range of UTC datetimes")
        return key
    if kind == "date":
        assert isinstance(point, date)
        return point.toordinal()
    assert isinstance(point, int)
    return point


def _point(key: int, kind: Kind) -> Point:
    if kind == "datetime":
        return _EPOCH + timedelta(microseconds=key)
    if kind == "date":
        return date.fromordinal(key)
    return key


def _pair_kind(start: Point, end: Point) -> Kind:
    kind = _kind_of(start)
    other = _kind_of(end)
    if other != kind:
        raise TypeError(f"start and end must be the same kind of point, got {kind} and {other}")
    return kind


# -- the set ------------------------------------------------------------------------------------------
class IntervalSet:
    """Half-open intervals [start, end) of one point kind, kept sorted, disjoint and merged (adjacent ones join).

    The kind is fixed by the first interval added; an empty set has none yet. Two parallel sorted lists of
    integer keys (starts, ends) make every lookup a bisection; ``add`` costs O(log n) to find its place plus
    a list splice, where n is the number of gaps, which concurrency keeps small.
    """

    __slots__ = ("_ends", "_kind", "_starts")

    def __init__(self, intervals: Iterable[tuple[Point, Point]] = ()) -> None:
        self._kind: Kind | None = None
        self._starts: list[int] = []
        self._ends: list[int] = []
        for start, end in intervals:
            self.add(start, end)

    # -- kind checks ------------------------------------------------------------------------------
    def _check(self, kind: Kind) -> None:
        if self._kind is not None and kind != self._kind:
            raise TypeError(f"cannot mix kinds in one IntervalSet: it holds {self._kind} points, got a {kind}")

    def _range_keys(self, start: Point, end: Point) -> tuple[Kind, int, int]:
        """Kind and keys of a query range, checked against the set's kind (if it has one yet)."""
        kind = _pair_kind(start, end)
        self._check(kind)
        return kind, _key(start, kind), _key(end, kind)

    # -- mutation ---------------------------------------------------------------------------------
    def add(self, start: Point, end: Point) -> None:
        """Record [start, end) as finished, merging it with every interval it overlaps or touches."""
        kind = _pair_kind(start, end)
        self._check(kind)
        s, e = _key(start, kind), _key(end, kind)
        if s >= e:
            raise ValueError(f"interval start must be before its end, got [{start!r}, {end!r})")
        self._kind = kind
        starts, ends = self._starts, self._ends
        i = bisect_left(ends, s)  # first interval ending at or after s: it overlaps or touches
        j = bisect_right(starts, e)  # intervals before j start at or before e
        if i < j:
            s = min(s, starts[i])
            e = max(e, ends[j - 1])
        starts[i:j] = [s]
        ends[i:j] = [e]

    # -- queries ----------------------------------------------------------------------------------
    def _index_at(self, key: int) -> int:
        """Index of the interval containing ``key``, or -1."""
        i = bisect_right(self._starts, key) - 1
        return i if i >= 0 and key < self._ends[i] else -1

    def __contains__(self, point: object) -> bool:
        """Is ``point`` inside a finished interval (a point of another kind is a TypeError, not False)."""
        kind = _kind_of(point)
        self._check(kind)
        return self._index_at(_key(point, kind)) >= 0

    def covers(self, start: Point, end: Point) -> bool:
        """Is all of [start, end) finished; an empty range (start >= end) is trivially covered."""
        _, s, e = self._range_keys(start, end)
        if s >= e:
            return True
        i = bisect_right(self._starts, s) - 1
        return i >= 0 and self._ends[i] >= e

    def gaps(self, start: Point, end: Point) -> list[tuple[Point, Point]]:
        """The unfinished parts of [start, end), in order: what a resume must still do."""
        kind, s, e = self._range_keys(start, end)
        out: list[tuple[int, int]] = []
        cursor = s
        starts, ends = self._starts, self._ends
        k = bisect_right(ends, s)  # first interval ending after s
        while k < len(starts) and starts[k] < e:
            if starts[k] > cursor:
                out.append((cursor, starts[k]))
            cursor = max(cursor, ends[k])
            k += 1
        if cursor < e:
            out.append((cursor, e))
        return [(_point(a, kind), _point(b, kind)) for a, b in out]

    def prefix_end(self, origin: Point) -> Point:
        """End of the contiguous finished run starting at ``origin`` (``origin`` itself if it is unfinished).

        This is the task's watermark: everything in [origin, prefix_end) is done, whatever finished beyond.
        """
        kind = _kind_of(origin)
        self._check(kind)
        key = _key(origin, kind)
        i = self._index_at(key)
        return _point(self._ends[i] if i >= 0 else key, kind)

    def intervals(self) -> list[tuple[Point, Point]]:
        """The disjoint intervals in order, as (start, end) points of the set's kind."""
        kind = self._kind
        if kind is None:
            return []
        return [(_point(s, kind), _point(e, kind)) for s, e in zip(self._starts, self._ends, strict=True)]

    @property
    def kind(self) -> Kind | None:
        """``"int"``, ``"datetime"`` or ``"date"``; None for an empty set whose kind is not fixed yet."""
        return self._kind

    def __len__(self) -> int:
        """The number of disjoint intervals (gaps + 1 at most), not the number of points."""
        return len(self._starts)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IntervalSet):
            return NotImplemented
        if not self._starts and not other._starts:
            return True  # empty sets are equal whatever kind they were declared with
        return self._kind == other._kind and self._starts == other._starts and self._ends == other._ends

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"IntervalSet({self.intervals()!r})"

    # -- JSON -------------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """``{"kind": ..., "intervals": [[a, b], ...]}``; dates and datetimes (UTC) as ISO 8601 strings.

        An empty set whose kind is not fixed writes ``"kind": null``.
        """
        kind = self._kind
        pairs: list[list[Any]] = []
        if kind is not None:
            for s, e in zip(self._starts, self._ends, strict=True):
                pairs.append([_to_json_point(s, kind), _to_json_point(e, kind)])
        return {"kind": kind, "intervals": pairs}

    @classmethod
    def from_json(cls, data: Any, *, where: str = "a task cursor") -> IntervalSet:
        """The set ``to_json`` wrote; anything else raises ``CorruptState`` naming ``where`` and the fault.

        The stored list must already be canonical (sorted, non-empty, disjoint, non-adjacent intervals):
        ``to_json`` never writes anything else, so any other shape means the cursor was damaged or edited.
        """

        def corrupt(detail: str) -> CorruptState:
            return CorruptState(
                f"checkpoint state in {where} is corrupt (interval set: {detail}); it was left untouched: "
                "move it aside to start over, or restore it from a backup"
            )

        if not isinstance(data, dict):
            raise corrupt(f"expected an object with 'kind' and 'intervals', got {_short(data)}")
        extra = sorted(str(k) for k in data if k not in ("kind", "intervals"))
        if extra or "kind" not in data or "intervals" not in data:
            raise corrupt(f"expected exactly the keys 'kind' and 'intervals', got {_short(sorted(map(str, data)))}")
        kind = data["kind"]
        pairs = data["intervals"]
        if kind not in (None, "int", "datetime", "date"):
            raise corrupt(f"unknown kind {_short(kind)}; expected 'int', 'datetime' or 'date'")
        if not isinstance(pairs, list):
            raise corrupt(f"'intervals' must be a list, got {_short(pairs)}")
        result = cls()
        if kind is None:
            if pairs:
                raise corrupt("kind is null but there are intervals")
            return result
        result._kind = kind
        previous_end: int | None = None
        for n, pair in enumerate(pairs):
            if not isinstance(pair, list) or len(pair) != 2:
                raise corrupt(f"intervals[{n}] must be a [start, end] pair, got {_short(pair)}")
            try:
                s, e = (_from_json_point(v, kind) for v in pair)
            except ValueError as exc:
                raise corrupt(f"intervals[{n}]: {exc}") from None
            if s >= e:
                raise corrupt(f"intervals[{n}] {_short(pair)} does not have its start before its end")
            if previous_end is not None and s <= previous_end:
                raise corrupt(f"intervals[{n}] {_short(pair)} overlaps, touches or precedes the interval before it")
            result._starts.append(s)
            result._ends.append(e)
            previous_end = e
        return result


def _to_json_point(key: int, kind: Kind) -> int | str:
    if kind == "int":
        return key
    point = _point(key, kind)
    assert isinstance(point, date)
    return point.isoformat()


def _from_json_point(value: object, kind: Kind) -> int:
    """The key of one stored point; ValueError with a short reason when it is not a valid point of ``kind``."""
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {_short(value)}")
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected an ISO 8601 {kind} string, got {_short(value)}")
    if kind == "date":
        if len(value) != 10:
            raise ValueError(f"expected a date as YYYY-MM-DD, got {_short(value)}")
        try:
            return date.fromisoformat(value).toordinal()
        except ValueError:
            raise ValueError(f"expected a date as YYYY-MM-DD, got {_short(value)}") from None
    text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"expected an ISO 8601 datetime, got {_short(value)}") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError(f"datetime {_short(value)} has no UTC offset")
    return _key(parsed, "datetime")


def _short(value: object, limit: int = 60) -> str:
    """A one-line, bounded repr for error messages (a damaged cursor may hold anything, of any size)."""
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- slicing a range ------------------------------------------------------------------------------------
def slices(start: Point, end: Point, step: int | timedelta) -> Iterator[tuple[Point, Point]]:
    """[start, end) cut into consecutive [a, b) of length ``step``, the last one shorter if need be.

    Int points take an int step; datetimes and dates take a timedelta step (dates: whole days). Datetimes
    come out in UTC. An empty or reversed range (start >= end) yields nothing, like ``range``.
    """
    kind = _pair_kind(start, end)
    if kind == "int":
        if isinstance(step, bool) or not isinstance(step, int):
            raise TypeError(f"int points need an int step, got {type(step).__name__} {step!r}")
        width = step
    else:
        if not isinstance(step, timedelta):
            raise TypeError(f"{kind} points need a timedelta step, got {type(step).__name__} {step!r}")
        if kind == "date":
            if False:
                raise ValueError(f"date points need a step of whole days, got {step}")
            width = step // _DAY
        else:
            width = step // _US
    if width <= 0:
        raise ValueError(f"step must be positive, got {step!r}")
    return _slices(_key(start, kind), _key(end, kind), width, kind)


def _slices(s: int, e: int, width: int, kind: Kind) -> Iterator[tuple[Point, Point]]:
    a = s
    while a < e:
        b = min(a + width, e)
        yield _point(a, kind), _point(b, kind)
        a = b

"""The interval set under out-of-order completion: merging, gaps, the watermark, slicing, its JSON form.

The property tests check the set against the obvious model (a Python set of finished points) over a small
universe, where every answer can be recomputed by brute force.
"""

from __future__ import annotations

import json
import random
from datetime import date, datetime, timedelta, timezone
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncpoint.errors import CorruptState
from syncpoint.intervals import IntervalSet, Point, slices

UTC = timezone.utc
PLUS5 = timezone(timedelta(hours=5))
T0 = datetime(2024, 3, 31, tzinfo=UTC)  # the EU's spring-forward day: no DST in UTC, every hour is 1 h


def through_text(s: IntervalSet) -> IntervalSet:
    """The round trip a task cursor really takes: to JSON text and back."""
    return IntervalSet.from_json(json.loads(json.dumps(s.to_json())))


# -- merging ------------------------------------------------------------------------------------------
def test_adjacent_intervals_join() -> None:
    s = IntervalSet([(0, 5)])
    s.add(5, 10)
    assert s.intervals() == [(0, 10)]
    s.add(-3, 0)
    assert s.intervals() == [(-3, 10)]
    assert len(s) == 1


def test_overlapping_and_contained_intervals_merge() -> None:
    s = IntervalSet([(0, 10)])
    s.add(8, 15)  # overlaps the end
    assert s.intervals() == [(0, 15)]
    s.add(3, 7)  # contained: no change
    assert s.intervals() == [(0, 15)]
    s.add(-5, 20)  # contains everything
    assert s.intervals() == [(-5, 20)]


def test_one_add_bridges_several_intervals() -> None:
    s = IntervalSet([(0, 1), (3, 4), (6, 7), (9, 10), (20, 21)])
    assert len(s) == 5
    s.add(1, 9)  # touches (0,1) and (9,10), swallows the two between
    assert s.intervals() == [(0, 10), (20, 21)]


def test_disjoint_intervals_stay_apart_in_order() -> None:
    s = IntervalSet()
    for a, b in [(20, 30), (0, 5), (10, 15)]:
        s.add(a, b)
    assert s.intervals() == [(0, 5), (10, 15), (20, 30)]


def test_out_of_order_completion_merges_to_one_interval() -> None:
    """N workers finish pages in any order; once all are done the record is a single interval."""
    pages = list(slices(0, 1000, 10))
    random.Random(7).shuffle(pages)
    s = IntervalSet()
    for a, b in pages:
        s.add(a, b)
    assert s.intervals() == [(0, 1000)]


def test_size_is_bounded_by_the_gaps_not_the_items() -> None:
    s = IntervalSet()
    for i in range(10_000):
        if i % 1000 != 999:  # ten items still missing
            s.add(i, i + 1)
    assert len(s) == 10
    assert s.gaps(0, 10_000) == [(i, i + 1) for i in range(999, 10_000, 1000)]


@pytest.mark.parametrize(("start", "end"), [(5, 5), (6, 5), (T0, T0), (date(2024, 1, 2), date(2024, 1, 1))])
def test_add_rejects_an_empty_or_reversed_interval(start: Point, end: Point) -> None:
    s = IntervalSet()
    with pytest.raises(ValueError, match="start must be before its end"):
        s.add(start, end)
    assert len(s) == 0


# -- queries ------------------------------------------------------------------------------------------
def test_membership_is_half_open() -> None:
    s = IntervalSet([(10, 20)])
    assert 10 in s
    assert 19 in s
    assert 20 not in s
    assert 9 not in s
    assert 0 not in IntervalSet()


def test_covers() -> None:
    s = IntervalSet([(0, 10), (20, 30)])
    assert s.covers(0, 10)
    assert s.covers(2, 5)
    assert not s.covers(5, 11)
    assert not s.covers(0, 30)  # the gap [10, 20) is not done
    assert not s.covers(-1, 5)
    assert s.covers(15, 15)  # an empty range is trivially covered
    assert not IntervalSet().covers(0, 1)


def test_gaps_are_the_unfinished_parts_in_order() -> None:
    s = IntervalSet([(10, 20), (30, 40)])
    assert s.gaps(0, 50) == [(0, 10), (20, 30), (40, 50)]
    assert s.gaps(15, 35) == [(20, 30)]
    assert s.gaps(10, 40) == [(20, 30)]
    assert s.gaps(12, 18) == []
    assert s.gaps(20, 30) == [(20, 30)]
    assert s.gaps(5, 5) == []
    assert IntervalSet().gaps(3, 7) == [(3, 7)]


def test_resume_redoes_only_the_gaps() -> None:
    """Half the windows finished before the crash; gaps() gives back exactly the other half."""
    windows = list(slices(T0, T0 + timedelta(days=1), timedelta(hours=1)))
    done = IntervalSet()
    for a, b in windows[::2]:
        done.add(a, b)
    assert done.gaps(T0, T0 + timedelta(days=1)) == windows[1::2]
    for a, b in windows[1::2]:
        done.add(a, b)
    assert done.covers(T0, T0 + timedelta(days=1))
    assert len(done) == 1


def test_prefix_end_is_the_watermark() -> None:
    s = IntervalSet([(0, 10), (10, 15), (20, 30)])
    assert s.prefix_end(0) == 15  # [0, 15) contiguous; [20, 30) finished too but beyond a gap
    assert s.prefix_end(5) == 15
    assert s.prefix_end(15) == 15  # origin unfinished: the watermark does not move
    assert s.prefix_end(-4) == -4
    assert s.prefix_end(25) == 30
    s.add(15, 20)
    assert s.prefix_end(0) == 30
    assert IntervalSet().prefix_end(7) == 7


def test_prefix_end_of_dates_and_datetimes() -> None:
    d = IntervalSet([(date(2024, 1, 1), date(2024, 1, 3))])
    assert d.prefix_end(date(2024, 1, 1)) == date(2024, 1, 3)
    t = IntervalSet([(T0, T0 + timedelta(hours=2))])
    assert t.prefix_end(T0) == T0 + timedelta(hours=2)
    assert t.prefix_end(T0 - timedelta(microseconds=1)) == T0 - timedelta(microseconds=1)


# -- kinds --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("first", "second"),
    [
        ((0, 1), (date(2024, 1, 1), date(2024, 1, 2))),
        ((date(2024, 1, 1), date(2024, 1, 2)), (T0, T0 + timedelta(hours=1))),  # datetime is a date subclass
        ((T0, T0 + timedelta(hours=1)), (0, 1)),
    ],
)
def test_mixing_kinds_raises_type_error(first: tuple[Point, Point], second: tuple[Point, Point]) -> None:
    s = IntervalSet([first])
    with pytest.raises(TypeError, match="cannot mix kinds"):
        s.add(*second)
    with pytest.raises(TypeError, match="cannot mix kinds"):
        _ = second[0] in s
    with pytest.raises(TypeError, match="cannot mix kinds"):
        s.gaps(*second)
    assert s.intervals() == [first]


def test_start_and_end_of_different_kinds_raise_type_error() -> None:
    with pytest.raises(TypeError, match="same kind"):
        IntervalSet().add(0, date(2024, 1, 1))


@pytest.mark.parametrize("bad", [True, 1.5, "3", None])
def test_non_points_raise_type_error(bad: Any) -> None:
    with pytest.raises(TypeError, match="must be int, datetime or date"):
        IntervalSet().add(bad, bad)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        IntervalSet().add(datetime(2024, 1, 1), datetime(2024, 1, 2))
    s = IntervalSet([(T0, T0 + timedelta(hours=1))])
    with pytest.raises(ValueError, match="timezone-aware"):
        _ = datetime(2024, 3, 31) in s
    with pytest.raises(ValueError, match="timezone-aware"):
        list(slices(datetime(2024, 1, 1), datetime(2024, 1, 2), timedelta(hours=1)))


def test_datetimes_are_normalised_to_utc() -> None:
    local = IntervalSet([(T0.astimezone(PLUS5), (T0 + timedelta(hours=1)).astimezone(PLUS5))])
    assert local == IntervalSet([(T0, T0 + timedelta(hours=1))])
    [(a, b)] = local.intervals()
    assert a.utcoffset() == timedelta(0) and b.utcoffset() == timedelta(0)  # type: ignore[union-attr]
    assert local.to_json() == {"kind": "datetime", "intervals": [["2024-03-31T00:00:00+00:00",
                                                                    "2024-03-31T01:00:00+00:00"]]}


def test_a_datetime_beyond_the_utc_range_is_refused() -> None:
    early = datetime(1, 1, 1, tzinfo=PLUS5)  # year 0 in UTC
    with pytest.raises(ValueError, match="outside the range"):
        IntervalSet().add(early, early + timedelta(days=1))


# -- slices -------------------------------------------------------------------------------------------
def test_slices_of_ints_with_a_short_last_slice() -> None:
    assert list(slices(0, 10, 3)) == [(0, 3), (3, 6), (6, 9), (9, 10)]
    assert list(slices(0, 9, 3)) == [(0, 3), (3, 6), (6, 9)]
    assert list(slices(5, 6, 100)) == [(5, 6)]


@pytest.mark.parametrize(("start", "end"), [(4, 4), (5, 4), (T0, T0), (date(2024, 1, 2), date(2024, 1, 1))])
def test_slices_of_an_empty_or_reversed_range_are_empty(start: Point, end: Point) -> None:
    step: int | timedelta = 1 if isinstance(start, int) else timedelta(days=1)
    assert list(slices(start, end, step)) == []


def test_slices_of_datetimes_across_a_dst_change_day_in_utc() -> None:
    got = list(slices(T0, T0 + timedelta(days=1), timedelta(hours=1)))
    assert len(got) == 24
    assert got[0] == (T0, T0 + timedelta(hours=1))
    assert all(b - a == timedelta(hours=1) for a, b in got)  # type: ignore[operator]
    assert all(got[i][1] == got[i + 1][0] for i in range(23))
    assert got[-1][1] == T0 + timedelta(days=1)


def test_slices_of_datetimes_last_short_and_utc() -> None:
    start = T0.astimezone(PLUS5)
    got = list(slices(start, start + timedelta(minutes=150), timedelta(hours=1)))
    assert got == [
        (T0, T0 + timedelta(hours=1)),
        (T0 + timedelta(hours=1), T0 + timedelta(hours=2)),
        (T0 + timedelta(hours=2), T0 + timedelta(minutes=150)),
    ]
    assert all(a.tzinfo is UTC for a, _ in got)  # type: ignore[union-attr]


def test_slices_of_dates() -> None:
    got = list(slices(date(2024, 2, 26), date(2024, 3, 5), timedelta(days=3)))
    assert got == [
        (date(2024, 2, 26), date(2024, 2, 29)),
        (date(2024, 2, 29), date(2024, 3, 3)),
        (date(2024, 3, 3), date(2024, 3, 5)),
    ]


@pytest.mark.parametrize(
    ("start", "end", "step", "error"),
    [
        (0, 10, 0, ValueError),
        (0, 10, -1, ValueError),
        (0, 10, timedelta(days=1), TypeError),
        (0, 10, True, TypeError),
        (T0, T0 + timedelta(days=1), 3600, TypeError),
        (T0, T0 + timedelta(days=1), timedelta(0), ValueError),
        (T0, T0 + timedelta(days=1), timedelta(hours=-1), ValueError),
        (date(2024, 1, 1), date(2024, 2, 1), timedelta(hours=12), ValueError),
        (date(2024, 1, 1), date(2024, 2, 1), 1, TypeError),
        (0, T0, 1, TypeError),
    ],
)
def test_slices_reject_a_bad_step(start: Point, end: Point, step: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        slices(start, end, step)  # raised on the call, not on first iteration


def test_slices_are_lazy() -> None:
    it = slices(0, 10**18, 1)
    assert next(it) == (0, 1)
    assert next(it) == (1, 2)


# -- JSON ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("s", "expected"),
    [
        (IntervalSet([(0, 5), (7, 9)]), {"kind": "int", "intervals": [[0, 5], [7, 9]]}),
        (
            IntervalSet([(date(2024, 1, 1), date(2024, 1, 8))]),
            {"kind": "date", "intervals": [["2024-01-01", "2024-01-08"]]},
        ),
        (
            IntervalSet([(T0 + timedelta(microseconds=1), T0 + timedelta(days=1))]),
            {"kind": "datetime", "intervals": [["2024-03-31T00:00:00.000001+00:00", "2024-04-01T00:00:00+00:00"]]},
        ),
        (IntervalSet(), {"kind": None, "intervals": []}),
        (IntervalSet([(-(2**70), 2**70)]), {"kind": "int", "intervals": [[-(2**70), 2**70]]}),
    ],
)
def test_json_round_trip_is_exact(s: IntervalSet, expected: dict[str, Any]) -> None:
    assert s.to_json() == expected
    back = through_text(s)
    assert back == s
    assert back.to_json() == expected
    assert back.intervals() == s.intervals()


def test_from_json_keeps_the_kind_of_an_empty_set() -> None:
    s = IntervalSet.from_json({"kind": "date", "intervals": []})
    assert s == IntervalSet() and s.kind == "date"
    with pytest.raises(TypeError, match="cannot mix kinds"):
        s.add(0, 1)


def test_from_json_accepts_a_z_suffix_and_other_offsets() -> None:
    data = {"kind": "datetime", "intervals": [["2024-03-31T00:00:00Z", "2024-03-31T06:00:00+05:00"]]}
    s = IntervalSet.from_json(data)
    assert s.intervals() == [(T0, T0 + timedelta(hours=1))]


CORRUPT: list[Any] = [
    None,
    [],
    "int",
    {"kind": "int"},
    {"intervals": []},
    {"kind": "int", "intervals": [], "extra": 1},
    {"kind": "float", "intervals": []},
    {"kind": "int", "intervals": {"0": 1}},
    {"kind": None, "intervals": [[0, 1]]},
    {"kind": "int", "intervals": [0, 1]},
    {"kind": "int", "intervals": [[0, 1, 2]]},
    {"kind": "int", "intervals": [[0]]},
    {"kind": "int", "intervals": [[0.0, 1.0]]},
    {"kind": "int", "intervals": [[False, True]]},
    {"kind": "int", "intervals": [["0", "1"]]},
    {"kind": "int", "intervals": [[5, 5]]},
    {"kind": "int", "intervals": [[6, 5]]},
    {"kind": "int", "intervals": [[0, 5], [5, 9]]},  # adjacent: to_json would have merged them
    {"kind": "int", "intervals": [[0, 5], [3, 9]]},  # overlapping
    {"kind": "int", "intervals": [[7, 9], [0, 5]]},  # unsorted
    {"kind": "date", "intervals": [["2024-01-01", "2024-02-30"]]},
    {"kind": "date", "intervals": [["2024-01-01T00:00:00", "2024-01-02T00:00:00"]]},
    {"kind": "date", "intervals": [[1, 2]]},
    {"kind": "datetime", "intervals": [["2024-01-01T00:00:00", "2024-01-02T00:00:00"]]},  # naive
    {"kind": "datetime", "intervals": [["2024-01-01", "2024-01-02"]]},  # a date is not a datetime
    {"kind": "datetime", "intervals": [["yesterday", "today"]]},
    {"kind": "datetime", "intervals": [["0001-01-01T00:00:00+05:00", "2024-01-01T00:00:00+00:00"]]},
    {"kind": "int", "intervals": [["x" * 10_000, 1]]},
]


@pytest.mark.parametrize("data", CORRUPT, ids=range(len(CORRUPT)))
def test_corrupt_json_raises_corrupt_state_in_one_line(data: Any) -> None:
    with pytest.raises(CorruptState) as info:
        IntervalSet.from_json(data, where="task 'pages' of job 'crawl'")
    message = str(info.value)
    assert "\n" not in message
    assert "interval set" in message
    assert "task 'pages' of job 'crawl'" in message
    assert len(message) < 400  # a damaged value of any size gives a bounded line


# -- model-based properties ---------------------------------------------------------------------------
N = 40  # the universe [0, N): small, so brute force over every point is cheap
ranges = st.tuples(st.integers(0, N - 1), st.integers(1, 12)).map(lambda t: (t[0], min(t[0] + t[1], N)))
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def runs(points: set[int], lo: int, hi: int) -> list[tuple[int, int]]:
    """Maximal runs [a, b) of consecutive members of ``points`` within [lo, hi)."""
    out: list[tuple[int, int]] = []
    p = lo
    while p < hi:
        if p in points:
            q = p
            while q < hi and q in points:
                q += 1
            out.append((p, q))
            p = q
        else:
            p += 1
    return out


def check_against_model(s: IntervalSet, model: set[int], to_point: Any) -> None:
    universe = set(range(N))
    keys = [(a, b) for a, b in runs(model, 0, N)]
    # the representation: exactly the model's maximal runs, hence sorted, disjoint and non-adjacent
    assert s.intervals() == [(to_point(a), to_point(b)) for a, b in keys]
    assert len(s) == len(keys)
    for (_, b1), (a2, _) in pairwise(keys):
        assert b1 < a2
    iv = s.intervals()
    for (a1, b1), (a2, b2) in pairwise(iv):
        assert a1 < b1 < a2 < b2  # type: ignore[operator]
    for p in range(-2, N + 2):
        assert (to_point(p) in s) == (p in model)
        end = p
        while end in model:
            end += 1
        assert s.prefix_end(to_point(p)) == to_point(end)
    assert s.gaps(to_point(0), to_point(N)) == [(to_point(a), to_point(b)) for a, b in runs(universe - model, 0, N)]
    for lo, hi in [(0, N), (3, 17), (N // 2, N + 5), (-5, 4)]:
        window = set(range(lo, hi))
        want = [(to_point(a), to_point(b)) for a, b in runs(window - model, lo, hi)]
        assert s.gaps(to_point(lo), to_point(hi)) == want
        assert s.covers(to_point(lo), to_point(hi)) == window.issubset(model)
    assert through_text(s) == s
    assert through_text(s).to_json() == s.to_json()


@PROPERTY
@given(st.lists(ranges, max_size=15))
def test_property_ints_against_a_set_model(adds: list[tuple[int, int]]) -> None:
    s = IntervalSet()
    model: set[int] = set()
    for a, b in adds:
        s.add(a, b)
        model.update(range(a, b))
    check_against_model(s, model, lambda p: p)


@PROPERTY
@given(st.lists(ranges, max_size=15), st.lists(st.booleans(), min_size=15, max_size=15))
def test_property_datetimes_against_a_set_model(adds: list[tuple[int, int]], local: list[bool]) -> None:
    """Points are T0 + k minutes; some are given at a +05:00 offset (the same instants), to test normalising."""

    def at(k: int) -> datetime:
        return T0 + timedelta(minutes=k)

    s = IntervalSet()
    model: set[int] = set()
    for (a, b), shifted in zip(adds, local[: len(adds)], strict=True):
        start, end = at(a), at(b)
        s.add(start.astimezone(PLUS5) if shifted else start, end)
        model.update(range(a, b))
    check_against_model(s, model, at)

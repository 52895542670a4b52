"""The store conformance suite: every operation of ``Store``, written once, run against every backend.

Each test states the behaviour every backend must show; the SQLite store was the reference while the others
were written, and the two bugs this suite found in it (a later ledger entry for the same ID in one change set
not winning, an empty item ID never listed) are fixed and covered here.
"""

from __future__ import annotations

import os
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from syncpoint.errors import InvalidName, JobLocked, StoreError
from syncpoint.model import (
    FailedItem,
    LedgerCounts,
    LedgerEntry,
    LedgerKind,
    PhaseRecord,
    ProgressSample,
    RunHead,
    RunRecord,
    RunStatus,
    StateEntry,
    TaskRecord,
    TaskStatus,
)
from syncpoint.stores.base import ChangeSet, ItemOutcome, LedgerClear, StateDelete, Store

T0 = datetime(2024, 3, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)
OK, RETRY, PERM = ItemOutcome.OK, ItemOutcome.FAILED_RETRYABLE, ItemOutcome.FAILED_PERMANENT
ITEMS, BOUNDARY = LedgerKind.ITEMS, LedgerKind.BOUNDARY


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def run(run_id: str = "r1", job: str = "job", *, started: float = 0, **kw: object) -> RunRecord:
    fields: dict[str, object] = {
        "status": RunStatus.RUNNING, "config": {"a": 1}, "config_digest": "d1",
        "started_at": at(started), "updated_at": at(started),
    }
    fields.update(kw)
    return RunRecord(run_id=run_id, job=job, **fields)  # type: ignore[arg-type]


def task(name: str = "t1", run_id: str = "r1", position: int = 0, **kw: object) -> TaskRecord:
    return TaskRecord(run_id=run_id, name=name, position=position, **kw)  # type: ignore[arg-type]


def ok(item: str, t: str = "t1", run_id: str = "r1", kind: LedgerKind = ITEMS) -> LedgerEntry:
    return LedgerEntry(run_id, t, item, True, kind=kind)


def fail(item: str, error: str = "boom", retryable: bool = True, t: str = "t1", run_id: str = "r1",
         kind: LedgerKind = ITEMS) -> LedgerEntry:
    return LedgerEntry(run_id, t, item, False, error, retryable, kind)


def with_task(store: Store, *names: str, run_id: str = "r1") -> None:
    store.apply(ChangeSet(runs=[run(run_id)], tasks=[task(n, run_id, i) for i, n in enumerate(names)]))


def snapshot(store: Store, jobs: tuple[str, ...] = ("job", "other")) -> dict[str, object]:
    """Everything the reads can see of the runs and tasks these tests use."""
    runs = store.list_runs()
    data: dict[str, object] = {"runs": runs, "jobs": store.list_jobs()}
    for r in runs:
        data[f"tasks:{r.run_id}"] = tasks = store.get_tasks(r.run_id)
        data[f"phases:{r.run_id}"] = store.get_phases(r.run_id)
        for t in tasks:
            for kind in LedgerKind:
                data[f"ledger:{r.run_id}:{t.name}:{kind}"] = list(store.iter_ledger(r.run_id, t.name, kind))
    for job in jobs:
        data[f"state:{job}"] = store.get_state(job)
    return data


# -- runs -----------------------------------------------------------------------------------------------
def test_run_round_trips_every_field(store_factory):
    store = store_factory()
    full = RunRecord(
        run_id="20240301-120000-abcdef", job="drucksachen", status=RunStatus.FAILED,
        config={"nested": {"list": [1, 2.5, None, True, "ü"]}, "empty": {}}, config_digest="sha256:x",
        started_at=at(0), updated_at=at(3.5), key="2024-03-01", params={"since": "2024-01-01", "n": 3},
        ended_at=at(7.000001), attempts=4, error="HTTP 503 from api: Service Unavailable", exit_code=1,
    )
    store.apply(ChangeSet(runs=[full]))
    got = store.get_run(full.run_id)
    assert got == full
    assert got is not None and got.started_at.utcoffset() == timedelta(0)
    assert store.get_run("absent") is None


def test_run_upsert_replaces_the_whole_record(store_factory):
    store = store_factory()
    store.apply(ChangeSet(runs=[run(key="k", error="x", exit_code=3)]))
    newer = run(status=RunStatus.COMPLETED, updated_at=at(9), ended_at=at(9), attempts=2)
    store.apply(ChangeSet(runs=[newer]))
    assert store.get_run("r1") == newer
    assert store.list_runs() == [newer]


def test_list_runs_newest_first_then_run_id(store_factory):
    store = store_factory()
    runs = [run("a", started=1), run("b", started=3), run("c", started=2), run("d", started=3),
            run("e", started=0.000001)]
    store.apply(ChangeSet(runs=runs))
    assert [r.run_id for r in store.list_runs()] == ["d", "b", "c", "a", "e"]


def test_list_runs_filters(store_factory):
    store = store_factory()
    runs = [
        run("a", "job", started=1, status=RunStatus.COMPLETED, key="k1"),
        run("b", "job", started=2, status=RunStatus.FAILED, key="k2"),
        run("c", "other", started=3, status=RunStatus.RUNNING, key="k1"),
        run("d", "job", started=4, status=RunStatus.INTERRUPTED),
        run("e", "job", started=5, status=RunStatus.PARTIAL, key="k1"),
    ]
    store.apply(ChangeSet(runs=runs))

    def ids(**kw: object) -> list[str]:
        return [r.run_id for r in store.list_runs(**kw)]  # type: ignore[arg-type]

    assert ids(job="job") == ["e", "d", "b", "a"]
    assert ids(job="nobody") == []
    assert ids(statuses=[RunStatus.COMPLETED, RunStatus.RUNNING]) == ["c", "a"]
    assert ids(statuses=[]) == []
    assert ids(key="k1") == ["e", "c", "a"]
    assert ids(limit=2) == ["e", "d"]
    assert ids(limit=0) == []
    assert ids(job="job", key="k1", statuses=[s for s in RunStatus if s.resumable]) == ["e"]
    assert ids(job="job", statuses=[RunStatus.FAILED, RunStatus.PARTIAL, RunStatus.COMPLETED], limit=2) == ["e", "b"]


# -- tasks and phases -----------------------------------------------------------------------------------
def test_tasks_round_trip_in_position_then_name_order(store_factory):
    store = store_factory()
    full = task(
        "org/repo:pulls", position=1, status=TaskStatus.FAILED,
        cursor={"kind": "watermark", "value": "2024-01-01T00:00:00Z", "ids": ["a", "b"], "order": "desc"},
        pages=3, records=250, ok=240, failed=10, total=1000, error="timeout", retryable=True,
        started_at=at(1), updated_at=at(2), completed_at=at(3),
    )
    others = [task("z", position=0), task("b", position=2, cursor=17), task("a", position=2, cursor="tok")]
    store.apply(ChangeSet(runs=[run()], tasks=[full, *others]))
    assert store.get_tasks("r1") == [others[0], full, others[2], others[1]]
    assert store.get_tasks("absent") == []


def test_task_upsert_replaces_fields_and_keeps_its_ledger(store_factory):
    store = store_factory()
    with_task(store, "t1")
    store.apply(ChangeSet(ledger=[ok("i1"), fail("i2")]))
    moved = task("t1", position=5, status=TaskStatus.COMPLETED, cursor={"page": 9}, pages=9)
    store.apply(ChangeSet(tasks=[moved]))
    assert store.get_tasks("r1") == [moved]
    assert store.ledger_lookup("r1", "t1", ["i1", "i2"]) == {"i1": OK, "i2": RETRY}


def test_phases_round_trip_in_position_order_and_upsert(store_factory):
    store = store_factory()
    phases = [PhaseRecord("r1", "pulls", 1), PhaseRecord("r1", "discovery", 0, at(1)), PhaseRecord("r1", "issues", 2)]
    store.apply(ChangeSet(runs=[run()], phases=phases))
    assert store.get_phases("r1") == [phases[1], phases[0], phases[2]]
    done = PhaseRecord("r1", "pulls", 1, at(5))
    store.apply(ChangeSet(phases=[done]))
    assert store.get_phases("r1") == [phases[1], done, phases[2]]
    assert store.get_phases("absent") == []


def test_run_deletes_remove_the_run_its_tasks_phases_and_ledger_only(store_factory):
    store = store_factory()
    for run_id in ("r1", "r2"):
        store.apply(ChangeSet(
            runs=[run(run_id)], tasks=[task("t1", run_id)], phases=[PhaseRecord(run_id, "p", 0)],
            ledger=[ok("i1", run_id=run_id), ok("b", run_id=run_id, kind=BOUNDARY)],
            state=[StateEntry("job", "since", 1, at(0))],
        ))
    store.apply(ChangeSet(run_deletes=["r1", "absent"]))
    assert store.get_run("r1") is None
    assert store.get_tasks("r1") == [] and store.get_phases("r1") == []
    assert store.ledger_lookup("r1", "t1", ["i1"]) == {}
    assert store.ledger_counts("r1", "t1") == LedgerCounts(0, 0)
    assert list(store.iter_ledger("r1", "t1", BOUNDARY)) == []
    assert store.get_run("r2") is not None and len(store.get_tasks("r2")) == 1
    assert store.ledger_lookup("r2", "t1", ["i1"]) == {"i1": OK}
    assert store.get_state("job") == [StateEntry("job", "since", 1, at(0))]


def test_run_delete_and_recreate_in_one_change_set_starts_empty(store_factory):
    store = store_factory()
    store.apply(ChangeSet(runs=[run()], tasks=[task("t1"), task("t2", position=1)], ledger=[ok("old")]))
    store.apply(ChangeSet(run_deletes=["r1"], runs=[run(attempts=2)], tasks=[task("t1")], ledger=[ok("new")]))
    assert store.get_run("r1") == run(attempts=2)
    assert store.get_tasks("r1") == [task("t1")]
    assert [e.item_id for e in store.iter_ledger("r1", "t1")] == ["new"]


# -- ledgers --------------------------------------------------------------------------------------------
def test_ledger_lookup_reports_known_ids_only(store_factory):
    store = store_factory()
    with_task(store, "t1", "t2")
    store.apply(ChangeSet(ledger=[ok("a"), fail("b", retryable=True), fail("c", retryable=False), ok("x", "t2")]))
    assert store.ledger_lookup("r1", "t1", ["a", "b", "c", "x", "zz", "a"]) == {"a": OK, "b": RETRY, "c": PERM}
    assert store.ledger_lookup("r1", "t1", []) == {}
    assert store.ledger_lookup("r1", "nope", ["a"]) == {}
    assert store.ledger_lookup("nope", "t1", ["a"]) == {}


def test_ledger_kinds_are_kept_apart(store_factory):
    store = store_factory()
    with_task(store, "t1")
    store.apply(ChangeSet(ledger=[ok("a"), fail("b", kind=BOUNDARY), ok("c", kind=BOUNDARY)]))
    assert store.ledger_lookup("r1", "t1", ["a", "b", "c"]) == {"a": OK}
    assert store.ledger_lookup("r1", "t1", ["a", "b", "c"], BOUNDARY) == {"b": RETRY, "c": OK}
    assert store.ledger_counts("r1", "t1") == LedgerCounts(1, 0)
    assert store.ledger_counts("r1", "t1", BOUNDARY) == LedgerCounts(1, 1)
    assert [e.item_id for e in store.iter_ledger("r1", "t1", BOUNDARY)] == ["b", "c"]
    assert list(store.ledger_failed("r1", "t1")) == []


def test_later_ledger_entry_replaces_earlier_across_change_sets(store_factory):
    store = store_factory()
    with_task(store, "t1")
    store.apply(ChangeSet(ledger=[fail("a", "first"), ok("b"), fail("c", "x", retryable=True)]))
    store.apply(ChangeSet(ledger=[ok("a"), fail("b", "now broken", retryable=False), fail("c", "y", retryable=False)]))
    assert store.ledger_lookup("r1", "t1", ["a", "b", "c"]) == {"a": OK, "b": PERM, "c": PERM}
    assert list(store.ledger_failed("r1", "t1")) == [FailedItem("b", "now broken", False), FailedItem("c", "y", False)]
    assert list(store.iter_ledger("r1", "t1")) == [ok("a"), fail("b", "now broken", False), fail("c", "y", False)]
    assert store.ledger_counts("r1", "t1") == LedgerCounts(1, 2)


def test_later_ledger_entry_replaces_earlier_within_one_change_set(store_factory):
    store = store_factory()
    with_task(store, "t1")
    store.apply(ChangeSet(ledger=[fail("a"), ok("a"), ok("b"), fail("b", "e2", False), fail("c", "x"),
                                  LedgerEntry("r1", "t1", "c", False, None, True)]))
    assert store.ledger_lookup("r1", "t1", ["a", "b", "c"]) == {"a": OK, "b": PERM, "c": RETRY}
    assert list(store.iter_ledger("r1", "t1")) == [
        ok("a"), fail("b", "e2", False), LedgerEntry("r1", "t1", "c", False, None, True)
    ]


def test_large_batches_mixing_new_and_known_ids(store_factory):
    store = store_factory()
    with_task(store, "t1")
    ids = [f"{n:05d}-{uuid.uuid4().hex[:6]}" for n in range(1500)]
    store.apply(ChangeSet(ledger=[fail(i, f"e{i}") for i in ids[:1000]]))
    for start in (500, 800, 1200):  # each batch half known, half new; the known ones flip to ok
        store.apply(ChangeSet(ledger=[ok(i) for i in ids[start : start + 300]]))
    store.apply(ChangeSet(ledger=[ok(i) for i in ids[1000:1100]] + [fail(i, "late") for i in ids[1100:1200]]))
    expected = {i: OK for i in ids[500:1100]} | {i: RETRY for i in ids[:500] + ids[1100:1200]}
    expected |= {i: OK for i in ids[1200:1500]}
    assert store.ledger_lookup("r1", "t1", ids) == expected
    assert store.ledger_counts("r1", "t1") == LedgerCounts(900, 600)
    assert [f.item_id for f in store.ledger_failed("r1", "t1")] == ids[:500] + ids[1100:1200]


def test_ledger_lookup_of_2000_ids_in_one_call(store_factory):
    store = store_factory()
    with_task(store, "t1")
    ids = [uuid.uuid4().hex for _ in range(3000)]
    store.apply(ChangeSet(ledger=[ok(i) for i in ids[:1000]] + [fail(i, retryable=False) for i in ids[1000:1500]]))
    asked = ids[500:2500]
    got = store.ledger_lookup("r1", "t1", asked)
    assert got == {**{i: OK for i in ids[500:1000]}, **{i: PERM for i in ids[1000:1500]}}


def test_ledger_clears_forget_one_kind_of_one_task(store_factory):
    store = store_factory()
    with_task(store, "t1", "t2")
    store.apply(ChangeSet(ledger=[ok("a"), ok("b", kind=BOUNDARY), ok("c", "t2", kind=BOUNDARY)]))
    store.apply(ChangeSet(ledger_clears=[LedgerClear("r1", "t1", BOUNDARY)], ledger=[ok("d", kind=BOUNDARY)]))
    assert [e.item_id for e in store.iter_ledger("r1", "t1", BOUNDARY)] == ["d"]
    assert [e.item_id for e in store.iter_ledger("r1", "t1")] == ["a"]
    assert [e.item_id for e in store.iter_ledger("r1", "t2", BOUNDARY)] == ["c"]


def test_ledger_counts(store_factory):
    store = store_factory()
    with_task(store, "t1")
    assert store.ledger_counts("r1", "t1") == LedgerCounts(0, 0)
    assert store.ledger_counts("r1", "nope") == LedgerCounts(0, 0)
    failed = [fail(f"f{i}", retryable=i % 2 == 0) for i in range(3)]
    store.apply(ChangeSet(ledger=[ok(f"o{i}") for i in range(7)] + failed))
    counts = store.ledger_counts("r1", "t1")
    assert counts == LedgerCounts(7, 3) and counts.total == 10


def test_ledger_failed_in_item_id_order_with_error_and_retryable(store_factory):
    store = store_factory()
    with_task(store, "t1")
    store.apply(ChangeSet(ledger=[fail("m", "e-m", False), ok("a"), fail("b", "e-b", True), fail("Z", "e-Z"),
                                  LedgerEntry("r1", "t1", "n", False, None, False), fail("x", kind=BOUNDARY)]))
    assert list(store.ledger_failed("r1", "t1")) == [
        FailedItem("Z", "e-Z", True), FailedItem("b", "e-b", True), FailedItem("m", "e-m", False),
        FailedItem("n", None, False),
    ]
    assert list(store.ledger_failed("r1", "nope")) == []


def test_iter_ledger_streams_over_5000_entries_in_item_id_order(store_factory):
    store = store_factory()
    with_task(store, "t1")
    ids = [uuid.uuid4().hex for _ in range(12_001)] + ["É-unicode", "a b", "0", "~"]
    for start in range(0, len(ids), 4000):
        chunk = enumerate(ids[start : start + 4000], start)
        store.apply(ChangeSet(ledger=[ok(i) if n % 3 else fail(i, f"e{n}") for n, i in chunk]))
    stream = store.iter_ledger("r1", "t1")
    assert iter(stream) is stream  # an iterator, not a list
    entries = list(stream)
    assert [e.item_id for e in entries] == sorted(ids)
    assert sum(not e.ok for e in entries) == len([n for n in range(len(ids)) if n % 3 == 0])
    assert all(e.run_id == "r1" and e.task == "t1" and e.kind == ITEMS for e in entries)
    assert list(store.iter_ledger("r1", "nope")) == []


def test_ledger_orders_ids_by_code_point(store_factory):
    store = store_factory()
    with_task(store, "t1")
    ids = ["b", "B", "a", "_", "ä", "é", "Z", "10", "9", "a-", "a_", "😀", "日本"]
    store.apply(ChangeSet(ledger=[ok(i) for i in ids]))
    assert [e.item_id for e in store.iter_ledger("r1", "t1")] == sorted(ids)


def test_empty_item_id_is_listed(store_factory):
    store = store_factory()
    with_task(store, "t1")
    store.apply(ChangeSet(ledger=[ok(""), fail("a")]))
    assert [e.item_id for e in store.iter_ledger("r1", "t1")] == ["", "a"]


def test_ledger_for_an_unknown_task_is_an_error(store_factory):
    store = store_factory()
    with_task(store, "t1")
    with pytest.raises(StoreError, match="unknown task"):
        store.apply(ChangeSet(ledger=[ok("a", "nope")]))
    with pytest.raises(StoreError, match="unknown task"):
        store.apply(ChangeSet(ledger_clears=[LedgerClear("r1", "nope", ITEMS)]))
    assert store.ledger_counts("r1", "t1") == LedgerCounts(0, 0)


def test_a_task_created_in_the_same_change_set_takes_ledger_entries(store_factory):
    store = store_factory()
    store.apply(ChangeSet(runs=[run()], tasks=[task("new")], ledger=[ok("a", "new")]))
    assert store.ledger_lookup("r1", "new", ["a"]) == {"a": OK}


# -- state and jobs -------------------------------------------------------------------------------------
def test_state_set_replace_and_delete(store_factory):
    store = store_factory()
    values = {"since": "2024-01-01", "n": 3, "list": [1, {"x": None}], "none": None, "float": 0.1, "t": True}
    store.apply(ChangeSet(state=[StateEntry("job", k, v, at(1)) for k, v in values.items()]
                          + [StateEntry("other", "since", 1, at(2))]))
    assert store.get_state("job") == [StateEntry("job", k, values[k], at(1)) for k in sorted(values)]
    store.apply(ChangeSet(state=[StateEntry("job", "n", 4, at(3))]))
    assert StateEntry("job", "n", 4, at(3)) in store.get_state("job")
    store.apply(ChangeSet(state_deletes=[StateDelete("job", "n"), StateDelete("job", "absent")]))
    assert [s.key for s in store.get_state("job")] == ["float", "list", "none", "since", "t"]
    store.apply(ChangeSet(state_deletes=[StateDelete("job")]))
    assert store.get_state("job") == []
    assert store.get_state("other") == [StateEntry("other", "since", 1, at(2))]
    assert store.get_state("nobody") == []


def test_state_delete_then_set_in_one_change_set(store_factory):
    store = store_factory()
    store.apply(ChangeSet(state=[StateEntry("job", "a", 1, at(0)), StateEntry("job", "b", 2, at(0))]))
    store.apply(ChangeSet(state_deletes=[StateDelete("job")], state=[StateEntry("job", "b", 3, at(1))]))
    assert store.get_state("job") == [StateEntry("job", "b", 3, at(1))]


def test_list_jobs_from_runs_and_state(store_factory):
    store = store_factory()
    assert store.list_jobs() == []
    store.apply(ChangeSet(runs=[run("r1", "zeta"), run("r2", "alpha"), run("r3", "zeta")],
                          state=[StateEntry("mid", "k", 1, at(0)), StateEntry("alpha", "k", 1, at(0))]))
    assert store.list_jobs() == ["alpha", "mid", "zeta"]
    store.apply(ChangeSet(run_deletes=["r2"], state_deletes=[StateDelete("mid")]))
    assert store.list_jobs() == ["alpha", "zeta"]


# -- atomicity, idempotence, durability -----------------------------------------------------------------
def test_a_failing_apply_leaves_nothing_of_its_change_set(store_factory):
    store = store_factory()
    store.apply(ChangeSet(runs=[run(), run("r2", started=1)], tasks=[task("t1"), task("t1", "r2")],
                          phases=[PhaseRecord("r1", "p", 0)], ledger=[ok("a"), ok("b", kind=BOUNDARY)],
                          state=[StateEntry("job", "k", 1, at(0))]))
    before = snapshot(store)
    bad = ChangeSet(
        run_deletes=["r2"], runs=[run(status=RunStatus.FAILED), run("r3", "other")],
        tasks=[task("t1", cursor=5), task("t9")], phases=[PhaseRecord("r1", "p", 0, at(1))],
        ledger_clears=[LedgerClear("r1", "t1", BOUNDARY)],
        ledger=[*(ok(f"n{i}") for i in range(300)), fail("a"), ok("x", "t9"), ok("oops", "no-such-task")],
        state_deletes=[StateDelete("job")], state=[StateEntry("other", "k", 2, at(1))],
    )
    with pytest.raises(StoreError):
        store.apply(bad)
    assert snapshot(store) == before
    store.close()
    assert snapshot(store_factory()) == before


def test_applying_a_change_set_twice_gives_the_same_state(store_factory):
    store = store_factory()
    store.apply(ChangeSet(runs=[run()], tasks=[task("t1")], ledger=[fail(f"i{i}") for i in range(100)]))
    changes = ChangeSet(
        run_deletes=["r0"], runs=[run(attempts=2)], tasks=[task("t1", pages=3), task("t2", position=1)],
        phases=[PhaseRecord("r1", "p", 0, at(1))], ledger_clears=[LedgerClear("r1", "t1", BOUNDARY)],
        ledger=[ok(f"i{i}") for i in range(150)] + [ok("b", "t2", kind=BOUNDARY)],
        state_deletes=[StateDelete("job", "gone")], state=[StateEntry("job", "k", [1], at(2))],
    )
    store.apply(changes)
    once = snapshot(store)
    store.apply(changes)
    assert snapshot(store) == once


def test_empty_change_set_is_a_no_op(store_factory):
    store = store_factory()
    store.apply(ChangeSet())
    assert store.list_runs() == [] and store.list_jobs() == []


def test_everything_survives_reopening(store_factory):
    store = store_factory()
    store.apply(ChangeSet(
        runs=[run(key="k", params={"p": 1}), run("r2", "other", started=5, ended_at=at(6))],
        tasks=[task("t1", cursor={"page": 2}, started_at=at(1)), task("t2", position=1, total=9)],
        phases=[PhaseRecord("r1", "discovery", 0, at(2)), PhaseRecord("r1", "pulls", 1)],
        ledger=[ok("a"), fail("b", "e", False), ok("w", "t2", kind=BOUNDARY)],
        state=[StateEntry("job", "since", {"id": 42}, at(3))],
    ))
    store.apply(ChangeSet(ledger=[ok("b")], state_deletes=[StateDelete("other")]))
    before = snapshot(store)
    store.close()
    again = store_factory()
    assert snapshot(again) == before
    assert again.ledger_lookup("r1", "t1", ["a", "b"]) == {"a": OK, "b": OK}
    again.apply(ChangeSet(ledger=[ok("c")]))
    again.close()
    assert store_factory().ledger_counts("r1", "t1") == LedgerCounts(3, 0)


def test_separate_stores_are_separate(store_factory):
    one = store_factory()
    two = store_factory.fresh()()
    one.apply(ChangeSet(runs=[run()], state=[StateEntry("job", "k", 1, at(0))]))
    assert two.list_runs() == [] and two.get_state("job") == [] and two.list_jobs() == []


# -- locks ----------------------------------------------------------------------------------------------
def test_lock_names_its_holder_and_refuses_a_second_taker(store_factory):
    store = store_factory()
    assert store.lock_holder("job") is None
    lock = store.lock("job", "run-1")
    try:
        holder = store.lock_holder("job")
        assert holder is not None
        assert (holder.pid, holder.run_id) == (os.getpid(), "run-1")
        assert holder.host and holder.since
        other = store_factory()
        with pytest.raises(JobLocked) as caught:
            other.lock("job")
        assert caught.value.job == "job"
        assert caught.value.holder is not None and caught.value.holder.pid == os.getpid()
        assert f"pid {os.getpid()}" in str(caught.value)
        assert other.lock_holder("job") == holder
        assert store.lock_holder("another-job") is None
        with store.lock("another-job"):
            pass
    finally:
        lock.release()
    assert store.lock_holder("job") is None
    with store_factory().lock("job") as again:
        assert again is not None
        assert store.lock_holder("job") is not None
    assert store.lock_holder("job") is None
    lock.release()  # releasing twice is harmless


def test_lock_refuses_bad_job_names(store_factory):
    store = store_factory()
    with pytest.raises(InvalidName):
        store.lock("../etc")


# -- progress samples and overviews (the dashboard) ------------------------------------------------------
def sample(slot: int, seconds: float, run_id: str = "r1", ok: int = 0) -> ProgressSample:
    return ProgressSample(run_id, slot, at(seconds), items_ok=ok, items_failed=1, records=ok * 2, pages=3)


def test_samples_round_trip_in_time_order_and_a_slot_is_replaced(store_factory):
    store = store_factory()
    store.apply(ChangeSet(runs=[run()], samples=[sample(0, 0), sample(1, 5, ok=10)]))
    store.apply(ChangeSet(samples=[sample(2, 10, ok=20)]))
    store.apply(ChangeSet(samples=[sample(0, 15, ok=30)]))  # thinned: slot 0 now holds the newest
    assert store.get_samples("r1") == [sample(1, 5, ok=10), sample(2, 10, ok=20), sample(0, 15, ok=30)]
    assert store_factory().get_samples("r1") == store.get_samples("r1")  # durable
    assert store.get_samples("absent") == []


def test_samples_are_deleted_with_their_run_only(store_factory):
    store = store_factory()
    for run_id in ("r1", "r2"):
        store.apply(ChangeSet(runs=[run(run_id)], samples=[sample(0, 0, run_id), sample(1, 1, run_id)]))
    store.apply(ChangeSet(run_deletes=["r1"]))
    assert store.get_samples("r1") == []
    assert len(store.get_samples("r2")) == 2
    store.apply(ChangeSet(run_deletes=["r2"], runs=[run("r2")], samples=[sample(5, 9, "r2")]))
    assert store.get_samples("r2") == [sample(5, 9, "r2")]


def test_latest_runs_gives_the_newest_runs_of_every_job(store_factory):
    store = store_factory()
    runs = [
        run("a1", "alpha", started=1, status=RunStatus.COMPLETED),
        run("a2", "alpha", started=2, status=RunStatus.FAILED),
        run("a3", "alpha", started=3),
        run("b1", "beta", started=1, status=RunStatus.COMPLETED),
        run("c0", "gamma", started=5),
        run("c1", "gamma", started=5),  # same start: run_id breaks the tie, as in list_runs
    ]
    store.apply(ChangeSet(runs=runs))
    assert [r.run_id for r in store.latest_runs()] == ["a3", "b1", "c1"]
    assert [r.run_id for r in store.latest_runs(2)] == ["a3", "a2", "b1", "c1", "c0"]
    done = store.latest_runs(statuses=[RunStatus.COMPLETED])
    assert [r.run_id for r in done] == ["a1", "b1"]
    assert done[0] == RunHead.of(runs[0])
    assert done[0].duration_seconds == 0.0
    assert store.latest_runs(statuses=[]) == []
    assert [r.run_id for r in store.latest_runs(2, jobs=["gamma", "alpha", "absent"])] == ["a3", "a2", "c1", "c0"]
    assert store.latest_runs(jobs=[]) == []


def test_run_counts_by_job_and_status(store_factory):
    store = store_factory()
    store.apply(ChangeSet(runs=[
        run("a1", "alpha", status=RunStatus.COMPLETED), run("a2", "alpha", status=RunStatus.COMPLETED),
        run("a3", "alpha"), run("b1", "beta", status=RunStatus.FAILED),
    ]))
    assert store.run_counts() == {
        ("alpha", RunStatus.COMPLETED): 2, ("alpha", RunStatus.RUNNING): 1, ("beta", RunStatus.FAILED): 1,
    }

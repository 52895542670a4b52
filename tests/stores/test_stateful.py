"""Random sequences of change sets, reads and reopens against every backend and a plain in-memory model.

After every step (a reopen included) the backend and the model must agree on everything the reads show. A
change set the model rejects (a ledger entry or clear naming a task that does not exist) must be rejected by
the store too, leaving nothing of it behind.

Within one change set, generated records are unique per key: what a duplicate means inside one change set
is tested (and, for SQLite, marked as a known bug) in ``test_conformance.py``.
"""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from syncpoint.errors import StoreError
from syncpoint.model import (
    FailedItem,
    LedgerCounts,
    LedgerEntry,
    LedgerKind,
    PhaseRecord,
    RunRecord,
    RunStatus,
    StateEntry,
    TaskRecord,
    TaskStatus,
)
from syncpoint.stores.base import ChangeSet, ItemOutcome, LedgerClear, StateDelete, Store

RUNS = ["r1", "r2", "r3"]
JOBS = ["j1", "j2"]
TASKS = ["t1", "t2"]
PHASES = ["p1", "p2"]
ITEMS = ["a", "b", "c", "d", "Ä", "a-1"]
KEYS = ["k1", "k2"]
T0 = datetime(2024, 5, 1, tzinfo=timezone.utc)
TIMES = [T0, T0 + timedelta(microseconds=1), T0 + timedelta(seconds=1), T0 + timedelta(days=400, microseconds=7)]

text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=6)
times = st.sampled_from(TIMES)
opt_times = st.none() | times
small_ints = st.integers(-(2**31), 2**31)
json_values = st.recursive(
    st.none() | st.booleans() | small_ints | st.floats(allow_nan=False, allow_infinity=False) | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=6,
)
json_objects = st.dictionaries(text, json_values, max_size=3)

runs = st.builds(
    RunRecord, run_id=st.sampled_from(RUNS), job=st.sampled_from(JOBS), status=st.sampled_from(RunStatus),
    config=json_objects, config_digest=text, started_at=times, updated_at=times,
    key=st.none() | st.sampled_from(KEYS), params=json_objects, ended_at=opt_times,
    attempts=st.integers(1, 5), error=st.none() | text, exit_code=st.none() | st.integers(0, 255),
)
tasks = st.builds(
    TaskRecord, run_id=st.sampled_from(RUNS), name=st.sampled_from(TASKS), position=st.integers(0, 2),
    status=st.sampled_from(TaskStatus), cursor=json_values, pages=st.integers(0, 10**9), records=small_ints,
    ok=st.integers(0, 100), failed=st.integers(0, 100), total=st.none() | st.integers(0, 10**12),
    error=st.none() | text, retryable=st.booleans(), started_at=opt_times, updated_at=opt_times,
    completed_at=opt_times,
)
phases = st.builds(
    PhaseRecord, run_id=st.sampled_from(RUNS), name=st.sampled_from(PHASES), position=st.integers(0, 2),
    completed_at=opt_times,
)
ok_entries = st.builds(
    LedgerEntry, run_id=st.sampled_from(RUNS), task=st.sampled_from(TASKS), item_id=st.sampled_from(ITEMS),
    ok=st.just(True), error=st.none(), retryable=st.just(False), kind=st.sampled_from(LedgerKind),
)
failed_entries = st.builds(
    LedgerEntry, run_id=st.sampled_from(RUNS), task=st.sampled_from(TASKS), item_id=st.sampled_from(ITEMS),
    ok=st.just(False), error=st.none() | text, retryable=st.booleans(), kind=st.sampled_from(LedgerKind),
)
change_sets = st.builds(
    ChangeSet,
    run_deletes=st.lists(st.sampled_from(RUNS), max_size=1),
    runs=st.lists(runs, max_size=2, unique_by=lambda r: r.run_id),
    tasks=st.lists(tasks, max_size=3, unique_by=lambda t: (t.run_id, t.name)),
    phases=st.lists(phases, max_size=2, unique_by=lambda p: (p.run_id, p.name)),
    ledger_clears=st.lists(
        st.builds(LedgerClear, st.sampled_from(RUNS), st.sampled_from(TASKS), st.sampled_from(LedgerKind)),
        max_size=1,
    ),
    ledger=st.lists(
        ok_entries | failed_entries, max_size=8, unique_by=lambda e: (e.run_id, e.task, e.kind, e.item_id)
    ),
    state_deletes=st.lists(
        st.builds(StateDelete, st.sampled_from(JOBS), st.none() | st.sampled_from(KEYS)), max_size=1
    ),
    state=st.lists(
        st.builds(StateEntry, st.sampled_from(JOBS), st.sampled_from(KEYS), json_values, times),
        max_size=2, unique_by=lambda s: (s.job, s.key),
    ),
)


class Rejected(Exception):
    pass


class Model:
    """What every store must show: plain dictionaries with the documented semantics."""

    def __init__(self) -> None:
        self.runs: dict[str, RunRecord] = {}
        self.tasks: dict[tuple[str, str], TaskRecord] = {}
        self.phases: dict[tuple[str, str], PhaseRecord] = {}
        self.ledger: dict[tuple[str, str, LedgerKind], dict[str, LedgerEntry]] = {}
        self.state: dict[tuple[str, str], StateEntry] = {}

    def apply(self, changes: ChangeSet) -> Model:
        new = copy.deepcopy(self)
        for run_id in changes.run_deletes:
            new.runs.pop(run_id, None)
            for table in (new.tasks, new.phases, new.ledger):
                for key in [k for k in table if k[0] == run_id]:
                    del table[key]  # type: ignore[attr-defined]
        new.runs.update((r.run_id, r) for r in changes.runs)
        new.tasks.update(((t.run_id, t.name), t) for t in changes.tasks)
        new.phases.update(((p.run_id, p.name), p) for p in changes.phases)
        for clear in changes.ledger_clears:
            new.need_task(clear.run_id, clear.task)
            new.ledger.pop((clear.run_id, clear.task, clear.kind), None)
        for e in changes.ledger:
            new.need_task(e.run_id, e.task)
            stored = LedgerEntry(e.run_id, e.task, e.item_id, e.ok, e.error, e.retryable and not e.ok, e.kind)
            new.ledger.setdefault((e.run_id, e.task, e.kind), {})[e.item_id] = stored
        for delete in changes.state_deletes:
            for key in [k for k in new.state if k[0] == delete.job and delete.key in (None, k[1])]:
                del new.state[key]
        new.state.update(((s.job, s.key), s) for s in changes.state)
        return new

    def need_task(self, run_id: str, task: str) -> None:
        if (run_id, task) not in self.tasks:
            raise Rejected(f"unknown task {task} of {run_id}")

    def list_runs(self, job: str | None, statuses: list[RunStatus] | None, key: str | None,
                  limit: int | None) -> list[RunRecord]:
        found = sorted(self.runs.values(), key=lambda r: (r.started_at, r.run_id), reverse=True)
        found = [r for r in found if job in (None, r.job) and key in (None, r.key)
                 and (statuses is None or r.status in statuses)]
        return found if limit is None else found[:limit]

    def entries(self, run_id: str, task: str, kind: LedgerKind) -> list[LedgerEntry]:
        table = self.ledger.get((run_id, task, kind), {})
        return [table[item] for item in sorted(table)]


class StoreMachine(RuleBasedStateMachine):
    factory: Any = None  # set by the test: the conftest StoreFactory of one backend

    def __init__(self) -> None:
        super().__init__()
        self.location = type(self).factory.fresh()
        self.store: Store = self.location()
        self.model = Model()

    def teardown(self) -> None:
        self.store.close()

    @rule(changes=change_sets)
    def apply(self, changes: ChangeSet) -> None:
        try:
            expected: Model | None = self.model.apply(changes)
        except Rejected:
            expected = None
        try:
            self.store.apply(changes)
        except StoreError:
            assert expected is None, "the store rejected a valid change set"
        else:
            assert expected is not None, "the store accepted a ledger entry for an unknown task"
            self.model = expected

    @rule(changes=change_sets)
    def apply_twice(self, changes: ChangeSet) -> None:
        self.apply(changes)
        self.apply(changes)

    @rule()
    def reopen(self) -> None:
        self.store.close()
        self.store = self.location()

    @rule(job=st.none() | st.sampled_from(JOBS),
          statuses=st.none() | st.lists(st.sampled_from(RunStatus), max_size=3, unique=True),
          key=st.none() | st.sampled_from(KEYS), limit=st.none() | st.integers(0, 3))
    def list_runs(self, job: str | None, statuses: list[RunStatus] | None, key: str | None, limit: int | None) -> None:
        got = self.store.list_runs(job, statuses=statuses, key=key, limit=limit)
        assert got == self.model.list_runs(job, statuses, key, limit)

    @rule(run_id=st.sampled_from(RUNS), task=st.sampled_from(TASKS), kind=st.sampled_from(LedgerKind),
          ids=st.lists(st.sampled_from([*ITEMS, "zz"]), max_size=8))
    def lookup(self, run_id: str, task: str, kind: LedgerKind, ids: list[str]) -> None:
        table = self.model.ledger.get((run_id, task, kind), {})
        expected = {i: ItemOutcome.of(table[i]) for i in ids if i in table}
        assert self.store.ledger_lookup(run_id, task, ids, kind) == expected

    @invariant()
    def agrees_with_model(self) -> None:
        store, model = self.store, self.model
        assert store.list_runs() == model.list_runs(None, None, None, None)
        assert store.list_jobs() == sorted({r.job for r in model.runs.values()} | {job for job, _ in model.state})
        for run_id in RUNS:
            assert store.get_run(run_id) == model.runs.get(run_id)
            tasks = store.get_tasks(run_id)
            assert tasks == sorted((t for t in model.tasks.values() if t.run_id == run_id),
                                   key=lambda t: (t.position, t.name))
            phases = store.get_phases(run_id)
            assert [p.position for p in phases] == sorted(p.position for p in phases)
            assert sorted(phases, key=lambda p: (p.position, p.name)) == sorted(
                (p for p in model.phases.values() if p.run_id == run_id), key=lambda p: (p.position, p.name))
            for t in tasks:
                for kind in LedgerKind:
                    entries = model.entries(run_id, t.name, kind)
                    assert list(store.iter_ledger(run_id, t.name, kind)) == entries
                    okays = sum(e.ok for e in entries)
                    assert store.ledger_counts(run_id, t.name, kind) == LedgerCounts(okays, len(entries) - okays)
                failed = [FailedItem(e.item_id, e.error, e.retryable)
                          for e in model.entries(run_id, t.name, LedgerKind.ITEMS) if not e.ok]
                assert list(store.ledger_failed(run_id, t.name)) == failed
        for job in JOBS:
            assert store.get_state(job) == sorted((s for s in model.state.values() if s.job == job),
                                                  key=lambda s: s.key)


def test_store_agrees_with_the_model(store_factory):
    machine = type("Machine", (StoreMachine,), {"factory": store_factory})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=30, stateful_step_count=20, deadline=None, database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        ),
    )

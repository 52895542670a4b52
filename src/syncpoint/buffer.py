"""The pending change set: every change recorded since the last commit, and the one place a ``ChangeSet``
is built from it.

Tasks, cursors and job state write here through public methods; the committer alone calls ``take`` (under
its commit lock) and then ``committed`` or ``restore``. Progress keeps flowing while a commit is in flight:
``take`` moves the pending changes aside (*in flight*) and starts an empty buffer, so workers never wait for
the store's I/O. Membership questions ("was this ID recorded?") look at the pending changes, then at those in
flight, then at the store — an ID is always in one of the three, so a lookup racing a commit cannot miss it
(the in-flight changes are dropped only after the store has them).

One lock (``lock``) guards the buffer and the counters of the tasks that write to it. Callers that change
several things at once (a task's counters and its ledger entry) hold it around them; every method here that
says "lock held" expects that.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Protocol

from syncpoint.model import LedgerEntry, LedgerKind, PhaseRecord, RunRecord, StateEntry, TaskRecord
from syncpoint.stores.base import ChangeSet, ItemOutcome, LedgerClear, StateDelete, Store

#: IDs found failed in the store, remembered so that a later success corrects the task's counters. Bounded:
#: past this many per task the oldest knowledge is dropped (the counts are then fixed at the next resume).
MAX_KNOWN_FAILED = 100_000

LedgerKey = tuple[str, LedgerKind]


class Foldable(Protocol):
    """A task as the buffer sees it: something that folds its live counters into a record."""

    @property
    def name(self) -> str: ...

    def fold(self) -> TaskRecord: ...


class _Layer:
    """One generation of changes: pending, or in flight."""

    __slots__ = ("clears", "deleted_state", "ledger", "phases", "state", "tasks")

    def __init__(self) -> None:
        self.tasks: dict[str, Foldable] = {}
        self.ledger: dict[LedgerKey, dict[str, LedgerEntry]] = {}
        self.clears: set[LedgerKey] = set()
        self.phases: list[PhaseRecord] = []
        self.state: dict[str, StateEntry] = {}
        self.deleted_state: set[str] = set()

    def __bool__(self) -> bool:
        return bool(self.tasks or self.ledger or self.clears or self.phases or self.state or self.deleted_state)


class ChangeBuffer:
    """Changes recorded since the last commit, safe to write from any thread."""

    def __init__(self, run_id: str, job: str) -> None:
        self.run_id = run_id
        self.job = job
        self.lock = threading.Lock()
        self._pending = _Layer()
        self._inflight: _Layer | None = None
        self._persisted: set[str] = set()
        self._known_failed: dict[str, set[str]] = {}

    # -- writing (lock held) ------------------------------------------------------------------------------
    def touch(self, task: Foldable) -> None:
        """The task's record changed; fold it into the next commit. Lock held."""
        self._pending.tasks[task.name] = task

    def put(self, task: Foldable, entry: LedgerEntry) -> bool | None:
        """Buffer one ledger entry; what was known of the ID before: True (done), False (failed), None.

        Lock held. The answer lets the task keep its counters exact when an entry replaces another (an item
        recorded twice in one window, or a failure retried with success).
        """
        name = entry.task
        self._pending.tasks[name] = task
        key = (name, entry.kind)
        bucket = self._pending.ledger.get(key)
        if bucket is None:
            bucket = self._pending.ledger[key] = {}
        before = bucket.get(entry.item_id)
        bucket[entry.item_id] = entry
        if before is not None:
            return before.ok
        if self._known_failed and entry.kind is LedgerKind.ITEMS:
            known = self._known_failed.get(name)
            if known is not None and entry.item_id in known:
                known.discard(entry.item_id)
                return False
        return None

    def clear(self, task: Foldable, kind: LedgerKind) -> None:
        """Forget every entry of ``kind`` for the task (the watermark moved on). Lock held."""
        key = (task.name, kind)
        self._pending.ledger.pop(key, None)
        self._pending.clears.add(key)
        self._pending.tasks[task.name] = task

    def add_phase(self, phase: PhaseRecord) -> None:
        with self.lock:
            self._pending.phases.append(phase)

    def set_state(self, entry: StateEntry) -> None:
        with self.lock:
            self._pending.state[entry.key] = entry
            self._pending.deleted_state.discard(entry.key)

    def delete_state(self, key: str) -> None:
        with self.lock:
            self._pending.state.pop(key, None)
            self._pending.deleted_state.add(key)

    # -- reading ------------------------------------------------------------------------------------------
    @property
    def dirty(self) -> bool:
        return bool(self._pending)

    def persisted(self, task: str) -> bool:
        return task in self._persisted

    def mark_persisted(self, names: Iterable[str]) -> None:
        self._persisted.update(names)

    def lookup(
        self, store: Store, task: str, item_ids: Sequence[str], kind: LedgerKind = LedgerKind.ITEMS
    ) -> dict[str, ItemOutcome]:
        """What the ledger knows of each ID: pending changes first, then those in flight, then the store."""
        key = (task, kind)
        found: dict[str, ItemOutcome] = {}
        with self.lock:
            layers = [self._pending] if self._inflight is None else [self._pending, self._inflight]
            cleared = False
            for layer in layers:
                bucket = layer.ledger.get(key)
                if bucket:
                    for item_id in item_ids:
                        if item_id not in found and item_id in bucket:
                            found[item_id] = ItemOutcome.of(bucket[item_id])
                if key in layer.clears:
                    cleared = True
                    break  # everything older than this clear is gone
            ask_store = not cleared and task in self._persisted
        rest = [i for i in item_ids if i not in found]
        if rest and ask_store:
            stored = store.ledger_lookup(self.run_id, task, rest, kind)
            if kind is LedgerKind.ITEMS:
                self._remember_failed(task, [i for i, o in stored.items() if o is not ItemOutcome.OK])
            found.update(stored)
        return found

    def _remember_failed(self, task: str, item_ids: list[str]) -> None:
        if not item_ids:
            return
        with self.lock:
            known = self._known_failed.setdefault(task, set())
            if len(known) + len(item_ids) > MAX_KNOWN_FAILED:
                known.clear()
            known.update(item_ids)

    # -- the commit protocol (the committer only, under its commit lock) -----------------------------------
    def take(self, run: RunRecord | None, *, progress: bool = True) -> ChangeSet:
        """The change set of the next commit: the run's record (None: a worker that holds one task of a shared
        run, which never writes the run's record) and, with ``progress``, everything pending, which moves in
        flight until ``committed`` or ``restore``."""
        changes = ChangeSet(runs=[] if run is None else [run])
        if not progress:
            return changes
        with self.lock:
            layer, self._pending = self._pending, _Layer()
            self._inflight = layer
            changes.tasks.extend(task.fold() for task in layer.tasks.values())
        changes.ledger_clears.extend(LedgerClear(self.run_id, name, kind) for name, kind in sorted(layer.clears))
        for bucket in layer.ledger.values():
            changes.ledger.extend(bucket.values())
        changes.phases.extend(layer.phases)
        changes.state_deletes.extend(StateDelete(self.job, key) for key in sorted(layer.deleted_state))
        changes.state.extend(layer.state.values())
        return changes

    def committed(self) -> None:
        """The store has what was in flight."""
        with self.lock:
            if self._inflight is not None:
                self._persisted.update(self._inflight.tasks)
            self._inflight = None

    def restore(self) -> None:
        """The commit failed: what was in flight is pending again, under anything recorded meanwhile."""
        with self.lock:
            old, self._inflight = self._inflight, None
            if old is None:
                return
            new = self._pending
            for name, task in old.tasks.items():
                new.tasks.setdefault(name, task)
            for key, bucket in old.ledger.items():
                if key in new.clears:
                    continue  # cleared since: the old entries are obsolete
                merged = dict(bucket)
                merged.update(new.ledger.get(key, {}))
                new.ledger[key] = merged
            new.clears |= old.clears
            new.phases[:0] = old.phases
            for state_key, entry in old.state.items():
                if state_key not in new.state and state_key not in new.deleted_state:
                    new.state[state_key] = entry
            new.deleted_state |= {k for k in old.deleted_state if k not in new.state}

    def discard(self) -> None:
        """Drop everything pending (a bound transaction was rolled back: the progress went with it)."""
        with self.lock:
            self._pending = _Layer()
            self._inflight = None

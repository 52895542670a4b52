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

Which items are failed right now is known here, in one place, so that a task's counters stay exact when an
item that failed is recorded again (``put`` says what it replaced): every failure ``put`` sees, and a
resumed task's failures in the store, loaded when the task first records an item (``prepare``). Nothing
else fills it: asking ``lookup`` first is not needed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Protocol

from syncpoint.model import LedgerEntry, LedgerKind, PhaseRecord, RunRecord, StateEntry, TaskRecord
from syncpoint.stores.base import ChangeSet, ItemOutcome, LedgerClear, StateDelete, Store

#: Failed item IDs held in memory per task. A task with more failed items than this asks the store, item by
#: item, whether an item it records replaces a failure: as exact, one query per item slower.
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
        #: Task → the IDs of its items whose latest outcome is a failure (pending, in flight or stored).
        self._failed: dict[str, set[str]] = {}
        #: Task → how many failed items the store holds that ``_failed`` has not loaded yet (resumed tasks).
        self._unloaded: dict[str, int] = {}
        #: Tasks with more failed items than memory holds: ``prepare`` asks the store.
        self._ask_store: set[str] = set()

    # -- writing (lock held) ------------------------------------------------------------------------------
    def touch(self, task: Foldable) -> None:
        """The task's record changed; fold it into the next commit. Lock held."""
        self._pending.tasks[task.name] = task

    def put(self, task: Foldable, entry: LedgerEntry, *, stored_failure: bool = False) -> bool | None:
        """Buffer one ledger entry; what was known of the ID before: True (done), False (failed), None.

        Lock held. The answer lets the task keep its counters exact when an entry replaces another: an item
        recorded twice in one window, or an item that failed — in this window, since the last commit, or
        in an earlier run — recorded again. For an item entry, call ``prepare`` first (lock not held) and
        pass on its answer as ``stored_failure``.
        """
        name = entry.task
        self._pending.tasks[name] = task
        key = (name, entry.kind)
        bucket = self._pending.ledger.get(key)
        if bucket is None:
            bucket = self._pending.ledger[key] = {}
        before = bucket.get(entry.item_id)
        bucket[entry.item_id] = entry
        if entry.kind is not LedgerKind.ITEMS:
            return None if before is None else before.ok
        was_failed = self._note_outcome(name, entry)
        if before is not None:
            return before.ok
        return False if was_failed or stored_failure else None

    def _note_outcome(self, task: str, entry: LedgerEntry) -> bool:
        """Keep the task's failed IDs current; whether the ID was among them. Lock held."""
        if task in self._ask_store:
            return False
        failed = self._failed.get(task)
        if entry.ok:
            if failed is None or entry.item_id not in failed:
                return False
            failed.discard(entry.item_id)
            return True
        if failed is None:
            failed = self._failed[task] = set()
        was = entry.item_id in failed
        failed.add(entry.item_id)
        if len(failed) > MAX_KNOWN_FAILED:  # too many to hold: from now on ``prepare`` asks the store
            del self._failed[task]
            self._ask_store.add(task)
        return was

    def expect_failed(self, task: str, count: int) -> None:
        """The store holds ``count`` failed items of ``task`` (a task loaded on resume); ``prepare`` loads
        their IDs when the task first records an item."""
        if count > 0:
            with self.lock:
                self._unloaded[task] = count

    def prepare(self, store: Store, task: str, item_id: str) -> bool:
        """Before ``put`` records an item of ``task`` (lock not held): True when the item's latest outcome is a
        failure that only the store knows of — asked only for a task with more failures than memory holds.

        The first call for a resumed task with failures loads their IDs from the store (one streamed read)."""
        if task in self._unloaded:
            self._load_failed(store, task)
        if task not in self._ask_store:
            return False
        outcome = self.lookup(store, task, [item_id]).get(item_id)
        return outcome is not None and outcome is not ItemOutcome.OK

    def _load_failed(self, store: Store, task: str) -> None:
        count = self._unloaded.get(task, 0)
        loaded = None if count > MAX_KNOWN_FAILED else {f.item_id for f in store.ledger_failed(self.run_id, task)}
        with self.lock:
            if self._unloaded.pop(task, None) is None:
                return  # another thread loaded them meanwhile, and its items may have been recorded since
            if loaded is None or len(loaded) + len(self._failed.get(task, ())) > MAX_KNOWN_FAILED:
                self._failed.pop(task, None)
                self._ask_store.add(task)
            else:
                self._failed.setdefault(task, set()).update(loaded)

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
            found.update(store.ledger_lookup(self.run_id, task, rest, kind))
        return found

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

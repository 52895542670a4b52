"""The store interface: one atomic write path (``apply``) and a handful of reads.

Every durable change — runs, tasks, phases, ledger entries, watermark boundary IDs, job state, deletions —
travels in one ``ChangeSet`` that a backend applies all-or-nothing. Crash safety is therefore a property of
one method per backend, and the conformance suite (``tests/stores``) tests it as such.

A backend that can commit a change set inside the caller's own database transaction (exactly-once when
the destination is the same database) overrides ``apply_in``; the others refuse it.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from syncpoint.errors import LockHolder, UsageError
from syncpoint.model import (
    FailedItem,
    LeaseInfo,
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
)


class ItemOutcome(enum.IntEnum):
    """What the ledger knows of one item ID (the value is what SQL backends store)."""

    OK = 0
    FAILED_RETRYABLE = 1
    FAILED_PERMANENT = 2

    @classmethod
    def of(cls, entry: LedgerEntry) -> ItemOutcome:
        if entry.ok:
            return cls.OK
        return cls.FAILED_RETRYABLE if entry.retryable else cls.FAILED_PERMANENT


@dataclass(frozen=True)
class LedgerClear:
    """Forget every entry of one kind for one task (the watermark moved to a new boundary value)."""

    run_id: str
    task: str
    kind: LedgerKind


@dataclass(frozen=True)
class StateDelete:
    """Delete one bookmark, or all of a job's bookmarks when ``key`` is None."""

    job: str
    key: str | None = None


@dataclass(frozen=True)
class LeaseFence:
    """Commit only while holding this task's lease at ``epoch`` (many workers, ``syncpoint.distributed``).

    The backend checks the epoch in the same transaction as the rest of the change set and refuses the whole
    commit (``LeaseLost``) when another worker holds the lease now. ``end``: None keeps the lease held;
    ``"queued"`` hands it back for another worker; ``"finished"`` ends it and, when it was the run's last open
    lease, ends the run. ``failed`` counts a failed attempt of the task; with ``"finished"``, the task failed
    for good, ``retryable`` telling whether its last error was a retryable one (attempts used up: the run then
    ends ``failed``) or a permanent one (the run completes, as on one machine: ``syncpoint.failures``).
    """

    run_id: str
    task: str
    epoch: int
    end: str | None = None
    failed: bool = False
    retryable: bool = False


@dataclass
class ChangeSet:
    """Everything one commit changes. Applied in field order: deletes, upserts, clears, ledger, state.

    Every field holds absolute values (upserts, replacements, deletions), so applying the same change set
    twice gives the same state: a backend may retry an ``apply`` whose outcome it did not see, and the
    JSON store may finish an interrupted one at its next use. Within one change set, a later ledger entry
    for the same item ID replaces an earlier one.
    """

    run_deletes: list[str] = field(default_factory=list)
    runs: list[RunRecord] = field(default_factory=list)
    tasks: list[TaskRecord] = field(default_factory=list)
    phases: list[PhaseRecord] = field(default_factory=list)
    ledger_clears: list[LedgerClear] = field(default_factory=list)
    ledger: list[LedgerEntry] = field(default_factory=list)
    state_deletes: list[StateDelete] = field(default_factory=list)
    state: list[StateEntry] = field(default_factory=list)
    samples: list[ProgressSample] = field(default_factory=list)  # upserts by (run_id, slot); after the runs
    fence: LeaseFence | None = None  # checked before everything else; only stores with leases accept it

    def __bool__(self) -> bool:
        return any(
            (self.run_deletes, self.runs, self.tasks, self.phases, self.ledger_clears, self.ledger,
             self.state_deletes, self.state, self.samples, self.fence)
        )


class JobLock(abc.ABC):
    """A held job lock. The OS or the database releases it if the holder dies, so no stale locks."""

    @abc.abstractmethod
    def release(self) -> None: ...

    def set_run(self, run_id: str) -> None:  # noqa: B027 - optional hook
        """Name the run the holder works on, once chosen, so ``lock_holder`` can tell which run is live."""

    def check(self) -> bool:
        """Before each commit: True if the lock was held all along; False if it was lost and re-taken (the
        caller must then re-read what another process may have written). Local locks cannot be lost."""
        return True

    def __enter__(self) -> JobLock:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


class Store(abc.ABC):
    """A checkpoint store. Implementations: SQLite (default), JSON directory, PostgreSQL."""

    #: Where the checkpoints live, for log lines and ``runs show`` (any password masked).
    location: str

    # -- the one write path -------------------------------------------------------------------------
    @abc.abstractmethod
    def apply(self, changes: ChangeSet) -> None:
        """Apply ``changes`` atomically and durably: after return all of it survives; on error none of it,
        or (when the error came after the backend's own commit point) all of it once the store is next used."""

    def apply_in(self, connection: object, changes: ChangeSet) -> None:
        """Apply ``changes`` inside the caller's open transaction on ``connection`` (no commit here)."""
        raise NotImplementedError(f"{type(self).__name__} cannot join an outside transaction")

    # -- runs, tasks, phases -------------------------------------------------------------------------
    @abc.abstractmethod
    def get_run(self, run_id: str) -> RunRecord | None: ...

    @abc.abstractmethod
    def list_runs(
        self,
        job: str | None = None,
        *,
        statuses: Sequence[RunStatus] | None = None,
        key: str | None = None,
        limit: int | None = None,
    ) -> list[RunRecord]:
        """Runs newest first (by ``started_at``, then ``run_id``)."""

    @abc.abstractmethod
    def get_tasks(self, run_id: str) -> list[TaskRecord]:
        """A run's tasks in position order."""

    def get_task(self, run_id: str, name: str) -> TaskRecord | None:
        """One task of a run (a worker that holds one task of a shared run reads only that one)."""
        return next((t for t in self.get_tasks(run_id) if t.name == name), None)

    @abc.abstractmethod
    def get_phases(self, run_id: str) -> list[PhaseRecord]:
        """A run's phases in position order."""

    # -- ledgers -------------------------------------------------------------------------------------
    @abc.abstractmethod
    def ledger_lookup(
        self, run_id: str, task: str, item_ids: Sequence[str], kind: LedgerKind = LedgerKind.ITEMS
    ) -> dict[str, ItemOutcome]:
        """The outcome of each of ``item_ids`` that the ledger holds (absent IDs are left out)."""

    @abc.abstractmethod
    def ledger_counts(self, run_id: str, task: str, kind: LedgerKind = LedgerKind.ITEMS) -> LedgerCounts: ...

    @abc.abstractmethod
    def ledger_failed(self, run_id: str, task: str) -> Iterator[FailedItem]:
        """Failed items of a task's item ledger, in item-ID order, streamed."""

    @abc.abstractmethod
    def iter_ledger(self, run_id: str, task: str, kind: LedgerKind = LedgerKind.ITEMS) -> Iterator[LedgerEntry]:
        """Every entry of one of a task's ledgers, in item-ID order, streamed (export, inspection)."""

    # -- progress samples and overviews (the dashboard) ----------------------------------------------
    def get_samples(self, run_id: str) -> list[ProgressSample]:
        """A run's progress samples in time order (``at``, then ``slot``); a store without them has none."""
        return []

    def latest_runs(
        self, per_job: int = 1, *, statuses: Sequence[RunStatus] | None = None, jobs: Sequence[str] | None = None
    ) -> list[RunHead]:
        """The ``per_job`` newest runs (optionally only in ``statuses``) of every job (or of ``jobs``), by job
        name, then newest first, without their configs: the dashboard's jobs page in one read. Backends
        override this with an efficient query (an index range per job)."""
        found: list[RunHead] = []
        for job in sorted(set(jobs)) if jobs is not None else self.list_jobs():
            found.extend(RunHead.of(r) for r in self.list_runs(job, statuses=statuses, limit=per_job))
        return found

    def run_counts(self) -> dict[tuple[str, RunStatus], int]:
        """How many runs each job has in each status (the ``syncpoint_runs_total`` metric)."""
        counts: dict[tuple[str, RunStatus], int] = {}
        for run in self.list_runs():
            counts[(run.job, run.status)] = counts.get((run.job, run.status), 0) + 1
        return counts

    # -- job state (bookmarks) ------------------------------------------------------------------------
    @abc.abstractmethod
    def get_state(self, job: str) -> list[StateEntry]:
        """A job's bookmarks, by key."""

    @abc.abstractmethod
    def list_jobs(self) -> list[str]:
        """Every job that has runs or state, sorted."""

    # -- locks ---------------------------------------------------------------------------------------
    @abc.abstractmethod
    def lock(self, job: str, run_id: str | None = None) -> JobLock:
        """Take the job's lock without waiting; raise ``JobLocked`` naming the holder if it is held."""

    @abc.abstractmethod
    def lock_holder(self, job: str) -> LockHolder | None:
        """Who holds the job's lock right now, or None if nobody does (a probe; takes nothing)."""

    # -- leases (many workers on one run: PostgreSQL) ---------------------------------------------------
    def leases(self, run_id: str) -> list[LeaseInfo]:
        """A run's task leases, by task name; none on a store without leases (SQLite, JSON)."""
        return []

    def connect(self, **options: Any) -> Any:
        """A new connection of your own to the store's database: for ``run.bind(conn)``, which commits your rows
        and the checkpoint in one transaction on it, and for SQL of yours beside the checkpoints.

        Not one of the store's pooled connections: those are in autocommit, and a bound run keeps its
        connection in a transaction for the whole run. This one is not in autocommit; ``options`` go to the
        driver (``psycopg.connect``, e.g. ``options="-c statement_timeout=5000"``); close it yourself
        (``with store.connect() as conn:`` commits and closes). PostgreSQL only: the other stores have no
        database to share, and raise ``UsageError``."""
        raise UsageError(f"{self.location} has no database to connect to; run.bind(conn) and SQL beside the "
                         "checkpoints need the PostgreSQL store")

    def transaction(self) -> AbstractContextManager[Any]:
        """A connection inside an open transaction, committed when the block ends (rolled back on error):
        for writes that must commit together with a change set (``apply_in``). PostgreSQL only."""
        raise UsageError(f"{type(self).__name__} has no transactions to share; leases and queues need PostgreSQL")

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and file handles."""

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

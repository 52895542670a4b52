"""Whether a run is being worked on right now: the rule every command that must not touch a live run asks.

A run has two kinds of workers. A single process holds the job's lock while it runs (the OS or the database
drops the lock when it dies, so a held lock means a live process). The workers of a distributed run
(``syncpoint.distributed``) take no job lock: each holds its task's *lease* and refreshes the lease's
heartbeat every third of the fleet's stall timeout (30 s by default), and every commit refreshes it too.

So a ``running`` run is live when a process holds the job's lock for it, or when one of its leases is held
(state ``leased``) with a heartbeat younger than twice the holder's stall timeout (stored with the lease;
``FRESH_HEARTBEAT_SECONDS``, 60 s, for a lease that does not say). A worker silent for that long has missed
several heartbeats; any other live worker of the fleet has already handed its task on (and fenced it).
Deleting such a run is safe even if the silent worker comes back: its next commit finds no lease and writes
nothing.

Ages are measured on the store's clock (``LeaseInfo.read_at``), not on the reader's.

A run whose leases are *open* — queued or leased, fresh or not — belongs to its workers even when none is
alive: a single process must not resume it (``syncpoint.resume``); starting a worker continues it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import EllipsisType

from syncpoint.errors import LockHolder
from syncpoint.model import LeaseInfo, LeaseState, RunHead, RunRecord, RunStatus, utcnow
from syncpoint.stores.base import Store

FRESH_HEARTBEAT_SECONDS = 60.0
"""A held lease whose heartbeat is younger than this is live: twice the default stall timeout
(``syncpoint.distributed.DEFAULT_STALL_TIMEOUT``, 30 s; the distributed tests check the two agree)."""


def age_seconds(lease: LeaseInfo, moment: datetime | None) -> float | None:
    """Seconds from ``moment`` to when the lease was read (the store's clock), or None without a moment."""
    if moment is None:
        return None
    return max(0.0, ((lease.read_at or utcnow()) - moment).total_seconds())


def is_open(lease: LeaseInfo) -> bool:
    """Queued or leased: the task still has work that belongs to the run's workers."""
    return lease.state is not LeaseState.FINISHED


def is_live(lease: LeaseInfo) -> bool:
    """Held by a worker that gave a sign of life less than ``FRESH_HEARTBEAT_SECONDS`` ago."""
    if lease.state is not LeaseState.LEASED:
        return False
    age = age_seconds(lease, lease.heartbeat_at)
    fresh = 2 * lease.stall_timeout if lease.stall_timeout else FRESH_HEARTBEAT_SECONDS
    return age is not None and age < fresh


def open_leases(leases: Iterable[LeaseInfo]) -> list[LeaseInfo]:
    return [lease for lease in leases if is_open(lease)]


def live_leases(leases: Iterable[LeaseInfo]) -> list[LeaseInfo]:
    return [lease for lease in leases if is_live(lease)]


def live_workers(store: Store, run: RunRecord | RunHead) -> list[LeaseInfo]:
    """The live leases of ``run`` (none unless it is ``running``: a run that ended has no workers)."""
    if run.status is not RunStatus.RUNNING:
        return []
    return live_leases(store.leases(run.run_id))


def holds_run(holder: LockHolder | None, run: RunRecord | RunHead) -> bool:
    """Whether the job's lock holder works on ``run``: it names the run, or has not said yet which one."""
    return holder is not None and run.status is RunStatus.RUNNING and holder.run_id in (None, run.run_id)


@dataclass(frozen=True)
class Working:
    """Who works on a run right now: the process holding the job's lock for it, or else the run's live
    leases (workers take no job lock). False when nobody does."""

    lock: LockHolder | None = None
    workers: list[LeaseInfo] = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.lock is not None or bool(self.workers)

    def describe(self) -> str:
        """``pid 4242 on host-a since …`` for a process; ``live workers (pid 7 on b, …)`` for workers."""
        if self.lock is not None:
            return self.lock.describe()
        return f"live workers ({describe_workers(self.workers)})"


def working(run: RunRecord | RunHead, holder: LockHolder | None, leases: Iterable[LeaseInfo]) -> Working:
    """Who works on ``run``, from what was read already: the job's lock holder and the run's leases."""
    if run.status is not RunStatus.RUNNING:
        return Working()
    if holds_run(holder, run):
        return Working(lock=holder)
    return Working(workers=live_leases(leases))


def working_on(store: Store, run: RunRecord | RunHead, holder: LockHolder | EllipsisType | None = ...) -> Working:
    """Who works on ``run`` now (the rule of the module doc), in at most two reads: the job's lock holder
    (pass ``holder`` when it was read already), and the run's leases only when no process holds the lock."""
    if run.status is not RunStatus.RUNNING:
        return Working()
    if isinstance(holder, EllipsisType):
        holder = store.lock_holder(run.job)
    return working(run, holder, () if holds_run(holder, run) else store.leases(run.run_id))


def run_is_live(store: Store, run: RunRecord) -> bool:
    """A process holds the job's lock for ``run``, or a worker holds one of its leases (see the module doc)."""
    return bool(working_on(store, run))


def holders(leases: Iterable[LeaseInfo]) -> list[str]:
    """The distinct holders of ``leases`` (``holder_text``), in order of first appearance."""
    return list(dict.fromkeys(holder_text(lease) for lease in leases))


def describe_workers(leases: Sequence[LeaseInfo], most: int = 3) -> str:
    """The distinct holders of ``leases``, for one line: ``pid 4242 on host-a, pid 77 on host-b and 2 more``."""
    names = holders(leases)
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def holder_text(lease: LeaseInfo) -> str:
    """Who holds (or last held) the lease: ``pid 4242 on host-a``, with the worker's name when it has its own."""
    if lease.pid is None and lease.host is None:
        return lease.worker or "-"
    where = f"pid {lease.pid} on {lease.host}"
    named = lease.worker and lease.worker != f"{lease.host}:{lease.pid}"
    return f"{lease.worker} ({where})" if named else where

"""Statuses and the plain records a store returns and accepts.

Records are frozen dataclasses of JSON-compatible values so that every backend can store them the same way
and ``export``/``import`` can move them between backends without loss. Timestamps are timezone-aware UTC
``datetime`` objects; cursors, configs, params and state values are JSON values.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, NamedTuple

from syncpoint.renamed import warn_renamed

JSON = dict[str, Any] | list[Any] | str | int | float | bool | None


def utcnow() -> datetime:
    """The one clock for stored timestamps (UTC, microseconds), so backends round-trip equal values."""
    return datetime.now(timezone.utc)


class RunStatus(str, enum.Enum):
    RUNNING = "running"
    INTERRUPTED = "interrupted"
    PARTIAL = "partial"
    FAILED = "failed"
    COMPLETED = "completed"

    @property
    def resumable(self) -> bool:
        return self is not RunStatus.COMPLETED


class _TaskStatusType(enum.EnumMeta):
    """``TaskStatus.COMPLETE``, the member's name in 0.1.0, still answers, with a ``DeprecationWarning``.

    An Enum alias (``COMPLETE = "complete"`` beside ``COMPLETED``) would answer silently; this answers only
    when the normal lookup fails, so the members themselves cost nothing extra."""

    def __getattr__(cls, name: str) -> Any:
        if name == "COMPLETE":
            warn_renamed("TaskStatus.COMPLETE", "TaskStatus.COMPLETED (the same member)")
            return cls.COMPLETED
        raise AttributeError(f"type object {cls.__name__!r} has no attribute {name!r}")


class TaskStatus(str, enum.Enum, metaclass=_TaskStatusType):
    """A task's status. The member names match ``RunStatus`` (``COMPLETED``); the stored values are the
    ones every store already holds (``"complete"``), so no store is migrated."""

    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "complete"
    FAILED = "failed"


class LedgerKind(enum.IntEnum):
    """Which of a task's item sets an entry belongs to."""

    ITEMS = 0  # the item ledger: processed or failed item IDs
    BOUNDARY = 1  # the watermark's IDs seen at exactly the current boundary value


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    job: str
    status: RunStatus
    config: dict[str, Any]
    config_digest: str
    started_at: datetime
    updated_at: datetime
    key: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    ended_at: datetime | None = None
    attempts: int = 1
    error: str | None = None
    exit_code: int | None = None


class RunHead(NamedTuple):
    """A run without its config and params: what overviews of many runs need (``Store.latest_runs``).

    A named tuple, not a dataclass: the dashboard's jobs page reads thousands, and decoding each run's config
    JSON would cost more than everything else on the page.
    """

    run_id: str
    job: str
    status: RunStatus
    started_at: datetime
    updated_at: datetime
    ended_at: datetime | None = None
    key: str | None = None
    attempts: int = 1
    error: str | None = None
    exit_code: int | None = None

    @classmethod
    def of(cls, run: RunRecord) -> RunHead:
        return cls(run.run_id, run.job, run.status, run.started_at, run.updated_at, run.ended_at, run.key,
                   run.attempts, run.error, run.exit_code)

    @property
    def duration_seconds(self) -> float:
        """Wall time: to its end, or (still running) to its last commit."""
        return max(0.0, ((self.ended_at or self.updated_at) - self.started_at).total_seconds())


@dataclass(frozen=True)
class TaskRecord:
    run_id: str
    name: str
    position: int
    status: TaskStatus = TaskStatus.PENDING
    cursor: JSON = None
    pages: int = 0
    records: int = 0
    ok: int = 0
    failed: int = 0
    total: int | None = None
    error: str | None = None
    retryable: bool = False
    started_at: datetime | None = None
    updated_at: datetime | None = None
    completed_at: datetime | None = None


@dataclass(frozen=True)
class PhaseRecord:
    run_id: str
    name: str
    position: int
    completed_at: datetime | None = None


class LedgerEntry(NamedTuple):
    """One item's outcome. ``ok`` entries carry no error; a later entry for the same ID replaces it.

    A named tuple, not a dataclass: millions are made, and a tuple is several times cheaper to build.
    """

    run_id: str
    task: str
    item_id: str
    ok: bool
    error: str | None = None
    retryable: bool = False
    kind: LedgerKind = LedgerKind.ITEMS


@dataclass(frozen=True)
class FailedItem:
    item_id: str
    error: str | None
    retryable: bool


@dataclass(frozen=True)
class LedgerCounts:
    ok: int
    failed: int

    @property
    def total(self) -> int:
        return self.ok + self.failed


@dataclass(frozen=True)
class ProgressSample:
    """A run's totals at one commit, for the dashboard's history charts (see ``syncpoint.samples``).

    ``slot`` is the sample's place in the run's bounded set (0 ≤ slot < the cap): a later sample may reuse a
    slot when the set is thinned out, so a store keeps one sample per (run_id, slot) and the chart orders
    them by ``at``.
    """

    run_id: str
    slot: int
    at: datetime
    items_ok: int = 0
    items_failed: int = 0
    records: int = 0
    pages: int = 0


@dataclass(frozen=True)
class StateEntry:
    job: str
    key: str
    value: JSON
    updated_at: datetime


class LeaseState(str, enum.Enum):
    """Where a task's lease is (many workers on one run, ``syncpoint.distributed``)."""

    QUEUED = "queued"  # waiting for a worker
    LEASED = "leased"  # a worker holds it
    FINISHED = "finished"  # the task completed, or failed for good


@dataclass(frozen=True)
class LeaseInfo:
    """A task's lease as the store holds it: who works on the task, since when, and its last sign of life.

    ``read_at`` is the store's own clock at the moment it was read: ages (of the lease, of its heartbeat) are
    measured against it, so a reader whose clock is off does not take a live worker for a dead one.
    """

    run_id: str
    task: str
    state: LeaseState
    epoch: int
    host: str | None = None
    pid: int | None = None
    worker: str | None = None
    leased_at: datetime | None = None
    heartbeat_at: datetime | None = None
    queued_at: datetime | None = None
    commits: int = 0
    failures: int = 0
    takeovers: int = 0
    read_at: datetime | None = None
    stall_timeout: float | None = None  # seconds; the holder's fleet's setting

"""syncpoint: interruptible, resumable long-running data syncs.

    import syncpoint

    job = syncpoint.Job("drucksachen", config={"base_url": url})
    with job.run(resume=True) as run:
        task = run.task("drucksache")
        mark = task.watermark(syncpoint.NEWEST_FIRST)
        ...
    raise SystemExit(run.exit_code)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from syncpoint.cursors import NEWEST_FIRST, OLDEST_FIRST, OffsetCursor, Order, PageCursor, TokenCursor, Watermark
from syncpoint.errors import (
    AttemptsExhausted,
    ConfigChanged,
    CorruptState,
    ExitCode,
    InvalidDate,
    InvalidName,
    JobLocked,
    LockHolder,
    SchemaTooNew,
    Stopped,
    StoreError,
    StoreUnavailable,
    SyncpointError,
    UsageError,
)
from syncpoint.files import JsonlSink
from syncpoint.intervals import IntervalSet
from syncpoint.job import Job
from syncpoint.model import (
    FailedItem,
    LedgerCounts,
    PhaseRecord,
    RunRecord,
    RunStatus,
    StateEntry,
    TaskRecord,
    TaskStatus,
)
from syncpoint.options import Command, RunOptions, add_arguments, click_options, options_from_namespace
from syncpoint.pacing import SavePolicy
from syncpoint.pipeline import Pipeline
from syncpoint.run import Run
from syncpoint.sources import PendingItems, Slice, Slices
from syncpoint.stores import open_store
from syncpoint.stores.base import Store
from syncpoint.task import Task
from syncpoint.workers import MapSummary

if TYPE_CHECKING:
    from syncpoint.aio import AsyncRun


#: The exit codes' old names, deprecated: ``EXIT_PARTIAL`` is ``ExitCode.PARTIAL`` (the same number).
_DEPRECATED_EXIT_CODES = {f"EXIT_{code.name}": code for code in ExitCode}


def __getattr__(name: str) -> object:
    """Names loaded or answered only when asked for.

    ``AsyncRun`` is imported when first used: asyncio costs a third of ``import syncpoint``'s time, and most
    syncs (and every short crash-looped subprocess) never need it. The ``EXIT_*`` ints are deprecated
    aliases of ``ExitCode``: they still answer, with their old plain int, and warn."""
    if name == "AsyncRun":
        from syncpoint.aio import AsyncRun

        return AsyncRun
    code = _DEPRECATED_EXIT_CODES.get(name)
    if code is not None:
        from syncpoint.renamed import warn_renamed

        warn_renamed(f"syncpoint.{name}", f"syncpoint.ExitCode.{code.name} (the same number)")
        return int(code)
    raise AttributeError(f"module 'syncpoint' has no attribute {name!r}")


__version__ = "0.1.0"
"""This syncpoint's version. The one place it is written: pyproject.toml reads it (``dynamic = ["version"]``),
and so does ``syncpoint --version``; CHANGELOG.md says what changed when it moves."""

__all__ = [
    "NEWEST_FIRST",
    "OLDEST_FIRST",
    "AsyncRun",
    "AttemptsExhausted",
    "Command",
    "ConfigChanged",
    "CorruptState",
    "ExitCode",
    "FailedItem",
    "IntervalSet",
    "InvalidDate",
    "InvalidName",
    "Job",
    "JobLocked",
    "JsonlSink",
    "LedgerCounts",
    "LockHolder",
    "MapSummary",
    "OffsetCursor",
    "Order",
    "PageCursor",
    "PendingItems",
    "PhaseRecord",
    "Pipeline",
    "Run",
    "RunOptions",
    "RunRecord",
    "RunStatus",
    "SavePolicy",
    "SchemaTooNew",
    "Slice",
    "Slices",
    "StateEntry",
    "Stopped",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "SyncpointError",
    "Task",
    "TaskRecord",
    "TaskStatus",
    "TokenCursor",
    "UsageError",
    "Watermark",
    "__version__",
    "add_arguments",
    "click_options",
    "open_store",
    "options_from_namespace",
]

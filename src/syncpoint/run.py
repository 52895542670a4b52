"""A run's lifecycle: lock, new-or-resume, signals, save policy, budgets, final status and exit code.

    with job.run(options) as run:          # takes the job's lock, decides new or resume, installs handlers
        for task in run.tasks(names):      # the tasks still to process (a safe point before each)
            with task:                     # in_progress → complete, or failed with error + retryable
                ...task.item_done(id)...   # buffered; committed by the save policy (group commit)
    sys.exit(run.exit_code)                # 0 completed · 1 failed · 2 partial · 130/143 signal

The body runs between safe points. A first SIGINT/SIGTERM only sets a flag; at the next safe point
(``item_done``, a cursor's ``done``, ``checkpoint()``, the next task) the run commits and raises
``Stopped``, which unwinds the body and ends the run as ``interrupted``. Budgets end it as ``partial``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

from syncpoint import codec, samples
from syncpoint.errors import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_SIGINT,
    InvalidName,
    Stopped,
    StoreError,
    SyncpointError,
    UsageError,
)
from syncpoint.model import JSON, PhaseRecord, RunRecord, RunStatus, TaskRecord, TaskStatus, utcnow
from syncpoint.names import check_value_name
from syncpoint.options import RunOptions
from syncpoint.resume import choose_run
from syncpoint.signals import SignalWatch, exit_code_for
from syncpoint.state import JobState
from syncpoint.stores.base import ChangeSet, JobLock, LedgerClear, Store
from syncpoint.task import Task

if TYPE_CHECKING:
    from syncpoint.job import Job

MAX_ITEM_ID = 1000


@dataclass(frozen=True)
class SavePolicy:
    """When buffered progress is committed; always also on stop, budget, error and at the end.

    The defaults bound the redo window after a ``kill -9`` to one page, 10,000 items or 5 seconds of work,
    whichever comes first. Time is the bound that matters for slow items (an API call each); the item
    count only caps fast ones, where a transaction per 10,000 random IDs costs a third of one per 1,000
    (every commit rewrites most leaf pages of the ledger's B-tree; see benchmarks/bench_sqlite.py).
    """

    every_items: int = 10_000
    every_pages: int = 1
    every_seconds: float = 5.0


class Run:
    """One attempt at a job. Open it with ``with job.run(...) as run:``."""

    def __init__(self, job: Job, options: RunOptions) -> None:
        self.job = job
        self.store = job.store
        self.options = options
        self.policy = job.save_policy
        self.log = logging.getLogger("syncpoint.run")
        self.record: RunRecord
        self.resumed = False
        self.exit_code: int | None = None
        self.error: BaseException | None = None
        self.state = JobState(job.name, self)
        self._tasks: dict[str, Task] = {}
        self._persisted_tasks: set[str] = set()
        self._dirty: dict[str, Task] = {}
        self._phases: dict[str, PhaseRecord] = {}
        self._dirty_phases: list[PhaseRecord] = []
        self._signals = SignalWatch()
        self._lock: JobLock | None = None
        self._items_since = self._pages_since = self._items_total = 0
        self._records_total = 0  # records reported by cursors; the item budget counts the larger of the two
        self._last_commit = self._started = time.monotonic()
        self._item_limit = options.max_items if options.max_items is not None else float("inf")
        self._connection: object | None = None
        self._tainted = False
        self._committed_at: datetime | None = None
        self._lost_run = False
        self._set_deadline()

    # -- identity ------------------------------------------------------------------------------------
    @property
    def run_id(self) -> str:
        return self.record.run_id

    @property
    def status(self) -> RunStatus:
        return self.record.status

    @property
    def retry_failed(self) -> bool:
        return self.options.retry_failed

    @property
    def params(self) -> dict[str, Any]:
        return self.record.params

    @property
    def stopping(self) -> bool:
        """True once a stop was requested (signal) or a budget is used up; the next safe point stops."""
        return self._stop_reason() is not None

    # -- opening and closing -------------------------------------------------------------------------
    def __enter__(self) -> Run:
        self._lock = self.store.lock(self.job.name)
        try:
            self.record, self.resumed = choose_run(self.job, self.options)
            self._lock.set_run(self.run_id)
            if self.resumed:
                self._load()
            self.state._load(self.store.get_state(self.job.name))
            self._signals.__enter__()
            self._commit()
            self.log.info(
                "%s run %s of job %s (checkpoints: %s)",
                "resuming" if self.resumed else "started", self.run_id, self.job.name, self.store.location,
            )
        except BaseException:
            self._release()
            raise
        return self

    def _load(self) -> None:
        for record in self.store.get_tasks(self.run_id):
            self._tasks[record.name] = Task(self, record)
            self._persisted_tasks.add(record.name)
        self._phases = {p.name: p for p in self.store.get_phases(self.run_id)}

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        try:
            if exc is not None and not isinstance(exc, Stopped):
                self._abandon_transaction()  # the body died between safe points: its rows are not whole
            status, code = self._outcome(exc)
            status, code = self._apply_attempt_limit(status, code)
            self.record = replace(
                self.record, status=status, exit_code=code, ended_at=utcnow(),
                error=self.record.error if status is not RunStatus.COMPLETED else None,
            )
            self._commit()
            self.exit_code = code
            self._log_end(status)
        except SyncpointError as err:
            if not (isinstance(self.error, SyncpointError) and str(self.error) == str(err)):
                self.log.error("%s", err)  # the same error again (the final commit failed too): said once
            self.error = err
            self.exit_code = err.exit_code
        finally:
            self._release()
        return exc is None or isinstance(exc, (Exception, Stopped, KeyboardInterrupt))

    def _outcome(self, exc: BaseException | None) -> tuple[RunStatus, int]:
        if exc is None:
            return self._finished_outcome()
        self.error = exc
        if isinstance(exc, Stopped):
            status = RunStatus.PARTIAL if exc.exit_code == EXIT_PARTIAL else RunStatus.INTERRUPTED
            self.record = replace(self.record, error=exc.reason)
            return status, exc.exit_code
        if isinstance(exc, KeyboardInterrupt):
            return RunStatus.INTERRUPTED, EXIT_SIGINT
        if isinstance(exc, SyncpointError):
            self.log.error("%s", exc)
        elif isinstance(exc, Exception):
            self.log.error("run %s failed", self.run_id, exc_info=exc)
        self.record = replace(self.record, error=str(exc) or type(exc).__name__)
        return RunStatus.FAILED, getattr(exc, "exit_code", EXIT_FAILED)

    def _finished_outcome(self) -> tuple[RunStatus, int]:
        if self._tainted:
            self.record = replace(self.record, error="a commit in the bound transaction failed and was rolled back")
            return RunStatus.FAILED, EXIT_FAILED
        for task in self._tasks.values():
            if task.status is TaskStatus.IN_PROGRESS:
                task._mark_complete()  # the body has returned: a signal arriving now stops nothing
        statuses = [t.record for t in self._tasks.values()]
        if any(t.status is TaskStatus.FAILED and t.retryable for t in statuses):
            self.record = replace(self.record, error="some tasks failed with retryable errors; resume to retry")
            return RunStatus.FAILED, EXIT_FAILED
        if any(t.status is TaskStatus.PENDING for t in statuses):
            return RunStatus.PARTIAL, EXIT_PARTIAL
        return RunStatus.COMPLETED, EXIT_OK

    def _apply_attempt_limit(self, status: RunStatus, code: int) -> tuple[RunStatus, int]:
        limit = self.options.max_attempts
        if status is RunStatus.COMPLETED or limit is None or self.record.attempts < limit:
            return status, code
        self.record = replace(
            self.record, error=f"used {self.record.attempts} of {limit} attempts without finishing"
        )
        return RunStatus.FAILED, EXIT_FAILED

    def _log_end(self, status: RunStatus) -> None:
        where = f"run {self.run_id} in {self.store.location}"
        if status is RunStatus.COMPLETED:
            self.log.info("run %s of job %s completed", self.run_id, self.job.name)
        elif status in (RunStatus.INTERRUPTED, RunStatus.PARTIAL):
            positions = ", ".join(f"{t.name} at {json.dumps(t.cursor)}" for t in self._unfinished()[:5])
            self.log.warning(
                "%s (%s); checkpoint committed: %s%s; continue with --resume",
                status.value, self.record.error, where, f" ({positions})" if positions else "",
            )
        else:
            self.log.error("run %s failed: %s; checkpoint committed: %s", self.run_id, self.record.error, where)

    def _unfinished(self) -> list[Task]:
        return [t for t in self._tasks.values() if t.status is not TaskStatus.COMPLETE]

    def _release(self) -> None:
        self._signals.__exit__(None, None, None)
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    # -- tasks and phases ----------------------------------------------------------------------------
    def task(self, name: str) -> Task:
        """The task called ``name``, created (pending) if this run does not have it yet."""
        task = self._tasks.get(name)
        if task is None:
            check_value_name(name, "task name")
            record = TaskRecord(run_id=self.run_id, name=name, position=len(self._tasks), updated_at=utcnow())
            task = self._tasks[name] = Task(self, record)
            self._dirty[name] = task
        return task

    def tasks(
        self,
        names: Iterable[str] | None = None,
        *,
        retry_failed: bool | None = None,
        start_from: str | None = None,
    ) -> Iterator[Task]:
        """The tasks still to process, in order. A safe point before each.

        With ``names``, only those tasks (registered now if new, e.g. one phase's tasks); without, all of
        the run's tasks. Complete tasks are skipped; failed tasks are offered again when their error was
        retryable, and all of them with ``retry_failed``; ``start_from`` skips the tasks before the named one.
        """
        wanted: set[str] | None = None
        if names is not None:
            wanted = set()
            for name in names:
                wanted.add(self.task(name).name)
        retry = self.options.retry_failed if retry_failed is None else retry_failed
        start = self.options.start_from if start_from is None else start_from
        order = sorted(self._tasks.values(), key=lambda t: t._base.position)
        if start is not None:
            index = next((i for i, t in enumerate(order) if t.name == start), None)
            if index is None:
                raise UsageError(f"--from {start!r}: no such task in run {self.run_id}")
            order = order[index:]
        for task in order:
            rec = task.record
            if (wanted is not None and task.name not in wanted) or rec.status is TaskStatus.COMPLETE or (
                rec.status is TaskStatus.FAILED and not rec.retryable and not retry
            ):
                continue
            self.checkpoint()
            yield task

    def all_tasks(self) -> list[Task]:
        return sorted(list(self._tasks.values()), key=lambda t: t._base.position)

    def task_snapshots(self) -> list[TaskRecord]:
        """Every task's progress right now, in order; read-only, safe from a progress thread."""
        return [task.snapshot() for task in self.all_tasks()]

    def phase_done(self, name: str) -> bool:
        phase = self._phases.get(name)
        return phase is not None and phase.completed_at is not None

    def complete_phase(self, name: str) -> None:
        check_value_name(name, "phase name")
        position = self._phases[name].position if name in self._phases else len(self._phases)
        phase = PhaseRecord(self.run_id, name, position, utcnow())
        self._phases[name] = phase
        self._dirty_phases.append(phase)
        self._commit()

    # -- safe points and commits ---------------------------------------------------------------------
    def checkpoint(self) -> None:
        """A safe point: commit if the save policy says so; stop here if a signal or budget asks."""
        reason = self._stop_reason()
        if reason is not None:
            self._commit()
            raise Stopped(*reason)
        if self._commit_due():
            self._commit()

    def commit(self) -> None:
        """Commit buffered progress now."""
        self._commit()

    def sleep(self, seconds: float) -> None:
        """Sleep, but wake within a fifth of a second when a stop is requested (rate-limit waits).

        Hand this to HTTP helpers as their sleep function: a plain ``time.sleep`` keeps sleeping after the
        first Ctrl+C (the handler only sets a flag), so a 15-minute rate-limit wait would ignore it.
        """
        deadline = time.monotonic() + max(0.0, seconds)
        while self._signals.received is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.2))

    def _stop_reason(self) -> tuple[str, int] | None:
        if self._signals.received is not None:
            return f"stopped by {self._signals.name}", exit_code_for(self._signals.received)
        limit = self.options.max_items
        if limit is not None and self._budget_used() >= limit:
            return f"item budget of {limit} reached", EXIT_PARTIAL
        seconds = self.options.max_seconds
        if seconds is not None and time.monotonic() - self._started >= seconds:
            return f"time budget of {seconds:g}s reached", EXIT_PARTIAL
        return None

    def _within_item_budget(self) -> bool:
        limit = self.options.max_items
        seconds = self.options.max_seconds
        timed_out = seconds is not None and time.monotonic() - self._started >= seconds
        return not timed_out and limit is not None and self._budget_used() <= limit

    def _budget_used(self) -> int:
        """Work done in this invocation, for ``max_items``: items recorded (ledger, watermark) or records
        reported by cursors (``done(page, records=N)``), whichever is larger, so a sync that does both is
        not counted twice and a page-cursor sync is bounded too."""
        return max(self._items_total, self._records_total)

    def _commit_due(self) -> bool:
        p = self.policy
        return (
            self._items_since >= p.every_items
            or self._pages_since >= p.every_pages
            or (time.monotonic() - self._last_commit >= p.every_seconds and bool(self._dirty))
        )

    def _after_progress(self, items: int, pages: int, records: int = 0) -> None:
        """Called after every recorded item or page: the hot path, so one clock read and a few compares."""
        self._items_since += items
        self._pages_since += pages
        self._items_total += items
        self._records_total += records
        if (
            self._signals.received is not None
            or self._items_total > self._item_limit
            or self._records_total > self._item_limit
            or self._items_since >= self.policy.every_items
            or self._pages_since >= self.policy.every_pages
            or time.monotonic() >= self._deadline
        ):
            self._after_progress_slow()

    def _after_progress_slow(self) -> None:
        reason = self._stop_reason()
        # Right after an item the item budget stops only once exceeded (a loop that does not call
        # checkpoint() before each item); at a safe point before work it stops as soon as it is reached,
        # so a batch that ends exactly with the last item still completes.
        if reason is not None and not (reason[1] == EXIT_PARTIAL and self._within_item_budget()):
            self._commit()
            raise Stopped(*reason)
        if self._commit_due():
            self._commit()

    def _task_failed(self, task: Task) -> None:
        self._commit()

    def _mark_dirty(self, task: Task) -> None:
        self._dirty[task.name] = task

    def _persisted(self, task: Task) -> bool:
        return task.name in self._persisted_tasks

    def bind(self, connection: object) -> None:
        """Commit every checkpoint inside ``connection``'s transaction, then commit that connection.

        For a destination in the store's own database (PostgreSQL): the rows the sync wrote since the last
        commit and the checkpoint that covers them commit together or not at all, so a ``kill -9`` can
        neither lose nor duplicate a row. If the body raises, the connection is rolled back and the
        uncommitted progress is dropped with it; only the run's status is recorded.
        """
        if type(self.store).apply_in is Store.apply_in:
            raise UsageError(f"{type(self.store).__name__} cannot commit inside another transaction; use PostgreSQL")
        self._connection = connection

    def _commit(self) -> None:
        changes = ChangeSet()
        self.record = replace(self.record, updated_at=utcnow())
        changes.runs.append(self.record)
        dirty = [] if self._tainted else list(self._dirty.values())
        for task in dirty:
            changes.tasks.append(task._fold())
            clears, entries = task._take_changes()
            changes.ledger_clears.extend(LedgerClear(self.run_id, task.name, kind) for kind in clears)
            changes.ledger.extend(entries)
        if not self._tainted:
            changes.phases.extend(self._dirty_phases)
            self.state._take_changes(changes)
        changes.samples.extend(samples.due(self))  # dashboard: a progress sample when one is due (samples.py)
        self._confirm_lock()
        self._apply(changes)
        self._committed_at = self.record.updated_at
        for task in dirty:
            task._committed()
            self._persisted_tasks.add(task.name)
        if not self._tainted:
            self._dirty.clear()
            self._dirty_phases.clear()
            self.state._committed()
        self._items_since = self._pages_since = 0
        self._last_commit = time.monotonic()
        self._set_deadline()

    def _confirm_lock(self) -> None:
        """Before writing: a lock that can be lost (PostgreSQL, a terminated session) is re-checked.

        If it was lost and re-taken, another process may have worked on the run meanwhile; if the stored run
        changed since our last commit, writing our in-memory state over it would mix two writers' work.
        """
        if not self._lost_run:
            if self._lock is None or self._lock.check():
                return
            stored = self.store.get_run(self.run_id)
            if self._committed_at is None or (stored is not None and stored.updated_at == self._committed_at):
                return
            self._lost_run = True  # never write again, not even the run's final status
        raise StoreError(
            f"lost the lock on job {self.job.name!r} and run {self.run_id} was changed by another process "
            "meanwhile; stopped without committing (resume to continue from its checkpoint)"
        )

    def _apply(self, changes: ChangeSet) -> None:
        conn: Any = self._connection
        if conn is None or self._tainted:  # after a rollback only the run's status is written, on its own
            self.store.apply(changes)
            return
        try:
            self.store.apply_in(conn, changes)
            conn.commit()
        except SyncpointError:
            self._abandon_transaction()
            raise
        except Exception as exc:  # the bound connection broke (server gone, backend terminated, closed)
            self._abandon_transaction()
            raise StoreError(
                f"the bound destination connection failed while committing the checkpoint "
                f"({str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}); "
                "its rows and the progress since the last commit were rolled back together; resume to redo them"
            ) from None
        except BaseException:
            self._abandon_transaction()
            raise

    def _abandon_transaction(self) -> None:
        """Roll back the bound connection; progress buffered since the last commit went with it."""
        conn: Any = self._connection
        if conn is not None and not self._tainted:
            try:
                conn.rollback()
            except Exception:
                pass
            finally:
                self._tainted = True

    def _set_deadline(self) -> None:
        """The next instant the hot path must look up from its counters: a time commit or the time budget."""
        deadline = self._last_commit + self.policy.every_seconds
        if self.options.max_seconds is not None:
            deadline = min(deadline, self._started + self.options.max_seconds)
        self._deadline = deadline

    # -- validation helpers used by tasks ------------------------------------------------------------
    def _check_json(self, value: JSON, what: str) -> None:
        try:
            codec.dumps(value)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"{what} must be JSON-serialisable: {exc}") from None

    def _check_item_id(self, item_id: object) -> str:
        if not isinstance(item_id, str):
            if isinstance(item_id, int) and not isinstance(item_id, bool):
                return str(item_id)
            raise InvalidName(f"item IDs must be strings or integers, got {type(item_id).__name__}")
        if not item_id or len(item_id) > MAX_ITEM_ID:
            raise InvalidName(f"item ID must be 1..{MAX_ITEM_ID} characters, got {len(item_id)}")
        return item_id

    def __repr__(self) -> str:
        return f"<Run {self.record.run_id if hasattr(self, 'record') else '?'} of {self.job.name}>"


def new_run_id(now: datetime) -> str:
    import secrets

    return f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"

"""One worker's share of a run: a single task, held under a lease, committed with its epoch.

    run = WorkerRun(job, run_id, task, epoch, ...)
    outcome = run.execute(fn)        # fn(run, task); the lease's end is decided from how fn ended

The run itself (its record, its status) belongs to nobody here: the fan-out created it and the commit that
finishes its last lease ends it (``finish_run_if_done``, in the store). A ``WorkerRun`` writes only its task,
the task's ledger and the job's state, and every commit carries the lease's fence, so that a worker presumed
dead writes nothing once another holds the task. It offers the task the same host as a ``Run`` does
(``syncpoint.task.TaskHost``): counters, ledger, cursors, the save policy, safe points and ``bind``.
"""

from __future__ import annotations

import enum
import functools
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from syncpoint.buffer import ChangeBuffer
from syncpoint.committer import Also, Committer
from syncpoint.errors import EXIT_FAILED, LeaseLost, Stopped, UsageError
from syncpoint.failures import FailureRule
from syncpoint.model import LeaseState, RunRecord, RunStatus, TaskStatus
from syncpoint.pacing import Budget, Pacer
from syncpoint.state import JobState
from syncpoint.stores.base import ChangeSet, LeaseFence, Store
from syncpoint.task import ErrorTypes, Task

if TYPE_CHECKING:
    from syncpoint.job import Job
    from syncpoint.workers import MapSummary

log = logging.getLogger("syncpoint.distributed")

#: Defers the queue job that continues a task, in the commit's transaction: (connection, delay in seconds).
Continue = Callable[[Any, float], None]


class Ending(str, enum.Enum):
    """How a worker let go of its task."""

    COMPLETED = "completed"  # the task is complete; the lease is finished
    FAILED = "failed"  # the task failed for good (permanent, or attempts used up); the lease is finished
    RETRY = "retry"  # the task failed retryably; a new queue job takes it after the retry wait
    HANDED_OFF = "handed off"  # stopped (signal, budget): the lease is queued for another worker at once
    LOST = "lost"  # another worker took the lease over; nothing more was written
    STALE = "stale"  # the run is not running any more (deleted or ended); nothing was done


@dataclass(frozen=True)
class Attempts:
    """The retry rule for a task that fails with a retryable error."""

    max_attempts: int = 3
    retry_wait: float = 5.0  # seconds before the first retry; doubled for each further one

    def wait(self, failures: int) -> float:
        return float(self.retry_wait * (2 ** max(0, failures - 1)))


class Binding:
    """``with run.bind(conn):`` — see ``WorkerRun.bind``."""

    def __init__(self, run: WorkerRun) -> None:
        self._run = run

    def __enter__(self) -> Binding:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        self._run.unbind(commit=exc is None)


class WorkerRun:
    """A task of a shared run, held by this worker under a lease (``syncpoint.distributed``)."""

    def __init__(
        self, job: Job, run_id: str, task: str, epoch: int, *, failures: int, attempts: Attempts,
        continue_task: Continue,
    ) -> None:
        self.job = job
        self.epoch = epoch
        self.failures = failures  # failed attempts before this one
        self._attempts = attempts
        self._continue = continue_task
        self.task_name = task
        self._log = logging.getLogger(f"syncpoint.job.{job.name}")
        self._failure_rule = FailureRule(job.permanent_errors)
        self.pacer = Pacer(job.save_policy, Budget(None, None))
        self._buffer = ChangeBuffer(run_id, job.name)
        self._committer = Committer(self.store, self._buffer, lambda: "lease lost")
        self._fence = LeaseFence(run_id, task, epoch)
        self._committer.before_apply.append(self._add_fence)
        self._lost = threading.Event()
        #: True once the attempt's last commit (which ends or hands back the lease) has begun: the keeper's
        #: heartbeat skips it, instead of finding the lease no longer held and calling it lost.
        self.ending = False
        self.record: RunRecord
        self.task: Task
        self._run_id = run_id

    # -- what a task needs from its host (syncpoint.task.TaskHost) -------------------------------------
    @property
    def run_id(self) -> str:
        return self._run_id

    @property
    def store(self) -> Store:
        return self.job.store

    @property
    def buffer(self) -> ChangeBuffer:
        return self._buffer

    @property
    def log(self) -> logging.Logger:
        return self._log

    @property
    def retry_failed(self) -> bool:
        return False

    @property
    def tainted(self) -> bool:
        return self._committer.tainted

    @property
    def params(self) -> dict[str, Any]:
        return self.record.params

    @property
    def config(self) -> dict[str, Any]:
        return self.record.config

    @property
    def stopping(self) -> bool:
        return self.pacer.stop_reason() is not None

    @property
    def lost(self) -> bool:
        """Another worker holds the lease now (seen by a commit or by the heartbeat)."""
        return self._lost.is_set()

    def after_progress(self, items: int, pages: int, records: int) -> None:
        if not self.pacer.note(items, pages, records):
            return
        self._safe_point()

    def checkpoint(self) -> None:
        self._safe_point()

    def _safe_point(self) -> None:
        reason = self.pacer.stop_reason()
        if reason is not None:
            if not self.lost:
                self.commit()
            raise Stopped(*reason)
        if self.pacer.commit_due(self._buffer.dirty):
            with self._committer.serial:
                if self.pacer.commit_due(self._buffer.dirty):
                    self.commit()

    def admit_item(self) -> bool:
        return self.pacer.admit_item()

    def refuse_item(self) -> NoReturn:
        reason = self.pacer.stop_reason() or ("stopped", EXIT_FAILED)
        raise Stopped(*reason)

    def commit(self, *, also: Also | None = None) -> None:
        """Commit the task's progress under the lease (from any thread); ``LeaseLost`` if it was taken over."""
        with self._committer.serial:
            try:
                self._committer.commit(None, also=also)
            except LeaseLost:
                self.lose()
                raise
            self.pacer.committed()

    def is_retryable(self, error: BaseException) -> bool:
        return self._failure_rule.retryable(error)

    def bind(self, connection: object) -> Binding:
        """Commit each checkpoint inside ``connection``'s transaction (see ``Run.bind``): the task's rows and
        its progress commit together, and a fenced worker's rows are rolled back with its refused commit.

        Use it as ``with run.bind(conn):`` around the writing: the block's end commits the last rows with
        their checkpoint and lets go of ``conn`` (which may then be closed); an exception rolls back what the
        block wrote since the last commit. Without ``with``, ``conn`` must stay open until the task function
        has returned: the attempt's last commit goes through it.
        """
        self._committer.bind(connection)
        return Binding(self)

    def unbind(self, *, commit: bool) -> None:
        """Stop committing through the bound connection: after a last commit through it (``commit``), or
        rolling back what it wrote since the last commit (an error: those rows are not whole)."""
        if commit and not self.tainted:
            self.commit()
        else:
            self._committer.abandon_transaction()
        self._committer.unbind()

    def map(
        self, fn: Callable[[Any], object], work: Iterable[Any], *, concurrency: int = 8, grace: float | None = None,
        errors: ErrorTypes = Exception,
    ) -> MapSummary:
        """Run ``fn`` over ``work`` with ``concurrency`` threads inside this task, as ``Run.map`` does:
        ``task.pending(items)`` (each item recorded done or failed as it finishes), ``task.slices(...)`` (each
        slice merged into the task's interval set), or any iterable. Every commit it causes goes under the
        lease; a stop (a signal to the worker, the lease lost) ends it within ``grace``, and the task is handed
        back or fenced as after any other safe point."""
        from syncpoint.workers import run_map

        return run_map(self, fn, work, concurrency=concurrency, grace=grace, errors=errors)

    def sleep(self, seconds: float) -> None:
        """Sleep, waking at once when the worker is asked to stop (see ``Run.sleep``)."""
        self.pacer.sleep(seconds)

    def request_stop(self, reason: str, exit_code: int) -> None:
        """Stop at the next safe point (a signal to the worker): the task is handed to another worker."""
        self.pacer.request_stop(reason, exit_code)

    def lose(self) -> None:
        """The lease is gone: stop at the next safe point and write nothing more."""
        self._lost.set()
        self.pacer.request_stop("lost the lease", EXIT_FAILED)

    def _add_fence(self, changes: ChangeSet) -> None:
        changes.fence = self._fence

    # -- the whole of one attempt ---------------------------------------------------------------------
    def open(self) -> bool:
        """Load the run and the task; False if the run is not running any more (nothing to do)."""
        record = self.store.get_run(self.run_id)
        if record is None or record.status is not RunStatus.RUNNING:
            return False
        self.record = record
        task = self.store.get_task(self.run_id, self.task_name)
        if task is None:
            raise UsageError(f"run {self.run_id} has no task {self.task_name!r}")
        self.task = Task(self, task)
        self._buffer.mark_persisted([self.task_name])
        return True

    @functools.cached_property
    def state(self) -> JobState:
        """The job's bookmarks (read when first used: most tasks never touch them). Shared by every worker
        of the job: the last commit of a key wins."""
        return JobState(self.job.name, self._buffer, self.store.get_state(self.job.name), self.commit)

    def execute(self, fn: Callable[[WorkerRun, Task], object]) -> Ending:
        """Run ``fn`` on the task and end the lease as its outcome says, in one commit with the fence.

        Any commit of the attempt may find the lease taken over — the task's own, the one that ends it, the
        hand-off after a signal: each is the lease lost, nothing written, never an error of the job."""
        try:
            return self._attempt(fn)
        except LeaseLost as err:
            self.lose()
            self.log.warning("%s; this worker wrote nothing more", err)
            return Ending.LOST

    def _attempt(self, fn: Callable[[WorkerRun, Task], object]) -> Ending:
        if not self.open():  # the run ended or was deleted meanwhile: let the lease go
            self._finish(LeaseState.FINISHED)
            return Ending.STALE
        task = self.task
        try:
            try:
                task.start()
                fn(self, task)
                task.finish()
            except (LeaseLost, Stopped):
                raise
            except Exception as exc:
                self._committer.abandon_transaction()  # died between safe points: bound rows are not whole
                task.fail(exc)  # retryable or not by the job's rule (syncpoint.failures)
            return self._end(task)
        except Stopped as stop:
            if self.lost:
                return Ending.LOST
            self._finish(None, also=lambda conn: self._continue(conn, 0.0))
            self.log.info("task %s handed back (%s): another worker continues it", task.name, stop.reason)
            return Ending.HANDED_OFF

    def _end(self, task: Task) -> Ending:
        record = task.record
        if record.status is TaskStatus.COMPLETED:
            self._finish(LeaseState.FINISHED)
            return Ending.COMPLETED
        failures = self.failures + 1
        if record.retryable and failures < self._attempts.max_attempts:
            wait = self._attempts.wait(failures)
            self._finish(None, failed=True, also=lambda conn: self._continue(conn, wait))
            self.log.warning(
                "task %s failed (attempt %d of %d; retried in %.3g s): %s", task.name, failures,
                self._attempts.max_attempts, wait, record.error,
            )
            return Ending.RETRY
        self._finish(LeaseState.FINISHED, failed=True, retryable=record.retryable)
        self.log.error("task %s failed for good (attempt %d of %d): %s", task.name, failures,
                       self._attempts.max_attempts if record.retryable else failures, record.error)
        return Ending.FAILED

    def _finish(
        self, end: LeaseState | None, *, failed: bool = False, retryable: bool = False, also: Also | None = None
    ) -> None:
        """The last commit of this attempt: the lease ends (``end``), or is queued again when ``also`` defers
        the job that continues the task — in the same transaction, so the task is never left without one."""
        state = end.value if end is not None else LeaseState.QUEUED.value
        self.ending = True  # from here the keeper leaves the lease alone: this commit lets it go
        self._fence = LeaseFence(self.run_id, self.task_name, self.epoch, end=state, failed=failed,
                                 retryable=retryable)
        self.commit(also=also)


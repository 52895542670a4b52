"""A run: the thin front that puts the runtime's parts together.

    with job.run(options) as run:          # takes the job's lock, decides new or resume, installs handlers
        for task in run.tasks(names):      # the tasks still to process (a safe point before each)
            with task:                     # in_progress → complete, or failed with error + retryable
                ...task.item_done(id)...   # buffered; committed by the save policy (group commit)
    sys.exit(run.exit_code)                # 0 completed · 2 partial · 130/143 signal · 1 failed

The parts, one job each: ``ChangeBuffer`` (what was recorded since the last commit), ``Pacer`` (when to
commit, when to stop), ``Committer`` (one commit at a time, plain or in a bound transaction, after a lock
check), ``SignalWatch`` (the first signal only sets a flag). ``Run`` opens and closes them, hands out tasks
and phases, and turns how the body ended into a final status and exit code.

The body runs between safe points. A first SIGINT/SIGTERM only sets a flag; at the next safe point
(``item_done``, a cursor's ``done``, ``checkpoint()``, the next task) the run commits and raises
``Stopped``, which unwinds the body and ends the run as ``interrupted``. Budgets end it as ``partial``.
Every progress call is safe from any thread; ``run.map`` runs a function over work with N threads.

How the ``with`` block ends: a stop (``Stopped``: a signal or a budget) and ``KeyboardInterrupt`` end the
run ``interrupted`` or ``partial``, committed, and go no further — ``run.exit_code`` says which. Any other
exception from the body ends the run ``failed``, with the error recorded and committed, and is then raised
again: a library does not hide your exceptions. Turning errors into an exit code and one line is
``Job.execute``'s job (``job.execute(options, body)``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from syncpoint import samples
from syncpoint.buffer import ChangeBuffer
from syncpoint.committer import Committer
from syncpoint.errors import EXIT_PARTIAL, Stopped, SyncpointError, UsageError
from syncpoint.failures import FailureRule
from syncpoint.model import PhaseRecord, RunRecord, RunStatus, TaskRecord, TaskStatus, utcnow
from syncpoint.names import check_value_name
from syncpoint.options import RunOptions
from syncpoint.outcome import final_outcome, log_end
from syncpoint.pacing import Budget, Pacer, SavePolicy
from syncpoint.renamed import warn_renamed
from syncpoint.resume import choose_run
from syncpoint.signals import SignalWatch, exit_code_for
from syncpoint.state import JobState
from syncpoint.stores.base import ChangeSet, JobLock, Store
from syncpoint.task import ErrorTypes, Task

if TYPE_CHECKING:
    from syncpoint.job import Job
    from syncpoint.workers import MapSummary

__all__ = ["Run", "SavePolicy", "new_run_id"]

T = TypeVar("T")


class Run:
    """One attempt at a job. Open it with ``with job.run(...) as run:``."""

    def __init__(self, job: Job, options: RunOptions) -> None:
        self.job = job
        self.options = options
        self.policy: SavePolicy = job.save_policy
        self._log = logging.getLogger("syncpoint.run")
        self.record: RunRecord
        self.resumed = False
        self.exit_code: int | None = None
        self.error: BaseException | None = None
        self.state: JobState
        self.pacer = Pacer(self.policy, Budget(options.max_items, options.max_seconds))
        self._failures = FailureRule(job.permanent_errors)
        self._signals = SignalWatch(self._on_signal)
        self._buffer: ChangeBuffer
        self._committer: Committer
        self._lock: JobLock | None = None
        self._tasks: dict[str, Task] = {}
        self._tasks_mu = threading.Lock()
        self._phases: dict[str, PhaseRecord] = {}
        self._closed = False
        #: Set by the asyncio front: called instead of committing in the hot path, so that the commit runs
        #: off the event loop (``syncpoint.aio``).
        self.defer_commit: Callable[[], None] | None = None

    # -- identity ------------------------------------------------------------------------------------
    @property
    def run_id(self) -> str:
        return self.record.run_id

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
    def status(self) -> RunStatus:
        return self.record.status

    @property
    def retry_failed(self) -> bool:
        return self.options.retry_failed

    @property
    def params(self) -> dict[str, Any]:
        return self.record.params

    @property
    def tainted(self) -> bool:
        """A commit in the bound transaction failed and was rolled back: no more progress is written."""
        return self._committer.tainted

    @property
    def stopping(self) -> bool:
        """True once a stop was requested (signal) or a budget is used up; the next safe point stops."""
        return self.pacer.stop_reason() is not None

    @property
    def stop_requested(self) -> tuple[str, int] | None:
        """(reason, exit code) of a signal's stop request, or None; budgets are not counted here."""
        return self.pacer.stop_requested

    # -- opening and closing -------------------------------------------------------------------------
    def __enter__(self) -> Run:
        self._signals.__enter__()
        try:
            self.open()
        except BaseException:
            self._signals.__exit__(None, None, None)
            raise
        return self

    def open(self) -> None:
        """Take the job's lock, choose new or resume, load the run and commit its start (no signal handlers:
        ``__enter__`` installs them, or the asyncio front on its loop's thread)."""
        self._lock = self.store.lock(self.job.name)
        try:
            self.record, self.resumed = choose_run(self.job, self.options)
            self._lock.set_run(self.run_id)
            self._buffer = ChangeBuffer(self.run_id, self.job.name)
            self._committer = Committer(self.store, self._buffer, self._lost_lock_message)
            self._committer.lock = self._lock
            self._committer.before_apply.append(self._add_sample)
            if self.resumed:
                self._load()
            self.state = JobState(self.job.name, self._buffer, self.store.get_state(self.job.name), self.commit)
            self.commit()
            self.log.info(
                "%s run %s of job %s (checkpoints: %s)",
                "resuming" if self.resumed else "started", self.run_id, self.job.name, self.store.location,
            )
        except BaseException:
            self._release_lock()
            raise

    def _load(self) -> None:
        records = self.store.get_tasks(self.run_id)
        for record in records:
            self._tasks[record.name] = Task(self, record)
        self._buffer.mark_persisted(r.name for r in records)
        self._phases = {p.name: p for p in self.store.get_phases(self.run_id)}

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        try:
            return self.close(exc)
        finally:
            self._signals.__exit__(None, None, None)

    def close(self, exc: BaseException | None) -> bool:
        """End the run: final status from how the body ended (``exc``), final commit, lock released.

        True when ``exc`` was handled — a stop (``Stopped``) or ``KeyboardInterrupt``: the exit code says how
        the run ended. Any other exception was recorded (the run failed, with it) and is the caller's to
        raise again (``__exit__`` does)."""
        self._closed = True
        try:
            if exc is not None and not isinstance(exc, Stopped):
                self._committer.abandon_transaction()  # the body died between safe points: its rows are not whole
            outcome = final_outcome(self, exc)
            self.error = outcome.error
            self.record = replace(
                self.record, status=outcome.status, exit_code=outcome.exit_code, ended_at=utcnow(),
                error=outcome.message,
            )
            if outcome.discard:
                self.store.apply(ChangeSet(run_deletes=[self.run_id]))
            else:
                self.commit()
            self.exit_code = outcome.exit_code
            log_end(self, outcome)
        except SyncpointError as err:
            if not (isinstance(self.error, SyncpointError) and str(self.error) == str(err)):
                self.log.error("%s", err)  # the same error again (the final commit failed too): said once
            self.error = err
            self.exit_code = err.exit_code
        finally:
            self._release_lock()
        return isinstance(exc, (Stopped, KeyboardInterrupt))

    def watch_signals(self) -> SignalWatch:
        """The run's signal handlers (a context manager), for fronts that open the run off the main thread."""
        return self._signals

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _add_sample(self, changes: ChangeSet) -> None:
        """The dashboard's progress samples: one in this commit when one is due (``syncpoint.samples``)."""
        changes.samples.extend(samples.due(self))

    def _on_signal(self, signum: int) -> None:
        self.pacer.request_stop(f"stopped by {self._signals.name}", exit_code_for(signum))

    def _lost_lock_message(self) -> str:
        return (
            f"lost the lock on job {self.job.name!r} and run {self.run_id} was changed by another process "
            "meanwhile; stopped without committing (resume to continue from its checkpoint)"
        )

    # -- tasks and phases ----------------------------------------------------------------------------
    def task(self, name: str) -> Task:
        """The task called ``name``, created (pending) if this run does not have it yet."""
        task = self._tasks.get(name)
        if task is None:
            check_value_name(name, "task name")
            with self._tasks_mu:
                task = self._tasks.get(name)
                if task is None:
                    record = TaskRecord(run_id=self.run_id, name=name, position=len(self._tasks), updated_at=utcnow())
                    task = self._tasks[name] = Task(self, record)
                    with self._buffer.lock:
                        self._buffer.touch(task)
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
        the run's tasks. Complete tasks are skipped (unless retrying failures and they have failed items);
        failed tasks are offered again when their error was retryable, and all of them with ``retry_failed``;
        ``start_from`` skips the tasks before the named one.
        """
        for task in self.pending_tasks(names, retry_failed=retry_failed, start_from=start_from):
            self.checkpoint()
            yield task

    def pending_tasks(
        self,
        names: Iterable[str] | None = None,
        *,
        retry_failed: bool | None = None,
        start_from: str | None = None,
    ) -> list[Task]:
        """The tasks ``tasks()`` would offer, as a list (no safe points): for ``run.map`` over tasks."""
        wanted = None if names is None else {self.task(name).name for name in names}
        retry = self.options.retry_failed if retry_failed is None else retry_failed
        start = self.options.start_from if start_from is None else start_from
        order = self.every_task()
        if start is not None:
            index = next((i for i, t in enumerate(order) if t.name == start), None)
            if index is None:
                raise UsageError(f"--from {start!r}: no such task in run {self.run_id}")
            order = order[index:]
        return [t for t in order if (wanted is None or t.name in wanted) and _offered(t.record, retry)]

    def every_task(self) -> list[Task]:
        """Every task of the run, in order, whatever its status (``tasks()`` gives only the ones to do)."""
        return sorted(list(self._tasks.values()), key=lambda t: t.position)

    def all_tasks(self) -> list[Task]:
        """Deprecated: ``every_task``."""
        warn_renamed("Run.all_tasks", "Run.every_task")
        return self.every_task()

    def task_records(self) -> list[TaskRecord]:
        """Every task's record right now (``task.record``), in order; read-only, safe from a progress thread."""
        return [task.record for task in self.every_task()]

    def is_phase_complete(self, name: str) -> bool:
        """Was the phase ``name`` completed (``complete_phase``) in this run?"""
        phase = self._phases.get(name)
        return phase is not None and phase.completed_at is not None

    def phase_done(self, name: str) -> bool:
        """Deprecated: ``is_phase_complete``."""
        warn_renamed("Run.phase_done", "Run.is_phase_complete")
        return self.is_phase_complete(name)

    def complete_phase(self, name: str) -> None:
        check_value_name(name, "phase name")
        position = self._phases[name].position if name in self._phases else len(self._phases)
        phase = PhaseRecord(self.run_id, name, position, utcnow())
        self._phases[name] = phase
        self._buffer.add_phase(phase)
        self.commit()

    # -- concurrency ---------------------------------------------------------------------------------
    def map(
        self, fn: Callable[[Any], object], work: Iterable[Any], *, concurrency: int = 8, grace: float | None = None,
        errors: ErrorTypes = Exception,
    ) -> MapSummary:
        """Run ``fn`` over ``work`` with ``concurrency`` threads, recording each outcome as it finishes.

        ``work`` is ``task.pending(items)`` (each item recorded done or failed), ``run.pending_tasks(...)``
        (each task completed or failed, like ``task.isolated()``), ``task.slices(...)`` (each slice recorded
        in the task's interval set), or any iterable (``fn`` records what it wants; the first exception stops
        the map and is raised). See ``syncpoint.workers``.

        ``errors`` (for the first three): the exceptions from ``fn`` that fail its unit, as ``task.isolated``'s
        do; every ``Exception`` by default. Any other ends the map: the run is asked to stop (the other
        workers stop at their next safe point), the unit is not recorded (a task stays in progress at its
        cursor), and the exception is raised.
        """
        from syncpoint.workers import run_map

        return run_map(self, fn, work, concurrency=concurrency, grace=grace, errors=errors)

    # -- safe points and commits ---------------------------------------------------------------------
    def checkpoint(self) -> None:
        """A safe point: commit if the save policy says so; stop here (``Stopped``) if a signal or budget asks.

        Call it where stopping is safe, e.g. before each page. Not ``commit()``: that writes now and never
        stops; this lets the policy batch commits (the redo window) and lets a Ctrl+C end the run here."""
        reason = self.pacer.stop_reason()
        if reason is not None:
            self._stop(reason)
        if self.pacer.commit_due(self._buffer.dirty):
            self._commit_due()

    def commit(self) -> None:
        """Commit buffered progress now, whatever the save policy, and go on: never a stop (``checkpoint()``
        is the safe point that may commit, and may stop). From any thread; commits run one at a time."""
        with self._committer.serial:
            self.record = replace(self.record, updated_at=utcnow())
            self._committer.commit(self.record)
            self.pacer.committed()

    def sleep(self, seconds: float) -> None:
        """Sleep, but wake at once when a stop is requested (rate-limit waits). Returns early then; the
        caller's next safe point (``checkpoint()``) stops the run.

        Hand this to HTTP helpers as their sleep function: a plain ``time.sleep`` keeps sleeping after the
        first Ctrl+C (the handler only sets a flag), so a 15-minute rate-limit wait would ignore it.
        """
        self.pacer.sleep(seconds)

    def admit_item(self) -> bool:
        return not self._closed and self.pacer.admit_item()

    def refuse_item(self) -> NoReturn:
        """An item the budget has no room for (or arriving after the run ended): not recorded; stop."""
        reason = self.pacer.stop_reason() or ("the run has ended", EXIT_PARTIAL)
        if self._closed:
            raise Stopped(*reason)
        self._stop(reason)

    def after_progress(self, items: int, pages: int, records: int) -> None:
        """After every recorded item or page: the hot path, so the pacer's few compares and nothing else."""
        if not self.pacer.note(items, pages, records) or self._closed:
            return
        reason = self.pacer.stop_reason(before_work=False)
        if reason is not None:
            self._stop(reason)
        if self.pacer.commit_due(self._buffer.dirty):
            self._commit_due()

    def _commit_due(self) -> None:
        if self.defer_commit is not None:
            self.defer_commit()
            return
        with self._committer.serial:
            if self.pacer.commit_due(self._buffer.dirty):  # another thread may have committed meanwhile
                self.commit()

    def _stop(self, reason: tuple[str, int]) -> NoReturn:
        if self.defer_commit is None:
            self.commit()
        raise Stopped(*reason)

    def is_retryable(self, error: BaseException) -> bool:
        return self._failures.retryable(error)

    def bind(self, connection: object) -> None:
        """Commit every checkpoint inside ``connection``'s transaction, then commit that connection.

        For a destination in the store's own database (PostgreSQL): the rows the sync wrote since the last
        commit and the checkpoint that covers them commit together or not at all, so a ``kill -9`` can
        neither lose nor duplicate a row. If the body raises, the connection is rolled back and the
        uncommitted progress is dropped with it; only the run's status is recorded. One thread only: the
        connection's transaction is the body's.
        """
        self._committer.bind(connection)

    def __repr__(self) -> str:
        return f"<Run {self.record.run_id if hasattr(self, 'record') else '?'} of {self.job.name}>"


def _offered(record: TaskRecord, retry_failed: bool) -> bool:
    """Does ``tasks()`` offer this task: not complete (or complete with failed items, when retrying them);
    failed only when retryable (or when retrying all failures)."""
    if record.status is TaskStatus.COMPLETED:
        return retry_failed and record.failed > 0
    if record.status is TaskStatus.FAILED:
        return record.retryable or retry_failed
    return True


def new_run_id(now: datetime) -> str:
    import secrets

    return f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


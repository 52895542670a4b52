"""How a run ended: its final status, exit code and message, from how the body ended and what the tasks say;
and the one line that tells the user (``log_end``). The rule for failures is in ``syncpoint.failures``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from syncpoint.errors import EXIT_FAILED, EXIT_OK, EXIT_PARTIAL, EXIT_SIGINT, Stopped, SyncpointError, UsageError
from syncpoint.model import RunStatus, TaskRecord, TaskStatus

if TYPE_CHECKING:
    from syncpoint.run import Run


@dataclass(frozen=True)
class Outcome:
    status: RunStatus
    exit_code: int
    message: str | None = None  # stored as the run's error (None when completed)
    error: BaseException | None = None
    discard: bool = False  # a usage error before any progress: leave no failed run behind
    permanent: int = 0  # items and tasks that failed permanently (a completed run lists them)


def final_outcome(run: Run, exc: BaseException | None) -> Outcome:
    outcome = _of_body(run, exc)
    return _apply_attempt_limit(run, outcome)


def _of_body(run: Run, exc: BaseException | None) -> Outcome:
    if exc is None:
        return _finished(run)
    if isinstance(exc, Stopped):
        status = RunStatus.PARTIAL if exc.exit_code == EXIT_PARTIAL else RunStatus.INTERRUPTED
        return Outcome(status, exc.exit_code, exc.reason, exc)
    if isinstance(exc, KeyboardInterrupt):
        return Outcome(RunStatus.INTERRUPTED, EXIT_SIGINT, "stopped by SIGINT", exc)
    if isinstance(exc, SyncpointError):
        run.log.error("%s", exc)
    elif isinstance(exc, Exception):
        run.log.error("run %s failed", run.run_id, exc_info=exc)
    discard = (
        isinstance(exc, UsageError) and not run.resumed
        and not any(run.buffer.persisted(t.name) for t in run.every_task())
    )
    return Outcome(RunStatus.FAILED, getattr(exc, "exit_code", EXIT_FAILED), str(exc) or type(exc).__name__,
                   exc, discard=discard)


def _finished(run: Run) -> Outcome:
    if run.tainted:
        return Outcome(RunStatus.FAILED, EXIT_FAILED, "a commit in the bound transaction failed and was rolled back")
    for task in run.every_task():
        if task.status is TaskStatus.IN_PROGRESS:
            task.finish()  # the body has returned: a signal arriving now stops nothing
    records = [t.record for t in run.every_task()]
    retry = [r for r in records if r.status is TaskStatus.FAILED and r.retryable]
    if retry:
        names = ", ".join(f"{r.name} ({r.error})" for r in retry[:3]) + (", …" if len(retry) > 3 else "")
        return Outcome(
            RunStatus.FAILED, EXIT_FAILED,
            f"{len(retry)} task(s) failed with retryable errors: {names}; --resume retries them",
        )
    pending = sum(r.status is TaskStatus.PENDING for r in records)
    if pending:
        return Outcome(RunStatus.PARTIAL, EXIT_PARTIAL, f"{pending} task(s) not started")
    return Outcome(RunStatus.COMPLETED, EXIT_OK, permanent=permanent_failures(records))


def permanent_failures(records: list[TaskRecord]) -> int:
    """Items that failed for good, plus tasks that failed for good, in a finished run."""
    return sum(r.failed for r in records) + sum(
        1 for r in records if r.status is TaskStatus.FAILED and not r.retryable
    )


def _apply_attempt_limit(run: Run, outcome: Outcome) -> Outcome:
    limit = run.options.max_attempts
    if outcome.status is RunStatus.COMPLETED or outcome.discard or limit is None or run.record.attempts < limit:
        return outcome
    return Outcome(
        RunStatus.FAILED, EXIT_FAILED, f"used {run.record.attempts} of {limit} attempts without finishing",
        outcome.error,
    )


def log_end(run: Run, outcome: Outcome) -> None:
    log = run.log
    where = f"run {run.run_id} in {run.store.location}"
    if outcome.discard:
        log.info("run %s discarded: it failed before recording any progress", run.run_id)
    elif outcome.status is RunStatus.COMPLETED:
        failed = (f"; {outcome.permanent} failed permanently (see syncpoint runs show {run.run_id}; "
                  "--retry-failed retries them)") if outcome.permanent else ""
        log.info("run %s of job %s completed%s", run.run_id, run.job.name, failed)
    elif outcome.status in (RunStatus.INTERRUPTED, RunStatus.PARTIAL):
        unfinished = [t.record for t in run.every_task() if t.status is not TaskStatus.COMPLETED]
        positions = "; ".join(describe_position(r) for r in unfinished[:5])
        log.warning(
            "%s (%s); checkpoint committed: %s%s; continue with --resume",
            outcome.status.value, outcome.message, where, f" ({positions})" if positions else "",
        )
    else:
        log.error("run %s failed: %s; checkpoint committed: %s", run.run_id, outcome.message, where)


def describe_position(record: TaskRecord) -> str:
    """Where a task stands, for the end-of-run line: its cursor, or its item counts."""
    if record.cursor is not None:
        return f"{record.name} at {json.dumps(record.cursor)}"
    failed = f", {record.failed:,} failed" if record.failed else ""
    return f"{record.name}: {record.ok:,} done{failed}"


"""One exception tree; every error a user can cause knows its exit code and its one-line message.

    SyncpointError                     exit 1   base class; ``str(err)`` is the one line shown to the user
    ├── UsageError                     exit 64  bad flag, bad date, bad name, unknown run, nothing to resume
    │   ├── InvalidName                         a job/task/key/run name that cannot be stored safely
    │   ├── InvalidDate                         a date or duration that does not parse or does not exist
    │   └── ConfigChanged                       resuming under a different config (names the changed keys)
    ├── JobLocked                      exit 75  another live process holds the job's lock (names the holder)
    ├── StoreError                     exit 1   the store cannot be used
    │   ├── StoreUnavailable                    cannot reach/open the store (names it, password masked)
    │   ├── CorruptState                        a checkpoint file or database is damaged; never overwritten
    │   ├── SchemaTooNew                        the database was migrated by a newer syncpoint
    │   └── LeaseLost                           another worker took this task over; nothing was written
    └── AttemptsExhausted              exit 1   a keyed run used ``max_attempts`` invocations

``Stopped`` is not an error: it is raised at a safe point to unwind the user's loop when a signal or a
budget asks the run to stop. It derives from ``BaseException`` so that a user's ``except Exception``
around one item cannot swallow it.

The exit codes are one ``IntEnum``, ``ExitCode``: the scheduler's contract, public as
``syncpoint.ExitCode``. The ``EXIT_*`` names below are the same numbers as plain ints, for syncpoint's own
modules (a plain int is what a run records in its store); ``syncpoint.EXIT_*`` still works and warns.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class ExitCode(IntEnum):
    """How a job's process exits: what a scheduler (cron, systemd, Kubernetes, Cloud Run) reads.

    Members are ints (``ExitCode.PARTIAL == 2``), so ``raise SystemExit(job.execute(...))`` and a comparison
    with ``job.execute``'s result work either way.
    """

    OK = 0
    """The run completed (permanent failures, if any, are counted in its last line)."""
    FAILED = 1
    """An error, retryable item or task failures (``--resume`` retries them), a store that cannot be used,
    or attempts exhausted."""
    PARTIAL = 2
    """A budget (``--max-items``, ``--max-seconds``) ended the run cleanly and more work remains."""
    USAGE = 64
    """A usage error: bad flag, date or name, unknown run, changed config (``EX_USAGE`` of sysexits.h)."""
    LOCKED = 75
    """Another live process holds the job's lock; try again later (``EX_TEMPFAIL`` of sysexits.h)."""
    SIGINT = 130
    """Stopped by SIGINT (Ctrl+C) at a safe point, checkpoint committed (128 + 2, as a shell reports it)."""
    SIGTERM = 143
    """Stopped by SIGTERM at a safe point, checkpoint committed (128 + 15)."""


EXIT_OK = int(ExitCode.OK)
EXIT_FAILED = int(ExitCode.FAILED)
EXIT_PARTIAL = int(ExitCode.PARTIAL)
EXIT_USAGE = int(ExitCode.USAGE)
EXIT_LOCKED = int(ExitCode.LOCKED)
EXIT_SIGINT = int(ExitCode.SIGINT)
EXIT_SIGTERM = int(ExitCode.SIGTERM)


class SyncpointError(Exception):
    """Base of every error syncpoint raises on purpose; carries the process exit code."""

    exit_code: int = EXIT_FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(SyncpointError):
    exit_code = EXIT_USAGE


class InvalidName(UsageError):
    pass


class InvalidDate(UsageError):
    pass


class ConfigChanged(UsageError):
    def __init__(self, run_id: str, changed: list[str]) -> None:
        keys = ", ".join(changed)
        super().__init__(
            f"config changed since run {run_id} started (keys: {keys}); "
            "rerun with --force to resume anyway, or --new-run to start over"
        )
        self.run_id = run_id
        self.changed = changed


@dataclass(frozen=True)
class LockHolder:
    """Who holds a job's lock, as far as the holder told us."""

    host: str
    pid: int
    since: str
    run_id: str | None = None

    def describe(self) -> str:
        run = f", run {self.run_id}" if self.run_id else ""
        return f"pid {self.pid} on {self.host} since {self.since}{run}"


class JobLocked(SyncpointError):
    exit_code = EXIT_LOCKED

    def __init__(self, job: str, holder: LockHolder | None, *, workers: str | None = None) -> None:
        """``workers``: the job is not locked by a process but worked on by the live workers of a shared
        run (``syncpoint.distributed``), named in this text; one writer per job holds for them too."""
        if workers is not None:
            message = (f"job {job!r} is being worked on by {workers}; wait for them to finish (syncpoint status) "
                       "or stop them (SIGTERM hands their tasks back)")
        else:
            who = holder.describe() if holder else "another process (it has not written its name yet)"
            message = (f"job {job!r} is locked by {who}; wait for it to finish or stop it "
                       "(the lock is released automatically when that process exits)")
        super().__init__(message)
        self.job = job
        self.holder = holder


class StoreError(SyncpointError):
    pass


class StoreUnavailable(StoreError):
    pass


class CorruptState(StoreError):
    pass


class SchemaTooNew(StoreError):
    pass


class AttemptsExhausted(SyncpointError):
    pass


class LeaseLost(StoreError):
    """Another worker holds this task's lease now (this one was presumed dead): the commit wrote nothing."""


class Stopped(BaseException):
    """Raised at a safe point to end the run cleanly (signal or budget); the run catches it."""

    def __init__(self, reason: str, exit_code: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.exit_code = int(exit_code)  # an ExitCode member is stored as the plain number it is

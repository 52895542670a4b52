"""A job: a named sync with a config, its store, and the management of its runs."""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from syncpoint import codec, liveness
from syncpoint.errors import EXIT_SIGINT, SyncpointError, UsageError
from syncpoint.fail import report_error
from syncpoint.failures import PermanentRule
from syncpoint.model import RunRecord, RunStatus, StateEntry, utcnow
from syncpoint.names import check_job_name, check_run_id
from syncpoint.options import RunOptions
from syncpoint.pacing import SavePolicy
from syncpoint.renamed import warn_renamed
from syncpoint.run import Run
from syncpoint.signals import exit_at_once_on_signal
from syncpoint.stores import open_store
from syncpoint.stores.base import ChangeSet, StateDelete, Store

if TYPE_CHECKING:
    from syncpoint.aio import AsyncRun

AsyncBody = Callable[["AsyncRun"], Awaitable[object]]

log = logging.getLogger("syncpoint")


class Job:
    """A named sync. ``config`` is stored with every run; resuming under a changed config is refused."""

    def __init__(
        self,
        name: str,
        config: dict[str, Any] | None = None,
        *,
        store: Store | str | None = None,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        save_policy: SavePolicy | None = None,
        permanent_errors: Sequence[PermanentRule] = (),
    ) -> None:
        self.name = check_job_name(name)
        self.config: dict[str, Any] = dict(config or {})
        try:
            codec.dumps(self.config)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"job {name!r}: config must be JSON-serialisable: {exc}") from None
        self.store = store if isinstance(store, Store) else open_store(store, checkpoint_dir=checkpoint_dir)
        self.save_policy = save_policy or SavePolicy()
        #: Exception types or predicates that make a failure permanent (``syncpoint.failures``).
        self.permanent_errors: tuple[PermanentRule, ...] = tuple(permanent_errors)

    @classmethod
    def from_options(cls, name: str, config: dict[str, Any] | None, options: RunOptions, **kw: Any) -> Job:
        """A job on the store the standard flags (``--store``, ``--checkpoint-dir``) name."""
        return cls(name, config, store=options.store, checkpoint_dir=options.checkpoint_dir, **kw)

    # -- running -------------------------------------------------------------------------------------
    def run(self, options: RunOptions | None = None, **overrides: Any) -> Run:
        """A run to use as a context manager; ``overrides`` are ``RunOptions`` fields (validated: a bad value
        raises ``UsageError``)."""
        if options is None:
            options = RunOptions(**overrides)
        elif overrides:
            options = replace(options, **overrides)
        return Run(self, options)

    def arun(self, options: RunOptions | None = None, **overrides: Any) -> AsyncRun:
        """A run to use as ``async with job.arun(...) as run:`` (``syncpoint.aio``)."""
        from syncpoint.aio import AsyncRun

        return AsyncRun(self.run(options, **overrides))

    def execute(self, options: RunOptions, body: Callable[[Run], object] | AsyncBody) -> int:
        """Do what the standard flags ask (``--list-runs``, ``--cleanup``, or run ``body``); the exit code.

        ``body`` may be a coroutine function: it then runs in ``asyncio.run`` with an ``AsyncRun``.
        Errors a user can cause end as one ``PROG: error: …`` line (``syncpoint.fail``) and their documented
        exit code, never a traceback. An exception from ``body`` ends the run ``failed`` (the run logs it and
        records it) and the exit code is returned, not the exception: here, not in ``with job.run()``, is
        where exceptions become exit codes.
        Logging is set up (``--log-format``) unless the program configured it; progress is reported
        around ``body`` as ``--progress``/``--no-progress`` say (see ``syncpoint.progress``).
        """
        from syncpoint.logs import ensure_logging
        from syncpoint.progress import track

        ensure_logging(options.log_format)
        try:
            if options.list_runs:
                from syncpoint.report import print_runs

                print_runs(self.store, self.runs())
                return 0
            if options.cleanup:
                removed = self.cleanup(keep=options.keep)
                log.info("removed %d run(s) of job %s", len(removed), self.name)
                return 0
            if inspect.iscoroutinefunction(body):
                import asyncio

                return asyncio.run(self._execute_async(options, body))  # type: ignore[arg-type]
            run = self.run(options)
            try:
                with run, track(run, options):
                    body(run)  # type: ignore[arg-type]
            except Exception:
                if run.exit_code is None:
                    raise  # not the body's: the run did not open (locked, config changed, …), reported below
                # The body's error: the run recorded it (failed, with it) and said so; its exit code says the rest.
            assert run.exit_code is not None
            return run.exit_code
        except SyncpointError as err:
            return report_error(err, log_format=options.log_format)
        except KeyboardInterrupt:  # a second Ctrl+C in the instant between the run's end and the line above
            exit_at_once_on_signal()
            return EXIT_SIGINT

    async def _execute_async(self, options: RunOptions, body: AsyncBody) -> int:
        from syncpoint.progress import track

        run = self.arun(options)
        try:
            async with run:
                with track(run.sync, options):
                    await body(run)
        except Exception:
            if run.exit_code is None:
                raise  # as in ``execute``: the run did not open
        assert run.exit_code is not None
        return run.exit_code

    # -- history -------------------------------------------------------------------------------------
    def runs(self, statuses: Sequence[RunStatus] | None = None, limit: int | None = None) -> list[RunRecord]:
        return self.store.list_runs(self.name, statuses=statuses, limit=limit)

    def get_run(self, run_id: str) -> RunRecord:
        found = self.store.get_run(check_run_id(run_id))
        if found is None or found.job != self.name:
            raise UsageError(f"no run {run_id} for job {self.name!r}; see --list-runs")
        return found

    def is_live(self, run: RunRecord) -> bool:
        """True when ``run`` is being worked on right now: by a live process holding the job's lock, or by a
        worker holding one of its task leases with a fresh heartbeat (the rule: ``syncpoint.liveness``)."""
        return liveness.run_is_live(self.store, run)

    def delete_run(self, run_id: str) -> RunRecord:
        run = self.get_run(run_id)
        working = liveness.working_on(self.store, run)
        if working.workers:
            raise UsageError(f"run {run_id} is being worked on by {working.describe()}; stop them first")
        if working:
            raise UsageError(f"run {run_id} is running in a live process ({working.describe()}); stop it first")
        self.store.apply(ChangeSet(run_deletes=[run_id]))
        return run

    def cleanup(
        self,
        *,
        keep: int | None = None,
        older_than: timedelta | None = None,
        statuses: Sequence[RunStatus] | None = None,
        dry_run: bool = False,
        include_resumable: bool = False,
    ) -> list[RunRecord]:
        """Delete finished runs beyond the ``keep`` newest and/or older than ``older_than``; resumable ones
        only in ``statuses`` or with ``include_resumable``; never a live one (``syncpoint.retention``)."""
        from syncpoint import retention

        if keep is None and older_than is None:
            raise UsageError("cleanup needs --keep N and/or --older-than AGE")
        doomed = retention.select(self.runs(), now=utcnow(), keep=keep, older_than=older_than, statuses=statuses,
                                  include_resumable=include_resumable)
        return retention.delete(self.store, self.name, doomed, dry_run=dry_run)

    # -- bookmarks (job state) -------------------------------------------------------------------------
    def bookmarks(self) -> list[StateEntry]:
        """The job's committed bookmarks, read from the store: values that outlive runs, with when each was
        written. Inside a run, ``run.state`` reads and writes them (and sees its own uncommitted writes)."""
        return self.store.get_state(self.name)

    def state(self) -> list[StateEntry]:
        """Deprecated: ``bookmarks`` (a list of entries, unlike ``run.state``, the live, writable view)."""
        warn_renamed("Job.state", "Job.bookmarks")
        return self.bookmarks()

    def reset_bookmarks(self, key: str | None = None) -> None:
        """Delete the bookmark ``key``, or all of the job's bookmarks (``syncpoint state reset``)."""
        self.store.apply(ChangeSet(state_deletes=[StateDelete(self.name, key)]))

    def close(self) -> None:
        self.store.close()

"""A pipeline: jobs run one after the other (``sync-all``), or a few at once, itself resumable.

    pipeline = Pipeline("sync-all", steps=[
        ("vorgaenge", lambda options: vorgaenge.execute(options, sync_vorgaenge)),
        ("drucksachen", lambda options: drucksachen.execute(options, sync_drucksachen)),
        ...
    ])
    raise SystemExit(pipeline.execute(options, resume_all=args.resume_all))

The pipeline is recorded in the store as a job of its own (named like the pipeline) whose run has one task
per member job; a task's cursor holds ``{"run_id": <the member's run>, "exit_code": ..., "status": ...}``.
So ``syncpoint status`` and ``syncpoint runs show`` show how far a pipeline got, member by member.

The first member that does not exit 0 ends the pipeline, and its exit code is the pipeline's: 2 partial
(a budget), 130/143 a signal, 1 failed, 64/75 as for any job. ``resume_all=True`` resumes the latest
unfinished pipeline run: members that completed in it are not run again, the first unfinished one resumes
its own run from its checkpoint (``--resume-run`` with the run ID the pipeline recorded), and the rest
start fresh. Without it, a new pipeline pass starts and every member gets the options as given.

``concurrency=N`` runs up to N members at once, each in a worker thread with its own run (``run.map`` over
the pipeline's tasks). A signal reaches every member's run (``syncpoint.signals``: runs opened off the main
thread follow the main one), so each stops at its own next safe point and commits; after the first member
that does not exit 0 no other member starts, the ones running finish, and that first code is the
pipeline's. Members must then not share anything that is not safe from several threads.

Options for members: each gets the pipeline's ``RunOptions`` (store, budgets, flags) plus
``params={"pipeline": name, "pipeline_run": run_id}`` so that its run can be found again even if the
pipeline process died before recording it. ``--max-seconds`` is a budget for the whole pipeline (each
member gets what is left); ``--max-items`` applies to each member on its own. Members must keep their
checkpoints in the pipeline's store.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from syncpoint.errors import EXIT_OK, EXIT_PARTIAL, EXIT_SIGINT, EXIT_SIGTERM, Stopped, UsageError
from syncpoint.job import Job
from syncpoint.model import RunRecord, RunStatus
from syncpoint.names import check_job_name
from syncpoint.options import RunOptions
from syncpoint.run import Run
from syncpoint.stores.base import Store
from syncpoint.task import Task

log = logging.getLogger("syncpoint.pipeline")

Step = Callable[[RunOptions], int]
STOP_CODES = (EXIT_PARTIAL, EXIT_SIGINT, EXIT_SIGTERM)
LOOKBACK = 50  # member runs searched for the one a pipeline run started
MEMBER_GRACE = 60.0  # after a signal, members in flight stop at their own next safe point and commit


class Pipeline:
    """Jobs run in order as one resumable unit; see the module docstring."""

    def __init__(
        self,
        name: str,
        steps: Sequence[tuple[str, Step]],
        *,
        store: Store | str | None = None,
        checkpoint_dir: str | None = None,
        config: dict[str, Any] | None = None,
        concurrency: int = 1,
    ) -> None:
        self.name = check_job_name(name)
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise UsageError(f"pipeline {name!r}: concurrency must be a positive integer, got {concurrency!r}")
        self.concurrency = concurrency
        if not steps:
            raise UsageError(f"pipeline {name!r} has no steps")
        self.steps = [(check_job_name(job), step) for job, step in steps]
        names = [job for job, _ in self.steps]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise UsageError(f"pipeline {name!r} lists job(s) {', '.join(duplicates)} more than once")
        if name in names:
            raise UsageError(f"pipeline {name!r} cannot have a member job of the same name")
        self.store = store
        self.checkpoint_dir = checkpoint_dir
        self.config = {"steps": names, **(config or {})}
        self.result: int | None = None

    def execute(self, options: RunOptions, resume_all: bool = False) -> int:
        """Run the members in order (or resume the last pass); the exit code of the pipeline."""
        job = Job(
            self.name, self.config, store=self.store if self.store is not None else options.store,
            checkpoint_dir=self.checkpoint_dir if self.checkpoint_dir is not None else options.checkpoint_dir,
        )
        own = replace(
            options, resume=resume_all, resume_run=None, new_run=False, start_from=None, max_items=None,
            max_seconds=None, progress=False, params={},
        )
        self.result = None
        try:
            code = job.execute(own, lambda run: self._body(job, run, options))
        finally:
            if self.store is None or isinstance(self.store, str):
                job.close()
        return self.result if self.result not in (None, EXIT_OK) else code

    # -- the pass -------------------------------------------------------------------------------------------
    def _body(self, job: Job, run: Run, options: RunOptions) -> None:
        started = time.monotonic()
        names = [name for name, _ in self.steps]
        self._halt: Stopped | None = None
        self._mu = threading.Lock()
        if self.concurrency == 1:
            for task in run.tasks(names):
                self._member(job, run, options, task, started)
                if self._halted():
                    break
        else:
            pending = run.pending_tasks(names)
            offered = (task for task in pending if not self._halted())  # nothing new after a member's failure
            run.map(lambda task: self._member(job, run, options, task, started), offered,
                    concurrency=self.concurrency, grace=MEMBER_GRACE)
        if self._halt is not None:
            raise self._halt

    def _halted(self) -> bool:
        with self._mu:
            return self.result is not None or self._halt is not None

    def _finish(self, code: int, stop: Stopped | None = None) -> None:
        """A member that did not exit 0: the first one's code is the pipeline's; no member starts after it."""
        with self._mu:
            if self.result is None:
                self.result = code
            if stop is not None and self._halt is None:
                self._halt = stop

    def _member(self, job: Job, run: Run, options: RunOptions, task: Task, started: float) -> None:
        """One member job, start to end (in a worker thread with ``concurrency`` > 1)."""
        steps = dict(self.steps)
        member = self._member_run(job.store, task, run)
        if member is not None and member.status is RunStatus.COMPLETED:
            log.info("pipeline %s: job %s already completed (run %s)", self.name, task.name, member.run_id)
            self._record(task, member, EXIT_OK)
            task.complete()
            return
        try:
            member_options = self._options(options, run, member, started)
        except Stopped as stop:  # the pipeline's time budget is used up
            self._finish(stop.exit_code, stop)
            return
        log.info(
            "pipeline %s: job %s (%d of %d)%s", self.name, task.name, task.record.position + 1,
            len(self.steps), f", resuming run {member_options.resume_run}" if member_options.resume_run else "",
        )
        task.start()
        run.commit()
        try:
            code = steps[task.name](member_options)
        except Exception as exc:
            log.error("pipeline %s: job %s raised %s", self.name, task.name, exc, exc_info=exc)
            task.fail(f"job {task.name} raised {type(exc).__name__}: {exc}", retryable=True)
            self._finish(1)
            return
        self._record(task, self._member_run(job.store, task, run), code)
        if code == EXIT_OK:
            task.complete()
            return
        if code in STOP_CODES:
            self._finish(code, Stopped(f"job {task.name} stopped with exit code {code}", code))
            return
        task.fail(f"job {task.name} exited with code {code}", retryable=True)
        self._finish(code)

    def _options(self, options: RunOptions, run: Run, member: RunRecord | None, started: float) -> RunOptions:
        resume = member is not None and run.resumed
        changes: dict[str, Any] = {
            "params": {**options.params, "pipeline": self.name, "pipeline_run": run.run_id},
            "list_runs": False, "cleanup": False,
        }
        if resume and member is not None:
            changes.update(resume=False, new_run=False, resume_run=member.run_id, key=None)
        if options.max_seconds is not None:
            left = options.max_seconds - (time.monotonic() - started)
            if left <= 0:
                raise Stopped(f"time budget of {options.max_seconds:g}s reached", EXIT_PARTIAL)
            changes["max_seconds"] = left
        return replace(options, **changes)

    def _member_run(self, store: Store, task: Task, run: Run) -> RunRecord | None:
        """The member's run for this pipeline run: the one its cursor names, else the one tagged with it."""
        cursor = task.cursor
        if isinstance(cursor, dict) and isinstance(cursor.get("run_id"), str):
            found = store.get_run(cursor["run_id"])
            if found is not None:
                return found
        for candidate in store.list_runs(task.name, limit=LOOKBACK):
            if candidate.params.get("pipeline_run") == run.run_id:
                return candidate
        return None

    def _record(self, task: Task, member: RunRecord | None, code: int) -> None:
        task.set_cursor({
            "run_id": member.run_id if member is not None else None,
            "exit_code": code,
            "status": member.status.value if member is not None else None,
        })

    # -- a ready-made command line --------------------------------------------------------------------------
    def command(self, help: str | None = None) -> Any:
        """A click command with the standard flags plus ``--resume-all`` that runs this pipeline and exits."""
        import click

        from syncpoint.options import Command, click_options

        @click.command(cls=Command, name=self.name, help=help or f"Run the {self.name} pipeline.")
        @click_options
        @click.option("--resume-all", is_flag=True,
                      help="Continue the last unfinished pass: skip completed jobs, resume the stopped one.")
        def main(sync: RunOptions, resume_all: bool) -> None:
            raise SystemExit(self.execute(sync, resume_all=resume_all))

        return main

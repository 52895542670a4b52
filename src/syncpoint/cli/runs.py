"""``syncpoint runs list|show|delete|cleanup``: run history and retention."""

from __future__ import annotations

import click

from syncpoint import codec, retention
from syncpoint.cli.common import CliContext, check_job, confirm, console, emit_json, find_run, json_option, pass_cli
from syncpoint.dates import parse_duration
from syncpoint.errors import JobLocked, LockHolder, UsageError
from syncpoint.job import Job
from syncpoint.liveness import describe_workers, working_on
from syncpoint.model import RunRecord, RunStatus
from syncpoint.report import run_detail, runs_table, summarize
from syncpoint.stores import mask_url
from syncpoint.stores.base import Store

STATUS_CHOICE = click.Choice([s.value for s in RunStatus])


class RunLocked(JobLocked):
    """The run is being worked on by a live process, or by live workers: exit 75, like any locked job."""

    def __init__(self, run: RunRecord, holder: LockHolder | None, action: str, workers: str = "") -> None:
        super().__init__(run.job, holder)
        who = holder.describe() if holder else "another process"
        self.message = (
            f"run {run.run_id} of job {run.job!r} is running in a live process ({who}); not {action}: "
            "stop that process first (Ctrl+C or SIGTERM; its lock is released when it exits)"
        )
        if workers:
            self.message = (
                f"run {run.run_id} of job {run.job!r} is being worked on by live workers ({workers}); "
                f"not {action}: stop them first (SIGTERM hands their tasks back; see 'syncpoint status')"
            )


def refuse_live(store: Store, run: RunRecord, action: str) -> None:
    """Raise ``RunLocked`` naming who works on ``run`` (the job's lock holder, or the workers of its leases);
    nothing when nobody does."""
    working = working_on(store, run)
    if working.workers:
        raise RunLocked(run, None, action, describe_workers(working.workers))
    if working:
        raise RunLocked(run, working.lock, action)


@click.group()
def runs() -> None:
    """List, inspect, delete and clean up runs."""


@runs.command("list")
@click.option("--job", "-j", metavar="JOB", help="Only this job's runs.")
@click.option("--status", "-s", "statuses", type=STATUS_CHOICE, multiple=True,
              help="Only runs in this status (repeatable).")
@click.option("--key", metavar="KEY", help="Only runs with this key.")
@click.option("--limit", "-n", type=click.IntRange(min=0), default=20, show_default=True,
              help="At most N runs, newest first (0: all).")
@json_option
@pass_cli
def list_runs(cli: CliContext, job: str | None, statuses: tuple[str, ...], key: str | None, limit: int,
              as_json: bool) -> None:
    """List runs, newest first: ID, job, key, status, times, tasks done/total, items ok/failed, attempts."""
    store = cli.store(read_only=True)
    if job is not None:
        check_job(store, job)
    found = store.list_runs(
        job, statuses=[RunStatus(s) for s in statuses] or None, key=key, limit=limit or None
    )
    summaries = [summarize(store, run) for run in found]
    if as_json:
        emit_json([s.to_dict() for s in summaries])
    elif not summaries:
        click.echo(f"no runs in {mask_url(store.location)}" + (f" for job {job!r}" if job else ""))
    else:
        console().print(runs_table(store, summaries))


@runs.command("show")
@click.argument("run_id", metavar="RUN")
@click.option("--failed", "failed_limit", type=click.IntRange(min=0), default=20, show_default=True,
              metavar="N", help="Show the first N failed items of each task.")
@json_option
@pass_cli
def show_run(cli: CliContext, run_id: str, failed_limit: int, as_json: bool) -> None:
    """Show one run: config, params, tasks and cursors, counters, errors, failed items, phases."""
    store = cli.store(read_only=True)
    detail = run_detail(store, find_run(store, run_id), failed_limit)
    if as_json:
        emit_json(detail.to_dict())
    else:
        console().print(detail.render())


@runs.command("delete")
@click.argument("run_id", metavar="RUN")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_cli
def delete_run(cli: CliContext, run_id: str, yes: bool) -> None:
    """Delete one run with its tasks, phases and ledgers. A run that a live process or live workers work on is
    refused."""
    store = cli.store()
    run = find_run(store, run_id)
    job = Job(run.job, store=store)
    refuse_live(store, run, "deleted")
    summary = summarize(store, run)
    question = (f"delete run {run.run_id} of job {run.job!r} ({run.status.value}, "
                f"{summary.tasks_done}/{len(summary.tasks)} tasks, {summary.ok + summary.failed} items)?")
    if not confirm(question, yes):
        raise click.exceptions.Exit(_declined())
    job.delete_run(run_id)
    click.echo(f"deleted run {run_id} of job {run.job!r}")


def _declined() -> int:
    click.echo("syncpoint: nothing deleted", err=True)
    return 1


@runs.command("cleanup")
@click.option("--job", "-j", "jobs", metavar="JOB", multiple=True, help="Only this job (repeatable; default all).")
@click.option("--keep", type=click.IntRange(min=0), metavar="N", help="Keep the N newest runs of each job.")
@click.option("--older-than", metavar="AGE", help="Only runs started more than AGE ago (90s, 12h, 30d, 2w).")
@click.option("--status", "-s", "statuses", type=STATUS_CHOICE, multiple=True,
              help="Only runs in this status (repeatable); resumable statuses too, when named.")
@click.option("--include-resumable", is_flag=True,
              help="Also delete runs that --resume would continue (running, interrupted, partial, failed).")
@click.option("--dry-run", is_flag=True, help="Show what would be deleted; delete nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@json_option
@pass_cli
def cleanup(cli: CliContext, jobs: tuple[str, ...], keep: int | None, older_than: str | None,
            statuses: tuple[str, ...], include_resumable: bool, dry_run: bool, yes: bool, as_json: bool) -> None:
    """Delete old finished runs: beyond the --keep newest and/or older than --older-than.

    Finished: completed, or failed with its attempts used up. Runs that --resume would continue go only
    when their --status is named or with --include-resumable; a run a live process works on, never.
    Asks before deleting, unless --yes.
    """
    age = parse_duration(older_than, what="--older-than") if older_than is not None else None
    if keep is None and age is None:
        raise UsageError("runs cleanup needs --keep N and/or --older-than AGE")
    store = cli.store()
    names = [check_job(store, j) for j in jobs] if jobs else store.list_jobs()
    chosen = [RunStatus(s) for s in statuses] or None
    doomed = {
        name: Job(name, store=store).cleanup(keep=keep, older_than=age, statuses=chosen,
                                             include_resumable=include_resumable, dry_run=True)
        for name in names
    }
    planned = [run for runs in doomed.values() for run in runs]
    if planned and not dry_run:
        for run in planned:
            click.echo(f"  {_describe(run)}", err=True)
        if not confirm(f"delete these {len(planned)} run(s)?", yes):
            raise click.exceptions.Exit(_declined())
        planned = [run for name, runs in doomed.items() for run in retention.delete(store, name, runs)]
    if as_json:
        emit_json({"dry_run": dry_run, "removed": [codec.run_to_dict(r) for r in planned]})
        return
    verb = "would delete" if dry_run else "deleted"
    for run in planned:
        click.echo(f"{verb} {_describe(run)}")
    click.echo(f"{verb} {len(planned)} run(s)")


def _describe(run: RunRecord) -> str:
    return f"run {run.run_id} of job {run.job!r} ({run.status.value}, started {run.started_at:%Y-%m-%d})"

"""``syncpoint status``: what is running now and how far along, read from the store.

Works from any terminal or machine that reaches the store while runs are going; it shows what the runs
have committed (their save policy decides how often), and whether each run's process still holds the
job's lock — a ``running`` run without a live lock is left over from a crash and can be resumed. A run of
many workers (``syncpoint.distributed``) is live while a worker holds one of its task leases with a fresh
heartbeat; its tasks in progress are listed with their leases (``syncpoint.liveness``).
"""

from __future__ import annotations

import click

from syncpoint.cli.common import CliContext, check_job, console, emit_json, json_option, pass_cli
from syncpoint.report import running_runs, status_view
from syncpoint.stores import mask_url


@click.command()
@click.argument("job", required=False)
@json_option
@pass_cli
def status(cli: CliContext, job: str | None, as_json: bool) -> None:
    """What is running now: per run, tasks done/total, items, records, current cursor, lock holder or workers."""
    store = cli.store(read_only=True)
    if job is not None:
        check_job(store, job)
    found = running_runs(store, job)
    if as_json:
        emit_json({"store": mask_url(store.location), "runs": [r.to_dict() for r in found]})
    elif not found:
        click.echo(f"nothing running in {mask_url(store.location)}" + (f" for job {job!r}" if job else ""))
    else:
        console().print(status_view(store, found))

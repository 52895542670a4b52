"""``syncpoint state show|reset``: a job's bookmarks (values that outlive runs)."""

from __future__ import annotations

import click
from rich.text import Text

from syncpoint import codec
from syncpoint.cli.common import CliContext, check_job, confirm, console, emit_json, json_option, pass_cli
from syncpoint.errors import UsageError
from syncpoint.job import Job
from syncpoint.names import check_value_name
from syncpoint.report import short_json, short_time
from syncpoint.stores import mask_url
from syncpoint.tables import Column, FittedTable


@click.group()
def state() -> None:
    """Show or reset a job's bookmarks (state that outlives runs)."""


@state.command("show")
@click.argument("job")
@json_option
@pass_cli
def show_state(cli: CliContext, job: str, as_json: bool) -> None:
    """Show JOB's bookmarks: key, value, when it was last set."""
    store = cli.store(read_only=True)
    entries = Job(check_job(store, job), store=store).bookmarks()
    if as_json:
        emit_json([codec.state_to_dict(e) for e in entries])
        return
    if not entries:
        click.echo(f"job {job!r} has no bookmarks in {mask_url(store.location)}")
        return
    table = FittedTable([Column("key", fold=True), Column("value", fold=True), Column("updated", rank=1)],
                        title=f"state of {job} in {mask_url(store.location)}", hint="see --json")
    for entry in entries:
        table.add_row(entry.key, Text(short_json(entry.value, 200)), short_time(entry.updated_at))
    console().print(table)


@state.command("reset")
@click.argument("job")
@click.option("--key", "-k", metavar="KEY", help="Only this bookmark (default: all of the job's bookmarks).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_cli
def reset_state(cli: CliContext, job: str, key: str | None, yes: bool) -> None:
    """Delete JOB's bookmarks (or one, with --key): its next run starts without them.

    Refused while the job runs (exit 75): the run would write its own bookmarks back.
    """
    store = cli.store()
    target = Job(check_job(store, job), store=store)
    keys = [e.key for e in target.bookmarks()]
    if key is not None:
        check_value_name(key, "state key")
        if key not in keys:
            raise UsageError(f"job {job!r} has no bookmark {key!r} (it has: {', '.join(keys) or 'none'})")
    what = f"bookmark {key!r}" if key is not None else f"all {len(keys)} bookmark(s)"
    with store.lock(job):  # JobLocked (exit 75) while a run of the job is live
        if not confirm(f"delete {what} of job {job!r}?", yes):
            click.echo("syncpoint: nothing deleted", err=True)
            raise click.exceptions.Exit(1)
        target.reset_bookmarks(key)
    click.echo(f"deleted {what} of job {job!r}")

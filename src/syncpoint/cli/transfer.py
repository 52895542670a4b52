"""``syncpoint export`` and ``syncpoint import``: move checkpoints between stores (see ``cli.dump``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from syncpoint.cli.common import CliContext, check_job, emit_json, json_option, pass_cli
from syncpoint.cli.dump import export_dump, import_dump
from syncpoint.errors import UsageError
from syncpoint.stores import mask_url


@click.command("export")
@click.option("--job", "-j", "jobs", metavar="JOB", multiple=True, help="Only this job (repeatable; default all).")
@click.option("--output", "-o", metavar="FILE", help="Write to FILE (atomically) instead of stdout.")
@pass_cli
def export_command(cli: CliContext, jobs: tuple[str, ...], output: str | None) -> None:
    """Write runs, tasks, phases, ledgers and state as a JSON Lines dump: syncpoint export > dump.jsonl"""
    store = cli.store(read_only=True)
    names = [check_job(store, j) for j in jobs] if jobs else None
    if output is None:
        if sys.stdout.isatty():
            raise UsageError("refusing to write a dump to the terminal; redirect it (> dump.jsonl) or use -o FILE")
        counts = export_dump(store, sys.stdout, names)
        target = "stdout"
    else:
        path = Path(output)
        partial = path.with_name(path.name + ".partial")
        try:
            with partial.open("w", encoding="utf-8", newline="\n") as out:
                counts = export_dump(store, out, names)
                out.flush()
                os.fsync(out.fileno())
            os.replace(partial, path)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise UsageError(f"cannot write {output}: {exc.strerror or exc}") from None
        target = output
    click.echo(f"exported {counts.describe()} from {mask_url(store.location)} to {target}", err=True)


@click.command("import")
@click.argument("dump", metavar="DUMP")
@click.option("--store", "target", metavar="URL", help="The store to import into (default: the global --store).")
@click.option("--replace", "on_conflict", flag_value="replace",
              help="A run already in the target is deleted and imported again.")
@click.option("--skip-existing", "on_conflict", flag_value="skip", help="A run already in the target is kept.")
@click.option("--batch", type=click.IntRange(min=1), default=5000, show_default=True, metavar="N",
              help="Records per transaction.")
@json_option
@pass_cli
def import_command(cli: CliContext, dump: str, target: str | None, on_conflict: str | None, batch: int,
                   as_json: bool) -> None:
    """Import a dump (a file, or - for stdin) into a store; refuses runs it already has unless told."""
    store = cli.store(target, create=True)
    try:
        stream = sys.stdin if dump == "-" else open(dump, encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise UsageError(f"cannot read {dump}: {exc.strerror or exc}") from None
    try:
        counts = import_dump(store, stream, batch=batch, on_conflict=on_conflict or "error",
                             source="stdin" if dump == "-" else dump)
    finally:
        if stream is not sys.stdin:
            stream.close()
    if as_json:
        emit_json({"store": mask_url(store.location), "imported": counts.as_dict(),
                   "skipped_runs": counts.skipped_runs})
        return
    skipped = f"; kept {len(counts.skipped_runs)} run(s) already there" if counts.skipped_runs else ""
    click.echo(f"imported {counts.describe()} into {mask_url(store.location)}{skipped}")

#!/usr/bin/env python3
"""Sync the German Bundestag's DIP API into SQLite, interruptibly and resumably.

    export DIP_API_KEY=...
    python examples/dip_sync.py sync-drucksachen                 # Ctrl+C at any time, or kill -9
    python examples/dip_sync.py sync-drucksachen --resume        # continues where it stopped
    python examples/dip_sync.py sync-drucksachen --resume --end 2024-01-01   # --end overrides the checkpoint
    python examples/dip_sync.py sync-all                         # all eight, one after the other
    python examples/dip_sync.py sync-all --resume-all            # skip the finished ones, resume the stopped one
    python examples/dip_sync.py sync-all --concurrency 4         # four syncs at once (threads, one run each)

Commands: sync-personen, sync-vorgaenge, sync-vorgangspositionen, sync-aktivitaeten, sync-drucksachen,
sync-drucksache-texte, sync-plenarprotokolle, sync-plenarprotokoll-texte, sync-all. Each writes one table
per endpoint into ``--db`` (``id TEXT PRIMARY KEY, aktualisiert TEXT, data TEXT``, upserted) and keeps its
checkpoint where the original tool did: a syncpoint JSON directory store in ``.checkpoints/`` (or
``--checkpoint-dir DIR``), whose ``.checkpoints/drucksachen.checkpoint.json`` has ``last_sync_date`` for ``jq``
and is deleted once the sync has completed. ``--store sqlite:.checkpoints/syncpoint.db`` (or any store URL,
or ``$SYNCPOINT_STORE``) picks another store.

The sync itself is ``syncpoint.demo.sync_endpoint`` (shared with ``syncpoint demo``); this file is the
command line around it. See docs/EXAMPLES.md.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date
from typing import Any, TypeVar

import click

import syncpoint
from syncpoint.demo import (
    DEFAULT_BASE_URL,
    ENTITIES,
    Connect,
    SqliteDestination,
    dip_client,
    run_endpoint,
)

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Settings:
    """Everything besides the standard syncpoint flags."""

    base_url: str = DEFAULT_BASE_URL
    api_key: str = ""
    db: str = "dip.db"
    limit: int | None = None
    datum_start: str | None = None
    datum_end: str | None = None

    def config(self, endpoint: str | None = None) -> dict[str, Any]:
        """The job config: what decides which records end up where. A resume under another is refused."""
        config: dict[str, Any] = {"base_url": self.base_url, "db": self.db}
        if endpoint is not None:
            config["endpoint"] = endpoint
        if self.datum_start or self.datum_end:
            config["datum"] = [self.datum_start, self.datum_end]
        return config

    def filters(self) -> dict[str, str]:
        found = {"f.datum.start": self.datum_start, "f.datum.end": self.datum_end}
        return {name: value for name, value in found.items() if value}

    def connect(self) -> Connect:
        return lambda run: dip_client(self.base_url, self.api_key, sleep=run.sleep, checkpoint=run.checkpoint)


def original_store(options: syncpoint.RunOptions) -> syncpoint.RunOptions:
    """The original tool's checkpoints: JSON files in ``--checkpoint-dir`` (default ``.checkpoints``), unless
    ``--store`` or ``$SYNCPOINT_STORE`` names a store."""
    if options.store is not None or os.environ.get("SYNCPOINT_STORE"):
        return options
    return replace(options, store=f"json:{options.checkpoint_dir or '.checkpoints'}", checkpoint_dir=None)


def sync_entity(name: str, settings: Settings, options: syncpoint.RunOptions, connect: Connect | None = None) -> int:
    """One ``sync-<name>`` job; the exit code."""
    options = original_store(options)
    endpoint = ENTITIES[name]
    job = syncpoint.Job.from_options(name, settings.config(endpoint), options)
    dest = SqliteDestination(settings.db)
    try:
        return run_endpoint(job, options, endpoint, connect=connect or settings.connect(), dest=dest,
                            filters=settings.filters(), limit=settings.limit)
    finally:
        dest.close()
        job.close()


def sync_all(settings: Settings, options: syncpoint.RunOptions, *, resume_all: bool = False,
             connect: Connect | None = None, concurrency: int = 1) -> int:
    """All eight jobs as one pipeline, itself resumable with ``resume_all``; the exit code.

    ``concurrency`` > 1 runs that many jobs at once, each in a thread with its own run, HTTP client and
    SQLite connection (its own table; the connections wait for each other's short write transactions).
    """
    options = original_store(options)
    steps = [(name, functools.partial(sync_entity, name, settings, connect=connect)) for name in ENTITIES]
    pipeline = syncpoint.Pipeline("sync-all", steps, config=settings.config(), concurrency=concurrency)
    return pipeline.execute(options, resume_all=resume_all)


# -- the command line --------------------------------------------------------------------------------------
class Cli(syncpoint.Command, click.Group):
    """A click group whose usage errors exit 64, like ``syncpoint.Command``; commands in sync-all's order."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)


def _day(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)") from None


def dip_options(func: F) -> F:
    """The DIP flags every command shares."""
    decorators = [
        click.option("--base-url", default=DEFAULT_BASE_URL, show_default=True, help="DIP API base URL."),
        click.option("--api-key", envvar="DIP_API_KEY", show_envvar=True, help="DIP API key."),
        click.option("--db", default="dip.db", show_default=True, metavar="PATH", help="Destination SQLite file."),
        click.option("--limit", type=click.IntRange(min=1), metavar="N",
                     help="Sync at most N documents per endpoint, then finish."),
        click.option("--datum-start", callback=_day, metavar="DATE", help="Only documents dated on/after DATE."),
        click.option("--datum-end", callback=_day, metavar="DATE", help="Only documents dated on/before DATE."),
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def settings_from(base_url: str, api_key: str | None, db: str, limit: int | None, datum_start: str | None,
                  datum_end: str | None) -> Settings:
    if not api_key:
        raise click.UsageError("an API key is required: --api-key KEY or the DIP_API_KEY environment variable")
    return Settings(base_url.rstrip("/"), api_key, db, limit, datum_start, datum_end)


@click.group(cls=Cli, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Sync the Bundestag's DIP API into SQLite; interrupt at any time, continue with --resume."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request is too chatty


def _entity_command(name: str) -> None:
    endpoint = ENTITIES[name]

    @cli.command(f"sync-{name}", cls=syncpoint.Command,
                 help=f"Sync /{endpoint} into table {SqliteDestination.table(endpoint)} (job {name}).")
    @dip_options
    @syncpoint.click_options
    def command(sync: syncpoint.RunOptions, **flags: Any) -> None:
        raise SystemExit(sync_entity(name, settings_from(**flags), sync))


for _name in ENTITIES:
    _entity_command(_name)


@cli.command("sync-all", cls=syncpoint.Command,
             help="Run all eight syncs in order (a resumable pipeline), or --concurrency N of them at once.")
@dip_options
@click.option("--resume-all", is_flag=True,
              help="Continue the last unfinished pass: skip finished syncs, resume the stopped ones.")
@click.option("--concurrency", type=click.IntRange(1, 8), default=1, show_default=True, metavar="N",
              help="Syncs run at once, each in a thread with its own checkpoint and table. 1 keeps the original "
                   "order and one request at a time against the API; try 2-4 if your API key's rate limit allows.")
@syncpoint.click_options
def sync_all_command(sync: syncpoint.RunOptions, resume_all: bool, concurrency: int, **flags: Any) -> None:
    raise SystemExit(sync_all(settings_from(**flags), sync, resume_all=resume_all, concurrency=concurrency))


if __name__ == "__main__":
    cli()

"""``syncpoint db migrate|status``: the PostgreSQL store's schema migrations (``stores.pg_migrations``).

A PostgreSQL store migrates itself when a job opens it, unless its URL says ``?migrate=false`` (a DBA
reviews DDL first); these commands are for that case and for deploy scripts. The inspection commands never
create or migrate a store, so ``db migrate`` is also how to create one ahead of the first run — on SQLite
and JSON too, where it just creates the empty store (they have no migrations to show in ``db status``).
"""

from __future__ import annotations

from types import ModuleType

import click

from syncpoint.cli.common import CliContext, emit_json, json_option, pass_cli
from syncpoint.errors import StoreUnavailable, UsageError
from syncpoint.stores import mask_url

POSTGRES_PREFIXES = ("postgresql://", "postgres://")


def _migrations(cli: CliContext) -> tuple[ModuleType, str]:
    url = cli.url
    if not url.startswith(POSTGRES_PREFIXES):
        raise UsageError(
            f"'syncpoint db' manages PostgreSQL stores; {mask_url(url)} is not one "
            "(pass --store postgresql://user@host/db?schema=NAME or set SYNCPOINT_STORE)"
        )
    try:
        from syncpoint.stores import pg_migrations
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("psycopg"):
            raise StoreUnavailable("PostgreSQL support needs psycopg: pip install 'syncpoint[postgres]'") from None
        raise
    return pg_migrations, url


@click.group()
def db() -> None:
    """PostgreSQL schema migrations (migrate, status)."""


@db.command("migrate")
@click.option("--schema", metavar="NAME", help="The schema (default: the URL's ?schema=, else syncpoint).")
@json_option
@pass_cli
def migrate(cli: CliContext, schema: str | None, as_json: bool) -> None:
    """Apply the pending migrations in one transaction (safe to run twice, or from two machines at once).

    On a SQLite or JSON store: create it if it does not exist yet (they need no migrations)."""
    if not cli.url.startswith(POSTGRES_PREFIXES) and schema is None:
        store = cli.store(create=True)
        if as_json:
            emit_json({"store": mask_url(store.location), "applied": [], "ready": True})
        else:
            click.echo(f"checkpoint store {mask_url(store.location)} is ready (it needs no migrations)")
        return
    pgm, url = _migrations(cli)
    applied = pgm.migrate(url, schema)
    after = pgm.status(url, schema)
    if as_json:
        emit_json({"schema": after.schema, "applied": list(applied), "current": after.current,
                   "latest": after.latest})
    elif applied:
        click.echo(f"applied {len(applied)} migration(s) to schema {after.schema}: {', '.join(applied)}")
    else:
        click.echo(f"schema {after.schema} is up to date (migration {after.current:03d})"
                   if after.current is not None else f"schema {after.schema}: nothing to apply")


@db.command("status")
@click.option("--schema", metavar="NAME", help="The schema (default: the URL's ?schema=, else syncpoint).")
@json_option
@pass_cli
def status(cli: CliContext, schema: str | None, as_json: bool) -> None:
    """Show applied and pending migrations (does not migrate)."""
    pgm, url = _migrations(cli)
    found = pgm.status(url, schema)
    if found.current is None:  # nothing to report on; often a typo in ?schema=
        raise UsageError(pgm.missing_message_for(url, found.schema))
    if as_json:
        emit_json({"schema": found.schema, "applied": found.applied, "pending": found.pending,
                   "current": found.current, "latest": found.latest, "up_to_date": found.up_to_date,
                   "too_new": found.too_new})
        return
    click.echo(f"schema:  {found.schema}")
    click.echo(f"applied: {', '.join(found.applied) or 'none'}")
    click.echo(f"pending: {', '.join(found.pending) or 'none'}")
    if found.too_new:
        click.echo("state:   migrated by a newer syncpoint; upgrade syncpoint")
    else:
        click.echo("state:   up to date" if found.up_to_date else "state:   needs 'syncpoint db migrate'")

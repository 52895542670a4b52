"""The PostgreSQL store's schema: numbered migrations, the store URL, and connecting with clear errors.

Migrations are the files ``stores/migrations/NNN_name.sql``, applied in number order and recorded in a
``schema_migrations`` table inside the store's schema. ``migrate`` applies the pending ones in ONE
transaction under ``pg_advisory_xact_lock`` (two processes migrating at once: the second waits, then finds
nothing to do), so running it twice is a no-op. A database whose highest recorded migration is newer than
this syncpoint knows is refused with ``SchemaTooNew``. ``PostgresStore`` migrates on open by default
(``?migrate=false`` turns that off: then a pending migration is an error naming the command to run).

The files say ``{schema}`` where the schema name goes; the code substitutes a quoted identifier. To apply
them by hand (a DBA who reviews DDL before it runs), substitute the quoted name yourself, in order::

    for f in src/syncpoint/stores/migrations/*.sql; do
        sed 's/{schema}/"crawler"/g' "$f" | psql -v ON_ERROR_STOP=1 --single-transaction "$DATABASE_URL"
    done

Each file records itself in ``"crawler".schema_migrations``, so ``syncpoint db status`` and the store see
it as applied. Schema names are lowercase letters, digits and ``_`` (at most 63, not starting with a digit
or ``pg_``); the default is ``syncpoint``.

Store URLs are libpq URLs plus syncpoint's own query options, which are removed before libpq sees them:

    ``schema=NAME``     the schema (default ``syncpoint``)
    ``retry=SECONDS``   how long a lost connection is retried before ``StoreUnavailable`` (default 30)
    ``migrate=false``   do not migrate on open
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from syncpoint.errors import InvalidName, SchemaTooNew, StoreError, StoreUnavailable, UsageError
from syncpoint.stores import mask_url

__all__ = [
    "DEFAULT_SCHEMA",
    "Migration",
    "MigrationStatus",
    "PgTarget",
    "advisory_key",
    "available",
    "check_current",
    "check_schema",
    "connect",
    "error_detail",
    "first_line",
    "migrate",
    "migrate_on",
    "missing_message",
    "missing_message_for",
    "parse_url",
    "render",
    "status",
    "status_on",
    "unavailable_message",
]

DEFAULT_SCHEMA = "syncpoint"
DEFAULT_RETRY_SECONDS = 30.0
SYNCPOINT_OPTIONS = ("schema", "retry", "migrate")

_SCHEMA_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_FILE_RE = re.compile(r"([0-9]{3,})_([a-z0-9_]+)\.sql")
_PLACEHOLDER = "{schema}"


# -- the store URL -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class PgTarget:
    """Where a PostgreSQL store lives. ``conninfo`` holds any password: never print it, print ``location``."""

    conninfo: str = field(repr=False)
    schema: str
    location: str
    retry_for: float = DEFAULT_RETRY_SECONDS
    auto_migrate: bool = True

    def scrub(self, text: str) -> str:
        """``text`` with the password (if any) masked, for error messages built from driver errors."""
        password = conninfo_to_dict(self.conninfo).get("password")
        if password:
            text = text.replace(str(password), "***")
        return mask_url(text)


def check_schema(schema: object) -> str:
    if not isinstance(schema, str) or not _SCHEMA_RE.fullmatch(schema) or schema.startswith("pg_"):
        raise InvalidName(
            f"schema name {schema!r} is not allowed; use lowercase letters, digits and '_' "
            "(at most 63, not starting with a digit or 'pg_')"
        )
    return schema


def parse_url(url: str, *, schema: str | None = None) -> PgTarget:
    """Split a store URL into libpq's conninfo and syncpoint's options (``schema`` here wins over the URL)."""
    try:
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
    except ValueError as exc:
        raise UsageError(f"invalid PostgreSQL URL {mask_url(url)!r}: {exc}") from None
    ours = {k: v for k, v in query if k in SYNCPOINT_OPTIONS}
    libpq_url = url
    if ours:  # re-encoded with %20 for spaces: libpq does not read "+" as a space
        rest = urlencode([(k, v) for k, v in query if k not in ours], quote_via=quote)
        libpq_url = urlunsplit(parts._replace(query=rest))
    chosen = check_schema(schema if schema is not None else ours.get("schema", DEFAULT_SCHEMA))
    try:
        retry_for = float(ours.get("retry", DEFAULT_RETRY_SECONDS))
    except ValueError:
        raise UsageError(f"retry= must be a number of seconds, not {ours['retry']!r}") from None
    if not retry_for >= 0:
        raise UsageError(f"retry= must be zero or more seconds, not {ours['retry']!r}")
    migrate_opt = ours.get("migrate", "true").lower()
    if migrate_opt not in ("true", "false", "1", "0", "yes", "no"):
        raise UsageError(f"migrate= must be true or false, not {ours['migrate']!r}")
    try:
        given = conninfo_to_dict(libpq_url)
        extra = {k: v for k, v in (("application_name", "syncpoint"), ("connect_timeout", "10")) if k not in given}
        conninfo = make_conninfo(libpq_url, **extra)
    except psycopg.Error as exc:
        raise UsageError(f"invalid PostgreSQL URL {mask_url(url)!r}: {first_line(str(exc))}") from None
    separator = "&" if "?" in libpq_url else "?"
    location = f"{mask_url(libpq_url)}{separator}schema={chosen}"
    return PgTarget(conninfo, chosen, location, retry_for, migrate_opt in ("true", "1", "yes"))


def _target(conninfo: str | PgTarget, schema: str | None) -> PgTarget:
    if isinstance(conninfo, PgTarget):
        if schema is None:
            return conninfo
        location = conninfo.location.removesuffix(f"schema={conninfo.schema}") + f"schema={check_schema(schema)}"
        return replace(conninfo, schema=schema, location=location)
    if "://" in conninfo:
        return parse_url(conninfo, schema=schema)
    chosen = check_schema(schema if schema is not None else DEFAULT_SCHEMA)
    return PgTarget(conninfo, chosen, f"{mask_url(conninfo)} schema={chosen}")


def first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else text.strip()


def error_detail(exc: BaseException) -> str:
    """The first line of a driver error, without psycopg's "connection failed: " prefix."""
    return first_line(str(exc)).removeprefix("connection failed: ") or type(exc).__name__


def unavailable_message(target: PgTarget, exc: BaseException) -> str:
    """One line naming the store (password masked), what went wrong and the likely fix."""
    detail = error_detail(exc)
    if "password" in detail or "authentication" in detail:
        fix = "check the user and password in the URL"
    elif "role" in detail and "does not exist" in detail:
        fix = "check the user name in the URL (that role does not exist on the server)"
    elif "does not exist" in detail:
        fix = "check the database name in the URL"
    else:
        fix = "is the server running? check the URL"
    return target.scrub(f"cannot reach the PostgreSQL store {target.location}: {detail}; {fix}")


def connect(target: PgTarget, **kwargs: Any) -> psycopg.Connection[tuple[Any, ...]]:
    """A connection of its own (not from a pool), or ``StoreUnavailable`` in one clear line."""
    try:
        return psycopg.connect(target.conninfo, **kwargs)
    except psycopg.OperationalError as exc:
        raise StoreUnavailable(unavailable_message(target, exc)) from None


def advisory_key(*parts: str) -> int:
    """A signed 64-bit advisory-lock key derived from ``parts`` (stable across processes and versions)."""
    digest = hashlib.blake2b("\x00".join(parts).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


# -- migrations --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    template: str = field(repr=False)


@dataclass(frozen=True)
class MigrationStatus:
    schema: str
    applied: list[str]
    pending: list[str]
    current: int | None  # the highest applied version, None on an empty schema
    latest: int  # the highest version this syncpoint knows

    @property
    def up_to_date(self) -> bool:
        return not self.pending and not self.too_new

    @property
    def too_new(self) -> bool:
        return self.current is not None and self.current > self.latest


def available(directory: str | Path | None = None) -> list[Migration]:
    """The migrations this syncpoint ships (or those in ``directory``), in version order."""
    folder: Any = Path(directory) if directory is not None else resources.files("syncpoint.stores") / "migrations"
    found = []
    for entry in folder.iterdir():
        match = _FILE_RE.fullmatch(entry.name)
        if match:
            found.append(Migration(int(match[1]), entry.name[: -len(".sql")], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise StoreError(f"two migration files share a number: {[m.name for m in found]}")
    return found


def render(migration: Migration, schema: str) -> str:
    """The migration's SQL for ``schema`` (a validated name, always double-quoted)."""
    ident = sql.Identifier(check_schema(schema)).as_string()
    return migration.template.replace(_PLACEHOLDER, ident)


def migrate(
    conninfo: str | PgTarget, schema: str | None = None, *, directory: str | Path | None = None
) -> list[str]:
    """Apply pending migrations in one transaction; return the names applied (empty: nothing to do).

    ``conninfo`` is a store URL (``?schema=`` honoured), a libpq conninfo string or a ``PgTarget``.
    """
    target = _target(conninfo, schema)
    with _connection(target) as conn:
        return migrate_on(conn, target.schema, directory=directory, where=target.location)


def status(
    conninfo: str | PgTarget, schema: str | None = None, *, directory: str | Path | None = None
) -> MigrationStatus:
    """Which migrations the schema has, which are pending, and whether it is newer than this syncpoint."""
    target = _target(conninfo, schema)
    with _connection(target) as conn:
        return status_on(conn, target.schema, directory=directory)


def status_on(
    conn: psycopg.Connection[Any], schema: str, *, directory: str | Path | None = None
) -> MigrationStatus:
    known = available(directory)
    applied = _applied(conn, schema)
    return MigrationStatus(
        schema=schema,
        applied=[applied[v] for v in sorted(applied)],
        pending=[m.name for m in known if m.version not in applied],
        current=max(applied) if applied else None,
        latest=max((m.version for m in known), default=0),
    )


def migrate_on(
    conn: psycopg.Connection[Any], schema: str, *, directory: str | Path | None = None, where: str | None = None
) -> list[str]:
    """``migrate`` on an open autocommit connection (the store uses this at open)."""
    known = available(directory)
    where = where or f"schema {schema}"
    done: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (advisory_key("syncpoint:migrate", schema),))
        applied = _applied(conn, schema)
        _refuse_newer(applied, known, where)
        table = sql.Identifier(schema, "schema_migrations")
        for migration in known:
            if migration.version in applied:
                continue
            conn.execute(render(migration, schema).encode("utf-8"))
            conn.execute(
                sql.SQL("INSERT INTO {} (version, name) VALUES (%s, %s) ON CONFLICT DO NOTHING").format(table),
                (migration.version, migration.name),
            )
            done.append(migration.name)
    return done


def check_current(
    conn: psycopg.Connection[Any], schema: str, where: str, *, directory: str | Path | None = None
) -> MigrationStatus:
    """Raise ``SchemaTooNew`` if the schema is ahead of this syncpoint; return its status otherwise."""
    found = status_on(conn, schema, directory=directory)
    if found.too_new:
        _refuse_newer(_applied(conn, schema), available(directory), where)
    return found


def missing_message(conn: psycopg.Connection[Any], schema: str, where: str) -> str:
    """The one line for a schema that holds no store (often a typo in ``?schema=``), naming the fix."""
    exists = conn.execute("SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = %s", (schema,)).fetchone()
    what = f"schema {schema} has no syncpoint store" if exists else f"schema {schema} does not exist"
    return (f"{what} in {where}; check ?schema= in --store, or create it with `syncpoint db migrate` "
            "(a job's first run creates it too)")


def missing_message_for(conninfo: str | PgTarget, schema: str | None = None) -> str:
    """``missing_message`` on a connection of its own."""
    target = _target(conninfo, schema)
    with _connection(target) as conn:
        return missing_message(conn, target.schema, target.location)


def _refuse_newer(applied: dict[int, str], known: list[Migration], where: str) -> None:
    latest = max((m.version for m in known), default=0)
    newest = max(applied, default=0)
    if newest > latest:
        raise SchemaTooNew(
            f"{where} was migrated by a newer syncpoint (migration {applied[newest]}, this one knows up to "
            f"{latest:03d}); upgrade syncpoint"
        )


def _applied(conn: psycopg.Connection[Any], schema: str) -> dict[int, str]:
    exists = conn.execute(
        "SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = %s AND tablename = 'schema_migrations'",
        (schema,),
    ).fetchone()
    if exists is None:
        return {}
    query = sql.SQL("SELECT version, name FROM {} ORDER BY version").format(
        sql.Identifier(schema, "schema_migrations")
    )
    return {int(version): str(name) for version, name in conn.execute(query)}


@contextmanager
def _connection(target: PgTarget) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    conn = connect(target, autocommit=True)
    try:
        yield conn
    except psycopg.OperationalError as exc:
        raise StoreUnavailable(unavailable_message(target, exc)) from None
    except psycopg.Error as exc:
        raise StoreError(target.scrub(f"{target.location}: {first_line(str(exc))}")) from None
    finally:
        conn.close()

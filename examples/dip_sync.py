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

``sync_endpoint`` is the part worth reading. It syncs one DIP endpoint, newest first, into a destination
that commits each page *before* the watermark hears of it: a crash can make a page be written twice (an
upsert, so no duplicate rows), never lost. Resuming uses the order-aware watermark: the end bound
``f.aktualisiert.end`` is the oldest ``aktualisiert`` reached, inclusive, and the IDs already written at
exactly that value are skipped. The filters a run was started with (``--start``, ``--end``, ``--limit``) are
kept in the run's params, so a plain ``--resume`` keeps them; an explicit ``--end`` on resume overrides the
checkpoint. The rest of this file is the command line around it. See docs/EXAMPLES.md; the stand-in API for
trying it offline is ``examples/servers/dip_server.py``.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Protocol, TypeVar

import click

import syncpoint
from syncpoint.http import HttpClient, RetryPolicy, paginate_cursor

log = logging.getLogger("dip_sync")

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_BASE_URL = "https://search.dip.bundestag.de/api/v1"
#: Job name (the command is ``sync-<name>``) → DIP endpoint, in the order ``sync-all`` runs them.
ENTITIES: dict[str, str] = {
    "personen": "person",
    "vorgaenge": "vorgang",
    "vorgangspositionen": "vorgangsposition",
    "aktivitaeten": "aktivitaet",
    "drucksachen": "drucksache",
    "drucksache-texte": "drucksache-text",
    "plenarprotokolle": "plenarprotokoll",
    "plenarprotokoll-texte": "plenarprotokoll-text",
}

Connect = Callable[[syncpoint.Run], HttpClient]


# -- the destination ---------------------------------------------------------------------------------------
class Destination(Protocol):
    """Where documents go. ``write`` must have committed when it returns; writing a document again replaces it."""

    def write(self, endpoint: str, docs: Sequence[Mapping[str, Any]]) -> None: ...


class SqliteDestination:
    """One table per endpoint (``drucksache-text`` → ``drucksache_text``): ``id``, ``aktualisiert``, ``data``.

    Safe from several threads: one instance serialises its connection with a lock, and instances (one per
    job of ``dip_sync.py sync-all --concurrency N``) wait for each other's write transactions (WAL,
    ``BEGIN IMMEDIATE``, a busy timeout).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = str(path)
        self._mu = threading.Lock()
        self.conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        # FULL: a page is on disk before the checkpoint that counts on it commits, even across a power cut.
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("PRAGMA busy_timeout=10000")
        self._tables: set[str] = set()

    @staticmethod
    def table(endpoint: str) -> str:
        name = endpoint.replace("-", "_")
        if not name.replace("_", "").isalnum():
            raise ValueError(f"not a DIP endpoint: {endpoint!r}")
        return name

    def _ensure(self, endpoint: str) -> str:
        table = self.table(endpoint)
        if table not in self._tables:
            self.conn.execute(
                f'CREATE TABLE IF NOT EXISTS "{table}" (id TEXT PRIMARY KEY, aktualisiert TEXT, data TEXT)'
            )
            self._tables.add(table)
        return table

    def write(self, endpoint: str, docs: Sequence[Mapping[str, Any]]) -> None:
        rows = [(str(d["id"]), str(d["aktualisiert"]), json.dumps(d, ensure_ascii=False)) for d in docs]
        with self._mu:
            self._write(self._ensure(endpoint), rows)

    def _write(self, table: str, rows: list[tuple[str, str, str]]) -> None:
        if not rows:
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.executemany(
                f'INSERT INTO "{table}" (id, aktualisiert, data) VALUES (?, ?, ?) '
                "ON CONFLICT(id) DO UPDATE SET aktualisiert = excluded.aktualisiert, data = excluded.data",
                rows,
            )
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def count(self, endpoint: str) -> int:
        with self._mu:
            row = self.conn.execute(f'SELECT count(*) FROM "{self._ensure(endpoint)}"').fetchone()
        return int(row[0])

    def close(self) -> None:
        with self._mu:
            self.conn.close()


# -- the sync ----------------------------------------------------------------------------------------------
def dip_client(
    base_url: str, api_key: str, *, sleep: Callable[[float], None] = time.sleep, retry: RetryPolicy | None = None,
    checkpoint: Callable[[], None] | None = None,
) -> HttpClient:
    """A client for DIP: ``Authorization: ApiKey …``; pass ``run.sleep`` and ``run.checkpoint`` so that Ctrl+C
    ends a rate-limit wait and the retrying (see ``HttpClient``)."""
    headers = {"Authorization": f"ApiKey {api_key}", "Accept": "application/json"}
    return HttpClient(base_url, headers=headers, sleep=sleep, retry=retry, checkpoint=checkpoint)


@dataclass
class SyncResult:
    """What one attempt did: documents written, skipped (written before an interruption), failed; pages."""

    endpoint: str
    written: int = 0
    skipped: int = 0
    failed: int = 0
    pages: int = 0


def remember_filters(options: syncpoint.RunOptions, *, limit: int | None = None) -> syncpoint.RunOptions:
    """Keep this invocation's explicit ``--start``/``--end``/``--limit`` in the run's params.

    A plain ``--resume`` then syncs the same range the run was started with; a flag given again on resume
    replaces the remembered value.
    """
    extra: dict[str, Any] = {}
    if options.start is not None:
        extra["start"] = options.start.isoformat()
    if options.end is not None:
        extra["end"] = options.end.isoformat()
    if limit is not None:
        extra["limit"] = limit
    return replace(options, params={**options.params, **extra}) if extra else options


def sync_endpoint(
    run: syncpoint.Run, client: HttpClient, endpoint: str, dest: Destination, filters: Mapping[str, str] | None = None
) -> SyncResult:
    """Sync one DIP endpoint into ``dest``, newest first, resumably (see the module docstring)."""
    result = SyncResult(endpoint)
    task = run.task(endpoint)
    if task.is_complete:
        return result
    task.start()
    mark = task.watermark(syncpoint.NEWEST_FIRST)
    query = {"format": "json", **(filters or {}), **_time_filters(run, mark)}
    if mark.value is not None:  # the original tool's line, with the date its users look for
        value = mark.value.isoformat() if isinstance(mark.value, datetime) else str(mark.value)
        override = f"; --end {run.options.end.isoformat()} overrides it" if run.options.end is not None else ""
        log.info("%s: resuming from checkpoint: %s (aktualisiert <= %s)%s", endpoint, value[:10], value, override)
    limit = run.params.get("limit")
    before = task.record.records
    for page in paginate_cursor(client, f"/{endpoint}", query, items=_documents, next_cursor=_cursor):
        run.checkpoint()  # a stop asked for while the page was on its way: do not write it
        fresh = _fresh_documents(task, mark, page.items, result)
        if isinstance(limit, int):
            fresh = fresh[: max(0, limit - before - result.written)]
        dest.write(endpoint, [doc for doc, _, _ in fresh])  # committed: only now may the watermark move
        for _, doc_id, when in fresh:
            mark.advance(doc_id, when)
        result.written += len(fresh)
        result.pages += 1
        total = before + _num_found(page.data) - result.skipped
        task.set_total(min(total, limit) if isinstance(limit, int) else total)
        task.set_cursor(task.cursor, pages=1)  # count the page: the save policy commits per page
        if isinstance(limit, int) and before + result.written >= limit:
            break
        run.checkpoint()  # a budget reached or a signal: stop before fetching the next page
    task.complete()
    log.info(
        "%s: %d document(s) written, %d skipped (written before an interruption), %d failed, %d page(s); "
        "%d in this run", endpoint, result.written, result.skipped, result.failed, result.pages,
        before + result.written,
    )
    return result


def parse_time(value: str) -> datetime:
    """An ISO 8601 datetime as DIP writes it, with its UTC offset (``Z`` allowed; a naive one is UTC)."""
    parsed = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)


def _time_filters(run: syncpoint.Run, mark: syncpoint.Watermark) -> dict[str, str]:
    """``f.aktualisiert.start/end``: flags given now win, then the watermark, then the run's first flags."""
    params = run.params
    start = run.options.start or _param_time(params.get("start"))
    low, high = mark.bounds(start=start, end=run.options.end)
    if high is None:
        high = _param_time(params.get("end"))
    found: dict[str, str] = {}
    for name, value in (("f.aktualisiert.start", low), ("f.aktualisiert.end", high)):
        if isinstance(value, datetime):
            found[name] = value.isoformat(timespec="seconds")
        elif value is not None:
            found[name] = str(value)
    return found


def _param_time(value: object) -> datetime | None:
    return parse_time(value) if isinstance(value, str) else None


def _fresh_documents(
    task: syncpoint.Task, mark: syncpoint.Watermark, docs: Sequence[Any], result: SyncResult
) -> list[tuple[Mapping[str, Any], str, datetime]]:
    """The page's documents still to write; broken ones go to the task's item ledger as failed."""
    fresh: list[tuple[Mapping[str, Any], str, datetime]] = []
    for index, doc in enumerate(docs):
        try:
            doc_id, when = _identify(doc)
        except ValueError as exc:
            raw_id = doc.get("id") if isinstance(doc, dict) else None
            item = str(raw_id) if isinstance(raw_id, (str, int)) and str(raw_id) else f"page-item-{index}"
            task.item_failed(item[:200], str(exc), retryable=False)
            result.failed += 1
            continue
        if mark.skip(doc_id, when):
            result.skipped += 1
            continue
        fresh.append((doc, doc_id, when))
    return fresh


def _identify(doc: Any) -> tuple[str, datetime]:
    if not isinstance(doc, dict):
        raise ValueError(f"document is not a JSON object: {str(doc)[:60]!r}")
    doc_id, aktualisiert = doc.get("id"), doc.get("aktualisiert")
    if not isinstance(doc_id, (str, int)) or isinstance(doc_id, bool) or not str(doc_id):
        raise ValueError("document has no id")
    if not isinstance(aktualisiert, str):
        raise ValueError(f"document {doc_id} has no 'aktualisiert'")
    try:
        return str(doc_id), parse_time(aktualisiert)
    except ValueError:
        raise ValueError(f"document {doc_id}: 'aktualisiert' is not an ISO 8601 datetime: {aktualisiert!r}") from None


def _documents(data: Any) -> list[Any]:
    """A DIP page's documents: ``{"numFound", "cursor", "documents": [...]}``."""
    documents = data["documents"]
    if not isinstance(documents, list):
        raise TypeError("'documents' is not an array")
    return documents


def _cursor(data: Any) -> str | None:
    """A DIP page's next cursor (the same one again after the last page)."""
    cursor = data.get("cursor")
    return cursor if isinstance(cursor, str) else None


def _num_found(data: Any) -> int:
    found = data.get("numFound") if isinstance(data, dict) else None
    return found if isinstance(found, int) else 0


def run_endpoint(
    job: syncpoint.Job,
    options: syncpoint.RunOptions,
    endpoint: str,
    *,
    connect: Connect,
    dest: Destination,
    filters: Mapping[str, str] | None = None,
    limit: int | None = None,
) -> int:
    """Run ``job`` as the standard flags in ``options`` say, syncing ``endpoint``; the exit code."""

    def body(run: syncpoint.Run) -> None:
        with connect(run) as client:
            sync_endpoint(run, client, endpoint, dest, filters)

    return job.execute(remember_filters(options, limit=limit), body)


# -- the jobs ----------------------------------------------------------------------------------------------
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

"""The DIP sync behind ``examples/dip_sync.py``, and ``syncpoint demo``, which runs it against a local API.

    syncpoint demo                  # a local DIP-like API, synced into SQLite with live progress
    syncpoint demo --resume         # after Ctrl+C: continue where it stopped

``sync_endpoint`` is the part worth reading. It syncs one DIP endpoint, newest first, into a destination
that commits each page *before* the watermark hears of it: a crash can make a page be written twice (an
upsert, so no duplicate rows), never lost. It lives in the package, not in ``examples/``, because the demo
runs the very same code and ``examples/`` is not installed.

Resuming uses the order-aware watermark: the end bound ``f.aktualisiert.end`` is the oldest ``aktualisiert``
reached, inclusive, and the IDs already written at exactly that value are skipped. The filters a run was
started with (``--start``, ``--end``, ``--limit``) are kept in the run's params, so a plain ``--resume``
keeps them; an explicit ``--end`` on resume overrides the checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import click

from syncpoint.cursors import NEWEST_FIRST, Watermark
from syncpoint.dates import parse_datetime
from syncpoint.errors import EXIT_OK, EXIT_PARTIAL, EXIT_SIGINT, EXIT_SIGTERM, SyncpointError, UsageError
from syncpoint.http import HttpClient, RetryPolicy, paginate_cursor
from syncpoint.job import Job
from syncpoint.model import RunStatus
from syncpoint.options import Command, RunOptions
from syncpoint.run import Run
from syncpoint.task import Task

log = logging.getLogger("syncpoint.dip")

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

Connect = Callable[[Run], HttpClient]


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


def remember_filters(options: RunOptions, *, limit: int | None = None) -> RunOptions:
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
    run: Run, client: HttpClient, endpoint: str, dest: Destination, filters: Mapping[str, str] | None = None
) -> SyncResult:
    """Sync one DIP endpoint into ``dest``, newest first, resumably (see the module docstring)."""
    result = SyncResult(endpoint)
    task = run.task(endpoint)
    if task.done:
        return result
    task.start()
    mark = task.watermark(NEWEST_FIRST)
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


def _time_filters(run: Run, mark: Watermark) -> dict[str, str]:
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
    return parse_datetime(value, what="remembered filter") if isinstance(value, str) else None


def _fresh_documents(
    task: Task, mark: Watermark, docs: Sequence[Any], result: SyncResult
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
        return str(doc_id), parse_datetime(aktualisiert, what="aktualisiert")
    except SyncpointError as exc:
        raise ValueError(f"document {doc_id}: {exc}") from None


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
    job: Job,
    options: RunOptions,
    endpoint: str,
    *,
    connect: Connect,
    dest: Destination,
    filters: Mapping[str, str] | None = None,
    limit: int | None = None,
) -> int:
    """Run ``job`` as the standard flags in ``options`` say, syncing ``endpoint``; the exit code."""

    def body(run: Run) -> None:
        with connect(run) as client:
            sync_endpoint(run, client, endpoint, dest, filters)

    return job.execute(remember_filters(options, limit=limit), body)


# -- syncpoint demo ----------------------------------------------------------------------------------------
DEMO_JOB = "demo-drucksachen"
DEMO_COUNT = 3000
DEMO_DELAY = 0.3
DEMO_PAGE_SIZE = 100


@dataclass(frozen=True)
class DemoSettings:
    count: int = DEMO_COUNT
    delay: float = DEMO_DELAY
    seed: int = 0
    db: str | None = None
    checkpoint_dir: str | None = None
    store: str | None = None

    @property
    def db_path(self) -> Path:
        return Path(self.db) if self.db else Path(self.checkpoint_dir or ".checkpoints") / "demo-dip.db"

    def resume_command(self) -> str:
        """What to type to continue this demo (only the flags that differ from the defaults)."""
        parts = ["syncpoint demo --resume"]
        if self.count != DEMO_COUNT:
            parts.append(f"--count {self.count}")
        if self.seed:
            parts.append(f"--seed {self.seed}")
        if self.db:
            parts.append(f"--db {self.db}")
        if self.checkpoint_dir:
            parts.append(f"--checkpoint-dir {self.checkpoint_dir}")
        if self.store:
            parts.append(f"--store {self.store}")
        return " ".join(parts)


def run_demo(
    settings: DemoSettings | None = None,
    options: RunOptions | None = None,
    *,
    echo: Callable[[str], None] = click.echo,
) -> int:
    """Start the local DIP API, sync its Drucksachen into SQLite as ``sync-drucksachen`` does; the exit code."""
    from syncpoint.testing.dip_server import DipServer, FaultPlan

    settings = settings or DemoSettings()
    options = options or RunOptions()
    options = replace(options, store=options.store or settings.store,
                      checkpoint_dir=options.checkpoint_dir or settings.checkpoint_dir)
    faults = FaultPlan(slow_rate=1.0, slow_seconds=settings.delay) if settings.delay > 0 else None
    config = {"source": "syncpoint demo", "endpoint": "drucksache", "count": settings.count,
              "seed": settings.seed, "db": str(settings.db_path)}
    with DipServer({"drucksache": settings.count}, seed=settings.seed, page_size=DEMO_PAGE_SIZE,
                   faults=faults) as server:
        job = Job.from_options(DEMO_JOB, config, options)
        if options.resume and not options.new_run:
            try:
                _check_same_demo(job, settings)
            except UsageError:
                job.close()
                raise
        dest = SqliteDestination(settings.db_path)
        try:
            echo(_intro(settings, server.url, job.store.location))
            code = run_endpoint(
                job, options, "drucksache", dest=dest,
                connect=lambda run: dip_client(server.url, server.api_key, sleep=run.sleep,
                                               checkpoint=run.checkpoint),
            )
            rows = dest.count("drucksache")
        finally:
            dest.close()
            job.close()
        echo(_outro(settings, code, rows, sum(server.stats.pages.values())))
    return code


def _check_same_demo(job: Job, settings: DemoSettings) -> None:
    """``--resume`` with another ``--count``/``--seed``/``--db`` than the run it would resume: say which flags
    continue that run and which start over. (The general message suggests ``--force`` and ``--new-run``,
    flags the demo does not have: a demo resumed against another data set would mix two of them.)"""
    found = job.store.list_runs(job.name, statuses=[s for s in RunStatus if s.resumable], limit=1)
    if not found:
        return
    old = found[0].config
    then = replace(
        settings,
        count=int(old.get("count", settings.count)), seed=int(old.get("seed", settings.seed)),
        db=str(old["db"]) if old.get("db") and str(old["db"]) != str(settings.db_path) else settings.db,
    )
    if (then.count, then.seed, str(then.db_path)) == (settings.count, settings.seed, str(settings.db_path)):
        return
    was = f"--count {then.count}, --seed {then.seed}, --db {then.db_path}"
    fresh = settings.resume_command().replace("syncpoint demo --resume", "syncpoint demo", 1)
    raise UsageError(
        f"the demo run {found[0].run_id} to resume was started with {was}; continue it with "
        f"'{then.resume_command()}', or start a new demo with '{fresh}' (without --resume)"
    )


def _intro(settings: DemoSettings, url: str, location: str) -> str:
    pages = -(-settings.count // DEMO_PAGE_SIZE)
    return "\n".join([
        f"syncpoint demo: a local DIP-like API on {url} serving {settings.count:,} Drucksachen",
        f"  ({pages} pages of {DEMO_PAGE_SIZE}, {settings.delay:g} s each), newest first, many sharing a timestamp.",
        f"  destination: {settings.db_path} (table drucksache)",
        f"  checkpoints: {location} (job {DEMO_JOB})",
        "",
        f"Press Ctrl+C to interrupt it, then run `{settings.resume_command()}` to continue where it stopped.",
        "",
    ])


def _outro(settings: DemoSettings, code: int, rows: int, pages: int) -> str:
    where = f"{rows:,} of {settings.count:,} documents are in {settings.db_path}"
    if rows > settings.count:  # documents of an earlier demo with a larger --count or another --seed
        where = (f"{settings.db_path} holds {rows:,} documents: more than the {settings.count:,} this API serves, "
                 "because earlier demo runs with another --count or --seed left theirs (delete the file to "
                 "start clean)")
    if code == EXIT_OK:
        return (f"\nDone: {where}; the server served {pages} page(s) this time.\n"
                f"See the run history: syncpoint runs list --job {DEMO_JOB}\n"
                "Or look at it in a browser: syncpoint serve   (then open http://127.0.0.1:8765/; "
                "needs pip install 'syncpoint[web]')")
    if code in (EXIT_SIGINT, EXIT_SIGTERM, EXIT_PARTIAL):
        why = "Stopped by a budget" if code == EXIT_PARTIAL else "Interrupted"
        return (f"\n{why} (exit {code}); nothing is lost: {where} and the checkpoint is committed.\n"
                f"To continue where it stopped, run:\n\n    {settings.resume_command()}\n")
    return f"\nThe demo ended with exit code {code}; {where}. The lines above say why."


def _show_info_logs() -> None:
    """Show the run's INFO lines, unless the ``syncpoint`` group was given an explicit ``--log-level``."""
    from click.core import ParameterSource

    ctx = click.get_current_context(silent=True)
    parent = ctx.parent if ctx is not None else None
    if parent is not None and "log_level" in parent.params and parent.get_parameter_source("log_level") not in (
        ParameterSource.DEFAULT, None
    ):
        return
    logging.getLogger("syncpoint").setLevel(logging.INFO)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request is too chatty


def _global_store() -> tuple[str | None, str | None]:
    """``syncpoint --store URL demo``: the group's store options, when run as a ``syncpoint`` subcommand."""
    ctx = click.get_current_context(silent=True)
    parent = ctx.parent if ctx is not None else None
    if parent is None:
        return None, None
    store, checkpoint_dir = parent.params.get("store_url"), parent.params.get("checkpoint_dir")
    return (store if isinstance(store, str) else None, checkpoint_dir if isinstance(checkpoint_dir, str) else None)


@click.command(name="demo", cls=Command)
@click.option("--resume", is_flag=True, help="Continue the interrupted demo run where it stopped.")
@click.option("--count", type=click.IntRange(min=1, max=1_000_000), default=DEMO_COUNT, show_default=True,
              help="Documents the local API serves.")
@click.option("--delay", type=click.FloatRange(min=0, max=60), default=DEMO_DELAY, show_default=True,
              help="Seconds the local API takes per page (time to press Ctrl+C).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the generated documents.")
@click.option("--db", metavar="PATH", help="Destination SQLite file [default: .checkpoints/demo-dip.db].")
@click.option("--checkpoint-dir", metavar="DIR", help="Directory of the SQLite checkpoint store.")
@click.option("--store", "store_url", metavar="URL", help="Checkpoint store URL (sqlite:PATH, json:DIR, ...).")
@click.option("--max-items", type=click.IntRange(min=1), metavar="N", help="Stop cleanly (exit 2) after N documents.")
@click.option("--progress/--no-progress", default=None, help="Live progress (default: on a terminal).")
@click.option("--progress-interval", type=click.FloatRange(min=0.05), default=2.0, show_default=True,
              metavar="S", help="Seconds between progress lines when not on a terminal.")
def demo(resume: bool, count: int, delay: float, seed: int, db: str | None, checkpoint_dir: str | None,
         store_url: str | None, max_items: int | None, progress: bool | None, progress_interval: float) -> None:
    """Sync a local DIP-like API into SQLite; interrupt it with Ctrl+C and resume it with --resume."""
    group_store, group_dir = _global_store()
    settings = DemoSettings(count=count, delay=delay, seed=seed, db=db, checkpoint_dir=checkpoint_dir or group_dir,
                            store=store_url or group_store)
    options = RunOptions(resume=resume, max_items=max_items, progress=progress, progress_interval=progress_interval)
    _show_info_logs()
    raise SystemExit(run_demo(settings, options))


if __name__ == "__main__":
    demo()

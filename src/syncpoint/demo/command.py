"""``syncpoint demo``: start the local API, run the demo's sync as a job, and say what to type next.

    syncpoint demo                  # a local API, synced into SQLite with live progress
    syncpoint demo --resume         # after Ctrl+C: continue where it stopped

The sync itself is ``syncpoint.demo.sync`` (public API only, the code to copy); this module is the program
around it, as ``click_options`` and ``Job.execute`` make one, plus the demo's messages. The job's config
leaves the API's URL out on purpose: each demo starts its server on a new port, and a resume against it must
be allowed (a real sync keeps its base URL in the config, so a resume against another API is refused).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, replace
from pathlib import Path

import click

import syncpoint
from syncpoint.demo import sync
from syncpoint.demo.api import PAGE_SIZE, PATH, demo_api
from syncpoint.testing.server import LocalServer

DEMO_JOB = "demo"
DEMO_COUNT = 3000
DEMO_DELAY = 0.3


@dataclass(frozen=True)
class DemoSettings:
    """The demo's own flags: what the API serves, and where the rows and checkpoints go."""

    count: int = DEMO_COUNT
    delay: float = DEMO_DELAY
    seed: int = 0
    db: str | None = None
    checkpoint_dir: str | None = None
    store: str | None = None

    @property
    def db_path(self) -> Path:
        return Path(self.db) if self.db else Path(self.checkpoint_dir or ".checkpoints") / "demo.db"

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
    options: syncpoint.RunOptions | None = None,
    *,
    echo: Callable[[str], None] = click.echo,
) -> int:
    """Serve the demo's API on 127.0.0.1, sync it into SQLite with ``sync.sync_documents``; the exit code."""
    settings = settings or DemoSettings()
    options = options or syncpoint.RunOptions()
    options = replace(options, store=options.store or settings.store,
                      checkpoint_dir=options.checkpoint_dir or settings.checkpoint_dir)
    config = {"source": "syncpoint demo", "count": settings.count, "seed": settings.seed, "db": str(settings.db_path)}
    api = demo_api(settings.count, settings.seed, delay=settings.delay)
    with LocalServer(api) as server:
        job = syncpoint.Job.from_options(DEMO_JOB, config, options)
        try:
            if options.resume and not options.new_run:
                _check_same_demo(job, settings)
            settings.db_path.parent.mkdir(parents=True, exist_ok=True)
            echo(_intro(settings, server.url, job.store.location))
            code = job.execute(options, lambda run: sync.sync_documents(run, server.url, str(settings.db_path)))
        finally:
            job.close()
        pages = server.stats.requests[PATH]
    echo(_outro(settings, code, _rows(settings.db_path), pages))
    return code


def _rows(db: Path) -> int:
    """Documents in the destination (none yet when the demo stopped before its first page)."""
    if not db.exists():
        return 0
    with closing(sqlite3.connect(db)) as conn:
        try:
            return int(conn.execute("SELECT count(*) FROM documents").fetchone()[0])
        except sqlite3.OperationalError:
            return 0


def _check_same_demo(job: syncpoint.Job, settings: DemoSettings) -> None:
    """``--resume`` with another ``--count``/``--seed``/``--db`` than the run it would resume: say which flags
    continue that run and which start over. (The general message suggests ``--force`` and ``--new-run``,
    flags the demo does not have: a demo resumed against another data set would mix two of them.)"""
    found = job.store.list_runs(job.name, statuses=[s for s in syncpoint.RunStatus if s.resumable], limit=1)
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
    raise syncpoint.UsageError(
        f"the demo run {found[0].run_id} to resume was started with {was}; continue it with "
        f"'{then.resume_command()}', or start a new demo with '{fresh}' (without --resume)"
    )


def _intro(settings: DemoSettings, url: str, location: str) -> str:
    pages = -(-settings.count // PAGE_SIZE)
    return "\n".join([
        f"syncpoint demo: a local API on {url} serving {settings.count:,} documents",
        f"  ({pages} pages of {PAGE_SIZE}, {settings.delay:g} s each, behind opaque page tokens).",
        f"  the sync:    {sync.__file__} (docs/DEMO.md shows it)",
        f"  destination: {settings.db_path} (table documents)",
        f"  checkpoints: {location} (job {DEMO_JOB})",
        "",
        f"Press Ctrl+C to interrupt it, then run `{settings.resume_command()}` to continue where it stopped.",
        "",
    ])


def _outro(settings: DemoSettings, code: int, rows: int, pages: int) -> str:
    where = f"{rows:,} of {settings.count:,} documents are in {settings.db_path}"
    if rows > settings.count:  # documents of an earlier demo with a larger --count
        where = (f"{settings.db_path} holds {rows:,} documents: more than the {settings.count:,} this API serves, "
                 "because earlier demo runs with a larger --count left theirs (delete the file to start clean)")
    if code == syncpoint.ExitCode.OK:
        return (f"\nDone: {where}; the server served {pages} page(s) this time.\n"
                f"See the run history: syncpoint runs list --job {DEMO_JOB}\n"
                "Or look at it in a browser: syncpoint serve   (then open http://127.0.0.1:8765/; "
                "needs pip install 'syncpoint[web]')")
    if code in (syncpoint.ExitCode.SIGINT, syncpoint.ExitCode.SIGTERM, syncpoint.ExitCode.PARTIAL):
        why = "Stopped by a budget" if code == syncpoint.ExitCode.PARTIAL else "Interrupted"
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


@click.command(name="demo", cls=syncpoint.Command)
@click.option("--resume", is_flag=True, help="Continue the interrupted demo run where it stopped.")
@click.option("--count", type=click.IntRange(min=1, max=1_000_000), default=DEMO_COUNT, show_default=True,
              help="Documents the local API serves.")
@click.option("--delay", type=click.FloatRange(min=0, max=60), default=DEMO_DELAY, show_default=True,
              help="Seconds the local API takes per page (time to press Ctrl+C).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the generated documents.")
@click.option("--db", metavar="PATH", help="Destination SQLite file [default: .checkpoints/demo.db].")
@click.option("--checkpoint-dir", metavar="DIR", help="Directory of the SQLite checkpoint store.")
@click.option("--store", "store_url", metavar="URL", help="Checkpoint store URL (sqlite:PATH, json:DIR, ...).")
@click.option("--max-items", type=click.IntRange(min=1), metavar="N", help="Stop cleanly (exit 2) after N documents.")
@click.option("--progress/--no-progress", default=None, help="Live progress (default: on a terminal).")
@click.option("--progress-interval", type=click.FloatRange(min=0.05), default=2.0, show_default=True,
              metavar="S", help="Seconds between progress lines when not on a terminal.")
def demo(resume: bool, count: int, delay: float, seed: int, db: str | None, checkpoint_dir: str | None,
         store_url: str | None, max_items: int | None, progress: bool | None, progress_interval: float) -> None:
    """Sync a local API into SQLite; interrupt it with Ctrl+C and resume it with --resume."""
    group_store, group_dir = _global_store()
    settings = DemoSettings(count=count, delay=delay, seed=seed, db=db, checkpoint_dir=checkpoint_dir or group_dir,
                            store=store_url or group_store)
    options = syncpoint.RunOptions(resume=resume, max_items=max_items, progress=progress,
                                   progress_interval=progress_interval)
    _show_info_logs()
    raise SystemExit(run_demo(settings, options))


if __name__ == "__main__":
    demo()

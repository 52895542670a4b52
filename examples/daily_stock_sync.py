#!/usr/bin/env python3
"""Fetch the day's price of every listed symbol, in batches, for a scheduler that retries (Cloud Run, cron).

    SYNC_BATCH_SIZE=500 python examples/daily_stock_sync.py --db stocks.db   # exit 2: run me again
    python examples/daily_stock_sync.py --db stocks.db                       # ... exit 0: all done today
    python examples/daily_stock_sync.py --status                             # processed / total / ok / failed
    python examples/daily_stock_sync.py --date 2026-11-20 --store postgresql://…/db?schema=sync

The run is keyed by the date: each invocation finds that day's incomplete run (or creates it), processes at
most ``--batch-size`` symbols it has not processed yet (by symbol, so a newly listed symbol shifts
nothing), records each symbol as successful or failed in the item ledger, and commits every 10 symbols.
Exit 0 when every listed symbol is processed, 2 when the batch ended with work left, 1 when the run has
used ``--max-attempts`` (default 10) invocations without finishing. See docs/EXAMPLES.md.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import replace
from datetime import date
from typing import Any

import click

import syncpoint
from syncpoint import RunStatus
from syncpoint.http import HttpClient, HttpError, RetryPolicy

DEFAULT_BASE_URL = "http://127.0.0.1:8080"
JOB_NAME = "daily-stock-sync"
TASK = "prices"
DEFAULT_BATCH = 500
DEFAULT_ATTEMPTS = 10

log = logging.getLogger("daily_stock_sync")


class PriceTable:
    """``prices(date, symbol, close, volume, writes)`` in SQLite; ``writes`` counts upserts of the row."""

    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, timeout=30, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS prices (date TEXT NOT NULL, symbol TEXT NOT NULL, close REAL, volume INTEGER,"
            " writes INTEGER NOT NULL DEFAULT 1, PRIMARY KEY (date, symbol))"
        )

    def upsert(self, day: str, price: dict[str, Any]) -> None:
        """One price, committed before returning (so before the ledger records the symbol)."""
        self.conn.execute(
            "INSERT INTO prices (date, symbol, close, volume) VALUES (?, ?, ?, ?) ON CONFLICT (date, symbol) "
            "DO UPDATE SET close = excluded.close, volume = excluded.volume, writes = writes + 1",
            (day, price["symbol"], price["close"], price["volume"]),
        )

    def close(self) -> None:
        self.conn.close()


def fetch_symbols(client: HttpClient) -> list[str]:
    data = client.get_json("/symbols")
    symbols = data.get("symbols") if isinstance(data, dict) else data
    if not isinstance(symbols, list) or not all(isinstance(s, str) and s for s in symbols):
        raise ValueError("/symbols did not answer a list of symbols")
    return list(dict.fromkeys(symbols))


def sync_day(run: syncpoint.Run, client: HttpClient, table: PriceTable, day: str) -> None:
    """The body: every listed symbol not yet processed in this run, until the batch budget stops it."""
    task = run.task(TASK)
    with task:
        symbols = fetch_symbols(client)  # fetched afresh by each invocation: newly listed symbols join in
        task.set_total(len(symbols))
        for symbol in task.iterate(symbols):  # skips processed symbols; stops at the batch budget
            try:
                data = client.get_json(f"/prices/{symbol}", {"date": day})
                if not isinstance(data, dict) or data.get("symbol") != symbol or "close" not in data:
                    raise ValueError(f"unexpected price answer for {symbol}: {str(data)[:100]}")
            except (HttpError, ValueError) as exc:
                # The client has retried already: what still fails is failed for today (tomorrow's run asks
                # again); --retry-failed retries it today.
                task.item_failed(symbol, exc, retryable=False)
                log.warning("%s: %s", symbol, exc)
                continue
            table.upsert(day, data)
            task.item_done(symbol)


def find_run(job: syncpoint.Job, day: str, statuses: list[RunStatus] | None = None) -> syncpoint.RunRecord | None:
    found = job.store.list_runs(job.name, statuses=statuses, key=day, limit=1)
    return found[0] if found else None


def show_status(job: syncpoint.Job, day: str) -> int:
    run = find_run(job, day)
    if run is None:
        click.echo(f"{day}: no run yet")
        return 0
    tasks = {t.name: t for t in job.store.get_tasks(run.run_id)}
    task = tasks.get(TASK)
    ok, failed = (task.ok, task.failed) if task else (0, 0)
    total = task.total if task and task.total is not None else None
    click.echo(
        f"{day}: run {run.run_id} {run.status.value}, attempt {run.attempts}: processed {ok + failed}/"
        f"{'?' if total is None else total}, successful {ok}, failed {failed}"
    )
    return 0


@click.command(cls=syncpoint.Command, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--base-url", default=DEFAULT_BASE_URL, show_default=True, help="The prices API.")
@click.option("--db", default="stocks.db", show_default=True, metavar="PATH", help="Destination SQLite file.")
@click.option("--date", "day", metavar="YYYY-MM-DD", help="The day to sync (default: today).")
@click.option("--batch-size", type=click.IntRange(min=1), envvar="SYNC_BATCH_SIZE", default=DEFAULT_BATCH,
              show_default=True, show_envvar=True, help="Symbols per invocation.")
@click.option("--status", "status_only", is_flag=True, help="Show today's progress and exit.")
@click.option("--retry-wait", type=float, default=1.0, show_default=True, metavar="S",
              help="First backoff of a failed request.")
@click.option("--retry-attempts", type=click.IntRange(min=1), default=5, show_default=True, metavar="N",
              help="Attempts per request before a symbol is recorded as failed.")
@syncpoint.click_options
def main(base_url: str, db: str, day: str | None, batch_size: int, status_only: bool, retry_wait: float,
         retry_attempts: int, sync: syncpoint.RunOptions) -> None:
    """Sync today's prices in batches: exit 0 done, 2 run me again, 1 given up."""
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        day = date.fromisoformat(day).isoformat() if day else date.today().isoformat()
    except ValueError:
        raise click.BadParameter(f"{day!r} is not a date (YYYY-MM-DD)", param_hint="--date") from None
    sync = replace(sync, key=day, max_items=sync.max_items or batch_size,
                   max_attempts=sync.max_attempts or DEFAULT_ATTEMPTS)
    job = syncpoint.Job.from_options(JOB_NAME, {"base_url": base_url.rstrip("/"), "db": db}, sync,
                                     save_policy=syncpoint.SavePolicy(every_items=10))
    try:
        if status_only:
            raise SystemExit(show_status(job, day))
        if not (sync.list_runs or sync.cleanup or sync.new_run or sync.resume_run) and \
                find_run(job, day, [RunStatus.COMPLETED]) and not find_run(job, day, [s for s in RunStatus
                                                                                      if s.resumable]):
            click.echo(f"the run for {day} is already complete; nothing to do", err=True)
            raise SystemExit(0)
        retry = RetryPolicy(initial_wait=retry_wait, max_wait=max(retry_wait, 30.0), jitter=min(1.0, retry_wait),
                            max_attempts=retry_attempts)
        table = PriceTable(db)
        try:
            def body(run: syncpoint.Run) -> None:
                with HttpClient(base_url.rstrip("/"), retry=retry, sleep=run.sleep,
                                checkpoint=run.checkpoint) as client:
                    sync_day(run, client, table, day)

            code = job.execute(sync, body)
        finally:
            table.close()
    finally:
        job.close()
    raise SystemExit(code)


if __name__ == "__main__":
    main()

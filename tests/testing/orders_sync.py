"""A sync of your own, as you might have one: a day's orders from a paged JSON API into SQLite.

    python orders_sync.py --api https://shop.example/api --db orders.db --day 2026-11-30    # Ctrl+C, kill -9...
    python orders_sync.py --api https://shop.example/api --db orders.db --day 2026-11-30 --resume

test_user_example.py tests it the way docs/TESTING.md shows: against a local API that fails, through five
``kill -9``s. The run is keyed by the day, so a kill that lands after the last commit is harmless: the resumed
invocation reopens the completed run and finds nothing left to do, instead of starting the day over.
"""

import dataclasses
import json
import sqlite3
from contextlib import closing

import click

import syncpoint
from syncpoint.http import HttpClient, RetryPolicy
from syncpoint.testing.crashloop import crash_point


@click.command(cls=syncpoint.Command)
@click.option("--api", required=True, help="The API's base URL.")
@click.option("--db", required=True, help="The destination SQLite file.")
@click.option("--day", required=True, help="The day whose orders to sync (YYYY-MM-DD).")
@click.option("--retry-wait", type=float, default=1.0, show_default=True, help="First retry's backoff (s).")
@syncpoint.click_options
def main(api: str, db: str, day: str, retry_wait: float, sync: syncpoint.RunOptions) -> None:
    job = syncpoint.Job.from_options("orders", {"api": api, "db": db}, sync)
    retry = RetryPolicy(initial_wait=retry_wait, max_wait=60 * retry_wait, jitter=retry_wait)

    def body(run: syncpoint.Run) -> None:
        cursor = run.task("orders").page_cursor()  # the next page: 1, or where the last invocation stopped
        with (
            HttpClient(api, retry=retry, sleep=run.sleep, checkpoint=run.checkpoint) as client,
            closing(sqlite3.connect(db)) as conn,
        ):
            conn.execute("CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, data TEXT, writes INTEGER)")
            while orders := client.get_json("/orders", {"day": day, "page": cursor.page})["orders"]:
                with conn:  # the page's rows first: an upsert that counts how often each row was written
                    conn.executemany("INSERT INTO orders VALUES (?, ?, 1) "
                                     "ON CONFLICT (id) DO UPDATE SET writes = writes + 1",
                                     [(order["id"], json.dumps(order)) for order in orders])
                crash_point("page-written")  # the worst moment to die: rows in, checkpoint not yet
                cursor.done(cursor.page, records=len(orders))  # then the checkpoint: a safe point

    raise SystemExit(job.execute(dataclasses.replace(sync, key=day), body))


if __name__ == "__main__":
    main()

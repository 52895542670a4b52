"""The sync that ``syncpoint demo`` runs: every document of a paged JSON API into a SQLite table, resumably.

It uses the public API only (``import syncpoint`` and ``syncpoint.http``), as your own sync would: copy it,
then change the request and the table. docs/DEMO.md shows this file in full, and a test keeps the two equal.

Why nothing is lost and nothing doubled, whenever it is stopped (Ctrl+C, SIGTERM, ``kill -9``): each page's
rows are committed in the destination *before* the checkpoint moves past the page, so a crash loses nothing;
the page in flight at a crash is fetched again on ``--resume`` and written as an upsert, so no row is doubled.
"""

import json
import sqlite3
from contextlib import closing

import syncpoint
from syncpoint.http import HttpClient


def sync_documents(run: syncpoint.Run, api: str, db: str) -> None:
    """Copy ``GET {api}/documents``, page by page, into the table ``documents`` of the SQLite file ``db``."""
    task = run.task("documents")
    cursor = task.token_cursor()  # the next page's token: where the last run stopped, or the first page
    # run.sleep and run.checkpoint: Ctrl+C during a retry wait (a 503, a 429's Retry-After) stops it at once
    with HttpClient(api, sleep=run.sleep, checkpoint=run.checkpoint) as client, closing(sqlite3.connect(db)) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS documents (id TEXT PRIMARY KEY, data TEXT NOT NULL)")
        while not cursor.finished:
            run.checkpoint()  # a safe point before the next request: a budget used up (--max-items) stops here
            page = client.get_json("/documents", {"cursor": cursor.token})  # 5xx, 429, timeouts: retried
            rows = [(doc["id"], json.dumps(doc)) for doc in page["documents"]]
            with conn:  # 1. the page's rows, committed; an upsert, so a page written again replaces itself
                conn.executemany("INSERT INTO documents (id, data) VALUES (?, ?) "
                                 "ON CONFLICT (id) DO UPDATE SET data = excluded.data", rows)
            task.set_total(page["total"])  # for the progress display: done/total, rate, ETA
            cursor.done(page["next"], records=len(rows))  # 2. then the checkpoint: a safe point, where a stop lands

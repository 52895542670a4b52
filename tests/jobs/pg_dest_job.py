"""The counting job's source, written into a PostgreSQL table in the store's own transaction (Run.bind).

Destination: ``{schema}.dest(job, id)`` with no unique constraint, so a duplicate would be visible. Each
page's rows and the checkpoint that covers them commit together, so a ``kill -9`` at any instant can
neither lose nor duplicate a row. The table must exist (the test creates it). ``SP_CRASH`` crash points
(see ``crashhook``) are installed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import crashhook

crashhook.install()

import click  # noqa: E402
import psycopg  # noqa: E402
from counting_job import say, source  # noqa: E402
from psycopg import sql  # noqa: E402

import syncpoint  # noqa: E402
from syncpoint.stores import pg_migrations as pgm  # noqa: E402


@click.command(cls=syncpoint.Command)
@click.option("--mode", type=click.Choice(["page", "items"]), default="page")
@click.option("--total", type=int, default=200)
@click.option("--page-size", type=int, default=10)
@click.option("--job", "job_name", default="pgdest")
@syncpoint.click_options
def main(mode: str, total: int, page_size: int, job_name: str, sync: syncpoint.RunOptions) -> None:
    assert sync.store and sync.store.startswith("postgresql://"), "needs --store postgresql://...?schema=S"
    target = pgm.parse_url(sync.store)
    policy = syncpoint.SavePolicy(every_items=page_size, every_pages=1, every_seconds=3600)
    job = syncpoint.Job.from_options(job_name, {"mode": mode, "total": total}, sync, save_policy=policy)
    ids = [r[0] for r in source(total, 7)]
    insert = sql.SQL("INSERT INTO {}.dest (job, id) VALUES (%s, %s)").format(sql.Identifier(target.schema))

    # The connection outlives the run: the run's last commit (in its __exit__) goes through it too.
    conn = psycopg.connect(target.conninfo)

    def body(run: syncpoint.Run) -> None:
        say(f"READY {run.run_id} {os.getpid()}")
        run.bind(conn)
        task = run.task(mode)
        if mode == "page":
            pages = task.page_cursor(first=0)
            for page in range(pages.page, (total + page_size - 1) // page_size):
                run.checkpoint()
                for record_id in ids[page * page_size:(page + 1) * page_size]:
                    conn.execute(insert, (job_name, record_id))
                pages.done(page, records=page_size)
                say(f"PAGE {page}")
        else:
            for start in range(0, total, page_size):
                fresh = 0
                for record_id in task.iterate(ids[start:start + page_size]):
                    conn.execute(insert, (job_name, record_id))
                    task.item_done(record_id)
                    fresh += 1
                if fresh:
                    say(f"PAGE {start // page_size}")
        say("DONE")

    try:
        code = job.execute(sync, body)
    finally:
        conn.close()
    raise SystemExit(code)


if __name__ == "__main__":
    main()

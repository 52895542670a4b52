"""A distributed job for the tests: a fan-out (``start``) and workers (``work``) through procrastinate.

Each task is ``PAGES`` pages of ``PAGE_SIZE`` records with IDs ``{task}-{page}-{i}``. Destinations:

- ``file``: one JSONL file per task in ``--out``; a line is ``{"id", "epoch"}``, appended and flushed per
  page before the page's checkpoint (at-least-once: a redo after a takeover writes lines again);
- ``pg``: rows ``(job, id, epoch)`` in ``{schema}.fleet_dest`` (no unique key), written in the checkpoint's
  own transaction (``run.bind``): exactly once, however workers die;
- ``both``: each page to both (one chaos run checks the two promises).

``--fail-task NAME`` makes that task raise a retryable error on its first ``--fail-times`` attempts.
``--map-items N`` makes each task instead ``run.map`` over N items ``{task}-m{i}`` with ``--map-concurrency``
threads, each item a line in the task's file (written before the item is recorded done).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import click
import psycopg
from psycopg import sql

import syncpoint
from syncpoint.distributed import Fleet, WorkerRun
from syncpoint.stores import pg_migrations as pgm


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def make_fleet(store: str, job_name: str, stall: float, retry_wait: float, max_attempts: int) -> Fleet:
    policy = syncpoint.SavePolicy(every_pages=1, every_items=1000, every_seconds=3600)
    job = syncpoint.Job(job_name, {"kind": "fleet"}, store=store, save_policy=policy,
                        permanent_errors=[PermissionError])
    return Fleet(job, stall_timeout=stall, retry_wait=retry_wait, max_attempts=max_attempts)


@click.group()
@click.option("--store", required=True)
@click.option("--job", "job_name", default="fleet")
@click.option("--stall", type=float, default=2.0)
@click.option("--retry-wait", type=float, default=0.2)
@click.option("--max-attempts", type=int, default=3)
@click.pass_context
def main(ctx: click.Context, store: str, job_name: str, stall: float, retry_wait: float, max_attempts: int) -> None:
    ctx.obj = {"fleet": make_fleet(store, job_name, stall, retry_wait, max_attempts), "store": store}


@main.command()
@click.option("--tasks", type=int, default=10)
@click.option("--key", default=None)
@click.pass_obj
def start(obj: dict[str, Any], tasks: int, key: str | None) -> None:
    fleet: Fleet = obj["fleet"]
    fleet.task(lambda run, task: None)
    run_id = fleet.start([f"t{n:04d}" for n in range(tasks)], key=key)
    say(f"RUN {run_id}")


@main.command()
@click.argument("run_id")
@click.option("--permanent", is_flag=True, help="retry tasks failed with a permanent error too")
@click.pass_obj
def retry(obj: dict[str, Any], run_id: str, permanent: bool) -> None:
    fleet: Fleet = obj["fleet"]
    fleet.task(lambda run, task: None)
    try:
        say(f"QUEUED {' '.join(fleet.retry(run_id, permanent=permanent))}")
    except syncpoint.SyncpointError as err:
        click.echo(f"fleet_job.py: error: {err}", err=True)
        sys.exit(err.exit_code)


@main.command()
@click.option("--concurrency", type=int, default=1)
@click.option("--until-done", is_flag=True)
@click.option("--dest", type=click.Choice(["file", "pg", "both"]), default="file")
@click.option("--out", type=click.Path(path_type=Path), default=Path("out"))
@click.option("--pages", type=int, default=5)
@click.option("--page-size", type=int, default=4)
@click.option("--page-delay", type=float, default=0.02)
@click.option("--fail-task", default=None)
@click.option("--fail-times", type=int, default=1)
@click.option("--permanent", is_flag=True, help="the --fail-task error is permanent")
@click.option("--map-items", type=int, default=0)
@click.option("--map-concurrency", type=int, default=4)
@click.pass_obj
def work(obj: dict[str, Any], concurrency: int, until_done: bool, dest: str, out: Path, pages: int, page_size: int,
         page_delay: float, fail_task: str | None, fail_times: int, permanent: bool, map_items: int,
         map_concurrency: int) -> None:
    # the log on stdout, with the PAGE lines: a test reads both in order (stderr keeps tracebacks apart)
    logging.basicConfig(level=logging.INFO, format="LOG %(levelname)s %(name)s %(message)s", stream=sys.stdout)
    logging.getLogger("procrastinate").setLevel(logging.WARNING)
    fleet: Fleet = obj["fleet"]
    target = pgm.parse_url(obj["store"])
    out.mkdir(parents=True, exist_ok=True)
    insert = sql.SQL("INSERT INTO {}.fleet_dest (job, id, epoch) VALUES (%s, %s, %s)").format(
        sql.Identifier(target.schema))

    def collect_mapped(run: WorkerRun, task: syncpoint.Task) -> None:
        lock = threading.Lock()
        with open(out / f"{task.name}.jsonl", "a", encoding="utf-8") as fh:
            def one(item: str) -> None:
                time.sleep(page_delay)
                with lock:
                    fh.write(json.dumps({"id": item, "epoch": run.epoch}) + "\n")
                    fh.flush()
                say(f"ITEM {task.name} {item} {run.epoch} {os.getpid()}")

            summary = run.map(one, task.pending([f"{task.name}-m{i}" for i in range(map_items)]),
                              concurrency=map_concurrency)
            say(f"MAPPED {task.name} {summary.done} {run.epoch}")

    @fleet.task
    def collect(run: WorkerRun, task: syncpoint.Task) -> None:
        if map_items:
            collect_mapped(run, task)
            return
        if task.name == fail_task and run.failures < fail_times:
            if permanent:
                raise PermissionError(f"task {task.name}: access revoked for good")
            raise ConnectionError(f"task {task.name}: the source is away (attempt {run.failures + 1})")
        cursor = task.page_cursor(first=0)
        conn = psycopg.connect(target.conninfo) if dest in ("pg", "both") else None
        try:
            with contextlib.ExitStack() as stack:
                if conn is not None:
                    stack.enter_context(run.bind(conn))
                fh = stack.enter_context(open(out / f"{task.name}.jsonl", "a", encoding="utf-8"))
                for page in range(cursor.page, pages):
                    run.checkpoint()
                    time.sleep(page_delay)
                    ids = [f"{task.name}-{page}-{i}" for i in range(page_size)]
                    if conn is not None:
                        for record_id in ids:
                            conn.execute(insert, (fleet.job.name, record_id, run.epoch))
                    if dest in ("file", "both"):
                        fh.write("".join(json.dumps({"id": i, "epoch": run.epoch}) + "\n" for i in ids))
                        fh.flush()
                    cursor.done(page, records=page_size)
                    say(f"PAGE {task.name} {page} {run.epoch} {os.getpid()}")
        finally:
            if conn is not None:
                conn.close()

    # SIGTERM before fleet.work() installs its handlers: exit 143 like after (nothing is held yet)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
    say(f"WORKER {os.getpid()}")
    sys.exit(fleet.work(concurrency=concurrency, until_done=until_done))


if __name__ == "__main__":
    main()

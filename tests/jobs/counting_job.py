"""A real sync written with the public API, driven by the crash and signal tests as a subprocess.

Source: ``--total`` records, served in pages of ``--page-size``, newest first by a timestamp that many
records share (runs of ``--tie`` equal values), so page boundaries fall inside runs of equal values.
Destination: ``--dest``, one line per record written (flushed before the checkpoint sees it).

Modes: ``page`` (page-number cursor), ``items`` (item ledger), ``watermark`` (newest-first watermark with
an inclusive ``end`` filter, as the DIP API offers). ``--gate`` makes the job wait for a line on stdin
before each page, so a test can send a signal at an exact point without sleeping. ``--linger`` keeps the
process from exiting after the run ended (a non-daemon thread waits for stdin to close), so a test can
signal it while it winds down.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from datetime import datetime, timedelta, timezone

import click

import syncpoint

BASE = datetime(2024, 3, 15, 12, 0, tzinfo=timezone.utc)


def source(total: int, tie: int) -> list[tuple[str, datetime]]:
    """Newest first; ties broken by id descending (as the DIP server does)."""
    records = [(f"{i:07d}", BASE - timedelta(minutes=i // tie)) for i in range(total)]
    return sorted(records, key=lambda r: (r[1], r[0]), reverse=True)


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


MODE_CHOICE = click.Choice(["page", "items", "watermark", "map-items", "map-slices", "amap-items"])


@click.command(cls=syncpoint.Command)
@click.option("--mode", type=MODE_CHOICE, default="page")
@click.option("--concurrency", type=int, default=8, help="workers of the map-* modes")
@click.option("--item-seconds", type=float, default=0.0, help="how long each unit of the map-* modes takes")
@click.option("--grace", type=float, default=None, help="the map-* modes' grace period after a stop")
@click.option("--total", type=int, default=200)
@click.option("--page-size", type=int, default=10)
@click.option("--tie", type=int, default=7)
@click.option("--dest", required=True)
@click.option("--gate", is_flag=True)
@click.option("--linger", is_flag=True)
@click.option("--commit-items", type=int, default=1000)
@click.option("--job", "job_name", default="counting")
@click.option("--fail-at", type=int, default=None, help="raise an error when this record is reached")
@syncpoint.click_options
def main(mode: str, concurrency: int, item_seconds: float, grace: float | None, total: int, page_size: int, tie: int,
         dest: str, gate: bool, linger: bool, commit_items: int, job_name: str, fail_at: int | None,
         sync: syncpoint.RunOptions) -> None:
    policy = syncpoint.SavePolicy(every_items=commit_items, every_pages=1, every_seconds=3600)
    job = syncpoint.Job.from_options(job_name, {"mode": mode, "total": total, "tie": tie}, sync,
                                     save_policy=policy)
    records = source(total, tie)

    def body(run: syncpoint.Run) -> None:
        say(f"READY {run.run_id} {os.getpid()}")
        task = run.task(mode)
        with open(dest, "a", encoding="utf-8") as out:
            lock = threading.Lock()

            def write(record_id: str) -> None:
                if fail_at is not None and int(record_id) == fail_at:
                    raise RuntimeError(f"record {record_id} is broken")
                with lock:
                    out.write(record_id + "\n")
                    out.flush()

            def slow(unit: object) -> None:
                say(f"STARTED {unit}")
                if item_seconds:
                    time.sleep(item_seconds)

            def wait() -> None:
                if gate:
                    sys.stdin.readline()

            if mode == "map-items":  # items in parallel, recorded out of order
                ids = [r[0] for r in records]

                def one(record_id: str) -> None:
                    slow(record_id)
                    write(record_id)
                    say(f"PAGE {record_id}")

                run.map(one, task.pending(ids), concurrency=concurrency, grace=grace)
            elif mode == "map-slices":  # offset slices in parallel, merged into the task's interval set
                def piece(part: syncpoint.Slice) -> int:
                    slow(part.start)
                    chunk = records[int(part.start):int(part.end)]  # type: ignore[call-overload]
                    for record_id, _ in chunk:
                        write(record_id)
                    say(f"PAGE {part.start}")
                    return len(chunk)

                run.map(piece, task.slices(0, total, page_size), concurrency=concurrency, grace=grace)
            elif mode == "page":
                pages = task.page_cursor(first=0)
                for page in range(pages.page, (total + page_size - 1) // page_size):
                    wait()
                    run.checkpoint()
                    for record_id, _ in records[page * page_size:(page + 1) * page_size]:
                        write(record_id)
                    pages.done(page, records=page_size)
                    say(f"PAGE {page}")
            elif mode == "items":
                ids = [r[0] for r in records]
                for start in range(0, total, page_size):
                    wait()
                    fresh = 0
                    for record_id in task.iterate(ids[start:start + page_size]):
                        write(record_id)
                        task.item_done(record_id)
                        fresh += 1
                    if fresh:  # pages skipped whole on resume are not news
                        say(f"PAGE {start // page_size}")
            else:
                mark = task.watermark(syncpoint.NEWEST_FIRST)
                _, end = mark.bounds(end=sync.end)
                todo = [r for r in records if end is None or r[1] <= end]
                for start in range(0, len(todo), page_size):
                    wait()
                    run.checkpoint()
                    for record_id, value in todo[start:start + page_size]:
                        if mark.skip(record_id, value):
                            continue
                        write(record_id)
                        mark.advance(record_id, value)
                    say(f"PAGE {start // page_size}")
        say("DONE")

    async def async_body(run: syncpoint.AsyncRun) -> None:  # amap-items: coroutines under asyncio
        say(f"READY {run.run_id} {os.getpid()}")
        task = run.task(mode)
        ids = [r[0] for r in records]
        with open(dest, "a", encoding="utf-8") as out:
            async def one(record_id: str) -> None:
                say(f"STARTED {record_id}")
                await asyncio.sleep(item_seconds)
                out.write(record_id + "\n")
                out.flush()
                say(f"PAGE {record_id}")

            await run.map(one, task.pending(ids), concurrency=concurrency, grace=grace)
        say("DONE")

    code = job.execute(sync, async_body if mode == "amap-items" else body)
    if linger:  # like a program whose worker threads still finish while it exits
        threading.Thread(target=sys.stdin.read).start()
        say(f"EXITING {code}")
    raise SystemExit(code)


if __name__ == "__main__":
    main()

"""A slow real job for the dashboard tests: ``dash_job.py --items N --delay S [--fail-every K --error TEXT]``.

A phase, a page-cursor task (``pages``, 5 pages of 10 records) and an item task (``records``, N items of
known total, one every S seconds, every K-th failing with TEXT), committed every 5 items or 0.2 s, so a
dashboard sees progress move. Prints ``READY RUN_ID PID`` after its first commit of items.
"""

from __future__ import annotations

import os
import sys
import time

import click

import syncpoint


def item_id(i: int) -> str:
    return f"item-{i:04d}"


@click.command(cls=syncpoint.Command)
@click.option("--items", type=int, default=60)
@click.option("--delay", type=float, default=0.05)
@click.option("--fail-every", type=int, default=0)
@click.option("--error", "error_text", default="flaky")
@click.option("--job", "job_name", default="dash")
@click.option("--label", default="v1", help="a config value, so two runs can differ")
@syncpoint.click_options
def main(items: int, delay: float, fail_every: int, error_text: str, job_name: str, label: str,
         sync: syncpoint.RunOptions) -> None:
    policy = syncpoint.SavePolicy(every_items=5, every_pages=1, every_seconds=0.2)
    job = syncpoint.Job.from_options(job_name, {"items": items, "label": label}, sync, save_policy=policy)

    def body(run: syncpoint.Run) -> None:
        if not run.is_phase_complete("discover"):
            run.complete_phase("discover")
        with run.task("pages") as pages:
            for page in range(5):
                pages.set_cursor({"page": page + 1}, pages=1, records=10)
        with run.task("records") as task:
            task.set_total(items)
            for i in task.iterate(range(items), key=item_id):
                time.sleep(delay)
                if fail_every and i % fail_every == fail_every - 1:
                    task.item_failed(item_id(i), f"{error_text} #{i}", retryable=i % 2 == 0)
                else:
                    task.item_done(item_id(i))
                if i == 5:
                    run.commit()
                    sys.stdout.write(f"READY {run.run_id} {os.getpid()}\n")
                    sys.stdout.flush()

    sys.exit(job.execute(sync, body))


if __name__ == "__main__":
    main()

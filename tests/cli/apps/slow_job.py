"""A small sync for the progress tests: ``slow_job.py --items N --delay S [standard flags]``.

Processes N items of one task whose total is known, sleeping S seconds per item, through ``Job.execute``
(which sets up logging and the progress reporter as the flags say).
"""

from __future__ import annotations

import sys
import time

import click

import syncpoint


@click.command(cls=syncpoint.Command)
@click.option("--items", type=int, default=50)
@click.option("--delay", type=float, default=0.02)
@click.option("--fail-every", type=int, default=0)
@syncpoint.click_options
def main(items: int, delay: float, fail_every: int, sync: syncpoint.RunOptions) -> None:
    job = syncpoint.Job.from_options("slow", {"items": items}, sync)

    def body(run: syncpoint.Run) -> None:
        with run.task("records") as task:
            task.set_total(items)
            for i in task.iterate(range(items), key=str):
                time.sleep(delay)
                if fail_every and i % fail_every == 0:
                    task.item_failed(str(i), "flaky", retryable=False)
                else:
                    task.item_done(str(i))

    sys.exit(job.execute(sync, body))


if __name__ == "__main__":
    main()

"""The job of ``fleet_job.py`` run by one plain process, as a user's ordinary program would run it.

``fleet_single.py JOB [standard flags]`` (``--store URL --resume``, ``--resume-run ID``, ...): the same job
name and config as the fleet, one task of a few pages through ``Job.execute``. The tests use it to show that a
single process refuses to resume a run whose tasks are leased to workers.
"""

from __future__ import annotations

import sys

import click

import syncpoint


@click.command(cls=syncpoint.Command)
@click.argument("job_name")
@syncpoint.click_options
def main(job_name: str, sync: syncpoint.RunOptions) -> None:
    job = syncpoint.Job.from_options(job_name, {"kind": "fleet"}, sync)

    def body(run: syncpoint.Run) -> None:
        with run.task("t0000") as task:
            for page in range(3):
                task.set_cursor({"page": page + 1}, pages=1, records=4)

    try:
        code = job.execute(sync, body)
    finally:
        job.close()
    sys.exit(code)


if __name__ == "__main__":
    main()

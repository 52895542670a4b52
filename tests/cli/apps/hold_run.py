"""Holds a run of a job open in another process: ``hold_run.py STORE_URL JOB``.

Commits some progress, prints ``run <run_id>`` and waits for a line on stdin before ending the run, so a
test can act while the run is live and synchronise through the pipes alone.
"""

from __future__ import annotations

import sys

import syncpoint


def main() -> None:
    url, name = sys.argv[1], sys.argv[2]
    job = syncpoint.Job(name, {"held": True}, store=url)
    with job.run(new_run=True) as run:
        task = run.task("pages")
        task.set_total(10)
        task.set_cursor({"page": 3}, pages=3, records=30)
        run.state.set("bookmark", 1)
        run.commit()
        sys.stdout.write(f"run {run.run_id}\n")
        sys.stdout.flush()
        sys.stdin.readline()
    job.close()
    sys.stdout.write("released\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()

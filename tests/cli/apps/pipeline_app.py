"""A pipeline of four small jobs for the ``--resume-all`` test: ``pipeline_app.py LOG [standard flags]``.

Each job processes ten items and appends what it did to LOG (``start JOB RUN resumed=BOOL`` and
``item JOB N``). On its first attempt, job ``j3`` prints ``j3 waiting`` after its fifth item and waits for
a line on stdin: the test sends SIGINT meanwhile, so j3 stops at its next safe point.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import click

import syncpoint
from syncpoint.pipeline import Pipeline

JOBS = ("j1", "j2", "j3", "j4")


def note(path: str, text: str) -> None:
    with open(path, "a", encoding="utf-8") as out:
        out.write(text + "\n")


def step(name: str, log_path: str) -> Callable[[syncpoint.RunOptions], int]:
    def body(run: syncpoint.Run) -> None:
        note(log_path, f"start {name} {run.run_id} resumed={run.resumed}")
        task = run.task("items")
        task.set_total(10)
        for i in task.iterate(range(10), key=str):
            note(log_path, f"item {name} {i}")
            task.item_done(str(i))
            if name == "j3" and i == 4 and not run.resumed:
                sys.stdout.write("j3 waiting\n")
                sys.stdout.flush()
                sys.stdin.readline()

    def run_job(options: syncpoint.RunOptions) -> int:
        job = syncpoint.Job.from_options(name, {"name": name}, options)
        try:
            return job.execute(options, body)
        finally:
            job.close()

    return run_job


@click.command(cls=syncpoint.Command)
@click.argument("log_path")
@click.option("--resume-all", is_flag=True)
@syncpoint.click_options
def main(log_path: str, resume_all: bool, sync: syncpoint.RunOptions) -> None:
    pipeline = Pipeline("sync-all", [(name, step(name, log_path)) for name in JOBS])
    code = pipeline.execute(sync, resume_all=resume_all)
    sys.stdout.write(f"exit {code}\n")
    sys.stdout.flush()
    sys.exit(code)


if __name__ == "__main__":
    main()

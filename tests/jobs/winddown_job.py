"""A program that uses ``with job.run()`` directly (no ``Job.execute``) and keeps working after the run ended
— closing its destination — so a test can signal it at each stage of its wind-down.

stdin gates each step: one line per page; after the run ended it prints ``CLOSING`` and waits for one more
line (its "destination close") before exiting with the run's exit code.
"""

from __future__ import annotations

import sys

import syncpoint


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def main() -> None:
    store = sys.argv[1]
    job = syncpoint.Job("winddown", store=store)
    with job.run(resume=True) as run:
        pages = run.task("t").page_cursor(first=0)
        say("READY")
        for page in range(pages.page, 1000):
            sys.stdin.readline()
            run.checkpoint()
            pages.done(page, records=1)
            say(f"PAGE {page}")
    say("CLOSING")
    sys.stdin.readline()  # closing the destination: a second signal must end the program here too
    say("CLOSED")
    raise SystemExit(run.exit_code)


if __name__ == "__main__":
    main()

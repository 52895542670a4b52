"""A sync that writes a JSON Lines file page by page through ``syncpoint.JsonlSink``, as a user would: a token
cursor whose extra field ``bytes`` is the file's committed length. Driven as a subprocess by
tests/crash/test_jsonl_sink.py, which kills it with ``kill -9`` and resumes it.

Source: ``--pages`` pages of ``--per-page`` records behind opaque tokens. It prints ``APPENDED n`` once page
``n`` is in the file (fsynced, not yet in the checkpoint) and ``RECORDED n`` once the cursor has moved past it
(the save policy commits every page). ``--hold N`` blocks after appending page N until stdin closes, so a
test can kill it exactly between the append and its commit.
"""

from __future__ import annotations

import sys

import click

import syncpoint


def token(page: int) -> str:
    return f"after-{page:04d}"


def records(page: int, per_page: int) -> list[dict[str, object]]:
    return [{"page": page, "n": n, "text": f"record {page}.{n} — ü"} for n in range(per_page)]


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


@click.command(cls=syncpoint.Command)
@click.option("--out", required=True)
@click.option("--pages", type=int, default=40)
@click.option("--per-page", type=int, default=25)
@click.option("--hold", type=int, default=None)
@syncpoint.click_options
def main(out: str, pages: int, per_page: int, hold: int | None, sync: syncpoint.RunOptions) -> None:
    job = syncpoint.Job.from_options("jsonl", {"pages": pages, "per_page": per_page}, sync)

    def body(run: syncpoint.Run) -> None:
        cursor = run.task("pages").token_cursor()
        with syncpoint.JsonlSink(out, cursor.extra.get("bytes", 0)) as sink:
            while not cursor.finished:
                page = 1 if cursor.token is None else int(cursor.token.split("-")[1]) + 1
                size = sink.append(records(page, per_page))
                say(f"APPENDED {page}")
                if page == hold:
                    sys.stdin.read()
                cursor.done(token(page) if page < pages else None, records=per_page, extra={"bytes": size})
                say(f"RECORDED {page}")

    raise SystemExit(job.execute(sync, body))


if __name__ == "__main__":
    main()

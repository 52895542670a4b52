"""A sync that makes HTTP requests with httpx to a local server, for the logging tests.

``http_job.py --requests N [standard flags]``: serves 127.0.0.1 on an ephemeral port in a thread, fetches
it N times inside the run, and logs INFO lines of its own (loggers ``__main__`` and ``http_job``) at the end.
"""

from __future__ import annotations

import logging
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import click
import httpx

import syncpoint

log = logging.getLogger(__name__)


class Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # the name http.server calls
        body = b"hello"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # the server's own access log: not the point
        pass


@click.command(cls=syncpoint.Command)
@click.option("--requests", type=int, default=5)
@syncpoint.click_options
def main(requests: int, sync: syncpoint.RunOptions) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    job = syncpoint.Job.from_options("http", {}, sync)

    def body(run: syncpoint.Run) -> None:
        with httpx.Client() as client, run.task("fetch") as task:
            for i in task.iterate(range(requests), key=str):
                client.get(url).raise_for_status()
                task.item_done(str(i))
        log.info("fetched %d pages", requests)
        logging.getLogger("http_job").info("named after the script")  # as many programs name their logger

    code = job.execute(sync, body)
    server.shutdown()
    sys.exit(code)


if __name__ == "__main__":
    main()

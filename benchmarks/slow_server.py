"""The benchmarks' slow API: a local HTTP server answering every request after ``DELAY`` seconds, in a process of
its own (so that its threads do not compete with the client's for the GIL)."""

from __future__ import annotations

import contextlib
import http.server
import multiprocessing
import socketserver
import time
from collections.abc import Iterator

DELAY = 0.05


class _Slow(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = 65536  # headers and body leave in one segment (no Nagle / delayed-ACK stall per answer)

    def do_GET(self) -> None:
        time.sleep(DELAY)
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def _serve(server: _Server) -> None:
    server.serve_forever()


@contextlib.contextmanager
def slow_server() -> Iterator[str]:
    """The server's base URL while the block runs."""
    server = _Server(("127.0.0.1", 0), _Slow)
    process = multiprocessing.get_context("fork").Process(target=_serve, args=(server,), daemon=True)
    process.start()
    server.server_close()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        process.terminate()
        process.join(10)

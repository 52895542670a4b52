"""A local JSON API with fault injection, to point your sync at in a test.

A sync that only ever met a healthy API has not been tested: real ones answer 503 during deploys, 429 with
``Retry-After`` when you are too fast, drop connections and stall. ``LocalServer`` serves your pages on
127.0.0.1 (port 0 picks a free one) from a background thread and fails the way real APIs fail, reproducibly
(``FaultPlan``), while counting what it served (``ServerStats``) so a test can bound what a resumed sync
fetched twice::

    from syncpoint.testing.server import FaultPlan, LocalServer

    pages = {"/orders?page=1": {"orders": [...]}, "/orders?page=2": {"orders": []}}
    with LocalServer(pages, faults=FaultPlan(error_rate=0.2, rate_limit_rate=0.1, seed=1)) as api:
        run_my_sync(base_url=api.url)
        assert api.stats.pages["/orders?page=1"] == 1

What it answers, in this order: ``routes`` — a mapping of path (optionally with its exact query) to a JSON
body or a ``Reply``, or one callable ``Request -> Reply`` — or, in a subclass, ``handle``. Before that, each
request draws its fault from the plan: a status (``503``, ``429`` with ``Retry-After``), ``"drop"`` (the
connection closes without an answer) or ``"slow"`` (the answer comes late). ``server.inject(503, "drop")``
scripts the next requests' faults while it runs. Stand-ins for whole APIs subclass it and override
``handle`` (and ``authorize``, ``control``, ``stats_key``): the example programs' servers in
``examples/servers/`` are built that way.

From the command line, ``python -m syncpoint.testing.server --routes routes.json --error-rate 0.1`` serves
a JSON file of path → body with the fault flags every stand-in has (``fault_arguments``).
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import threading
import traceback
from collections import Counter, deque
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, parse_qsl, urlsplit

__all__ = [
    "Fault",
    "FaultPlan",
    "LocalServer",
    "Reply",
    "Request",
    "Routes",
    "ServerStats",
    "error_reply",
    "fault_arguments",
    "fault_plan",
    "serve_until_signal",
]

Fault = str | int | None
"""An HTTP status (``503``, ``"429"``), ``"drop"`` (close without answering), ``"slow"``/``"slow:2.5"``,
or ``None``/``"ok"`` for a normal answer."""

_S = TypeVar("_S", bound="LocalServer")


@dataclass(frozen=True)
class Request:
    """What the client sent: ``query`` holds each parameter's first value, ``headers`` are lower-case."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]


@dataclass
class Reply:
    """An answer: ``body`` is sent as JSON (``bytes`` as they are), after ``delay`` seconds; ``drop`` closes
    the connection without answering."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False


def error_reply(status: int, message: str, headers: dict[str, str] | None = None) -> Reply:
    """``{"code": status, "message": message}``, the shape most JSON APIs give their errors."""
    return Reply(status, {"code": status, "message": message}, headers or {})


@dataclass
class FaultPlan:
    """Which requests fail and how, reproducibly: ``schedule`` first, one entry per request, then ``*_rate``.

    The n-th request past authentication draws from ``Random(f"{seed}:{n}")``, so the same seed gives the
    same faults at the same request numbers regardless of timing. 503s and 429s carry ``Retry-After:
    retry_after`` (seconds).
    """

    schedule: Sequence[Fault] = ()
    error_rate: float = 0.0
    rate_limit_rate: float = 0.0
    drop_rate: float = 0.0
    slow_rate: float = 0.0
    slow_seconds: float = 0.5
    error_status: int = 503
    retry_after: str = "1"
    seed: int = 0

    def __post_init__(self) -> None:
        self._queue: deque[Fault] = deque(self.schedule)

    def inject(self, *faults: Fault) -> None:
        """The next requests fail this way, in order (after any faults still scheduled)."""
        self._queue.extend(faults)

    def pick(self, n: int) -> Fault:
        """The fault of the n-th request."""
        if self._queue:
            return self._queue.popleft()
        roll = random.Random(f"{self.seed}:{n}").random()
        for fault, rate in (
            (self.error_status, self.error_rate),
            (429, self.rate_limit_rate),
            ("drop", self.drop_rate),
            ("slow", self.slow_rate),
        ):
            if roll < rate:
                return fault
            roll -= rate
        return None

    def reply(self, fault: Fault) -> Reply | None:
        """The reply a fault replaces the real one with; for "slow", a delay before the real one."""
        name = str(fault).lower()
        if fault is None or name == "ok":
            return None
        if name == "drop":
            return Reply(0, drop=True)
        if name.startswith("slow"):
            _, _, seconds = name.partition(":")
            return Reply(0, delay=float(seconds) if seconds else self.slow_seconds)
        status = int(name)
        headers = {"Retry-After": self.retry_after} if status in (429, 503) else {}
        return error_reply(status, f"injected fault {status}", headers)


@dataclass
class ServerStats:
    """What the server answered, so a test can bound re-fetches. The keys are ``stats_key``'s (the path, unless
    a stand-in says otherwise); ``pages`` counts answers from ``routes`` by the route that matched."""

    requests: Counter[Hashable] = field(default_factory=Counter)
    pages: Counter[Hashable] = field(default_factory=Counter)
    documents: Counter[Hashable] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    served: Counter[tuple[Hashable, str]] = field(default_factory=Counter, repr=False)
    errors: list[str] = field(default_factory=list)

    def page_served(self, key: Hashable, ids: Iterable[str]) -> None:
        """Count a page and the IDs on it (a stand-in calls this from ``handle``)."""
        ids = list(ids)
        self.pages[key] += 1
        self.documents[key] += len(ids)
        self.served.update((key, i) for i in ids)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() must not wait for a client's idle keep-alive connection

    def __init__(self, address: tuple[str, int], owner: LocalServer) -> None:
        self.owner = owner
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up is normal here (timeouts, dropped-connection tests); stay quiet."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as two writes: no 40 ms delayed-ACK stall
    timeout = 30
    server: _HTTPServer

    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        """Only the servers' ``/_control/…`` endpoints (changing a running stand-in by hand) take POST."""
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self._answer("POST")

    def _answer(self, method: str) -> None:
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        request = Request(method, parts.path, query, {k.lower(): v for k, v in self.headers.items()})
        reply = self.server.owner._serve(request)
        if reply.drop:
            self.close_connection = True
            return
        raw = isinstance(reply.body, bytes)  # e.g. a proxy's HTML error page
        body = reply.body if raw else json.dumps(reply.body, ensure_ascii=False).encode()
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if not any(name.lower() == "content-type" for name in reply.headers):
            self.send_header("Content-Type", "text/html" if raw else "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: test output is for test failures."""


Routes = Mapping[str, Any] | Callable[[Request], Reply]
"""Path → JSON body or ``Reply`` (a path with a query matches that exact query; a bare path, any query), or
one callable that answers every request."""


class LocalServer:
    """A JSON API on 127.0.0.1 in a background thread; port 0 picks a free port (``url`` says which).

    ``routes`` answers the requests (see ``Routes``); a stand-in for a whole API subclasses and overrides
    ``handle`` instead. Use it as a context manager, or ``start()``/``stop()``; after ``stop()`` it starts
    again on the same port, so URLs a sync saved stay valid across a "restart" of the API.
    """

    base_path = ""

    def __init__(
        self, routes: Routes | None = None, *, host: str = "127.0.0.1", port: int = 0,
        faults: FaultPlan | None = None,
    ) -> None:
        self.faults = faults or FaultPlan()
        self.stats = ServerStats()
        self.lock = threading.RLock()
        self._answer: Callable[[Request], Reply] | None = routes if callable(routes) else None
        self._routes: dict[tuple[str, frozenset[tuple[str, str]] | None], tuple[str, Any]] = {}
        if isinstance(routes, Mapping):
            for key, answer in routes.items():
                parts = urlsplit(key)
                query = frozenset(parse_qsl(parts.query, keep_blank_values=True)) if parts.query else None
                self._routes[(parts.path, query)] = (key, answer)
        self._address = (host, port)
        self._faulted = 0
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._address[1] == 0:
            raise RuntimeError("server not started yet: the port is chosen on start()")
        return self._address[1]

    @property
    def origin(self) -> str:
        return f"http://{self._address[0]}:{self.port}"

    @property
    def url(self) -> str:
        """Where to point the sync: the origin plus the API's ``base_path``."""
        return self.origin + self.base_path

    def start(self: _S) -> _S:
        """Serve in a background thread. After ``stop()``, starts again on the same port (saved URLs hold)."""
        self._stopping.clear()
        self._httpd = _HTTPServer(self._address, self)
        self._address = (self._address[0], int(self._httpd.server_address[1]))
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes slow replies: they end as dropped connections
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._httpd = self._thread = None

    def __enter__(self: _S) -> _S:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def inject(self, *faults: Fault) -> None:
        """Make the next requests fail this way, in order (after any faults still scheduled)."""
        with self.lock:
            self.faults.inject(*faults)

    def _serve(self, request: Request) -> Reply:
        """One request, as the HTTP thread hands it over: counted, authorized, faulted, then answered."""
        try:
            if request.method == "POST":  # never counted, authorized or faulted: the test's hand, not a client's
                with self.lock:
                    return self.control(request) or error_reply(404, f"no control endpoint {request.path}")
            with self.lock:
                self.stats.requests[self.stats_key(request)] += 1
                refused = self.authorize(request)
                if refused is not None:
                    return refused
                self._faulted += 1
                fault = self.faults.pick(self._faulted)
                faulted = self.faults.reply(fault)
                if faulted is not None:
                    self.stats.faults[str(fault)] += 1
                    if not faulted.delay:
                        return faulted
            if faulted is not None and self._stopping.wait(faulted.delay):
                return Reply(0, drop=True)
            with self.lock:
                reply = self.handle(request)
            if reply.delay and not reply.drop and self._stopping.wait(reply.delay):
                return Reply(0, drop=True)
            return reply
        except Exception:  # a bug in the fake must be visible, not a hang
            self.stats.errors.append(traceback.format_exc())
            return error_reply(500, "test server bug; see stats.errors")

    def stats_key(self, request: Request) -> Hashable:
        """The key ``stats.requests`` counts this request under: its path."""
        return request.path

    def control(self, request: Request) -> Reply | None:
        """A ``POST /_control/…`` request (see each stand-in); ``None``: no such control endpoint."""
        return None

    def authorize(self, request: Request) -> Reply | None:
        """The refusal (a 401, say) for a request without valid credentials; ``None`` lets it through."""
        return None

    def handle(self, request: Request) -> Reply:
        """The answer from ``routes``: the path with its exact query, else the bare path, else a 404."""
        if self._answer is not None:
            return self._answer(request)
        found = self._routes.get((request.path, frozenset(request.query.items()))) or self._routes.get(
            (request.path, None))
        if found is None:
            return error_reply(404, f"no route for {request.path}")
        key, answer = found
        reply = answer if isinstance(answer, Reply) else Reply(200, answer)
        if reply.status < 400:
            self.stats.pages[key] += 1
        return reply


def fault_arguments(parser: argparse.ArgumentParser) -> None:
    """The fault flags every stand-in server's command line has (``fault_plan`` turns them into a plan)."""
    parser.add_argument("--error-rate", type=float, default=0.0, help="fraction of requests answered 503")
    parser.add_argument("--drop-rate", type=float, default=0.0, help="fraction of connections dropped")
    parser.add_argument("--rate-limit-rate", type=float, default=0.0, help="fraction answered 429")
    parser.add_argument("--slow-rate", type=float, default=0.0, help="fraction answered after --slow-seconds")
    parser.add_argument("--slow-seconds", type=float, default=0.5, help="delay of a slow answer")
    parser.add_argument("--retry-after", default="1", help="Retry-After of the 503s and 429s (seconds)")


def fault_plan(args: argparse.Namespace) -> FaultPlan:
    """The plan ``fault_arguments``' flags ask for; ``args.seed`` seeds it (each command line has its own
    ``--seed``, which also seeds a stand-in's data)."""
    return FaultPlan(error_rate=args.error_rate, drop_rate=args.drop_rate, rate_limit_rate=args.rate_limit_rate,
                     slow_rate=args.slow_rate, slow_seconds=args.slow_seconds, retry_after=args.retry_after,
                     seed=args.seed)


def serve_until_signal(server: LocalServer, note: str = "") -> int:
    """Run in the foreground until SIGINT/SIGTERM, after printing ``serving on URL NOTE``; the exit code (0)."""
    done = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: done.set())  # the handler only sets a flag
    with server:
        print(f"serving on {server.url} {note}".rstrip(), flush=True)
        while not done.wait(0.5):
            pass
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m syncpoint.testing.server",
                                     description="Serve a JSON file of path -> body on 127.0.0.1, with faults.")
    parser.add_argument("--routes", required=True, type=Path, metavar="FILE",
                        help='a JSON object: {"/orders?page=1": {...}, "/orders": {...}, ...}')
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the faults")
    fault_arguments(parser)
    args = parser.parse_args(argv)
    try:
        routes = json.loads(args.routes.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        parser.error(f"cannot read --routes {args.routes}: {exc}")
    if not isinstance(routes, dict):
        parser.error(f"--routes {args.routes} must hold a JSON object of path -> body")
    return serve_until_signal(LocalServer(routes, host=args.host, port=args.port, faults=fault_plan(args)))


if __name__ == "__main__":
    raise SystemExit(main())

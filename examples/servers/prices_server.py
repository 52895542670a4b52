"""A local stock-price API for the daily batch sync: a symbol listing and one price per symbol and day.

    GET /symbols                        {"symbols": ["AAA", "AAB", ...]}   (tests may list new ones any time)
    GET /prices/{symbol}?date=D         {"symbol", "date", "close", "volume"}; 404 for an unknown or
                                        delisted symbol; ``fail(symbol, 500)`` makes one symbol fail

Prices are a pure function of (seed, symbol, date), so a test knows what every stored row must hold.
Faults (``FaultPlan``) and served counts (``ServerStats``; ``documents["prices"]`` counts prices served,
``served[("prices", symbol)]`` per symbol) come from ``syncpoint.testing.server``. Run
``python examples/servers/prices_server.py --port 8083 --count 1200 --fail AAAC:404 --fail AAAD:500`` and point
``examples/daily_stock_sync.py --base-url http://127.0.0.1:8083`` at it; ``POST /_control/list?count=N``
lists N new symbols while it runs (``curl -X POST …``).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import string
from collections.abc import Hashable, Iterable, Sequence
from datetime import date
from typing import Any

from syncpoint.testing.server import (
    FaultPlan,
    LocalServer,
    Reply,
    Request,
    error_reply,
    fault_arguments,
    fault_plan,
    serve_until_signal,
)


def symbol_names(count: int, start: int = 0) -> list[str]:
    """``AAAA``, ``AAAB``, … — distinct four-letter tickers."""
    letters = string.ascii_uppercase
    names = ("".join(p) for p in itertools.product(letters, repeat=4))
    return list(itertools.islice(names, start, start + count))


class PricesServer(LocalServer):
    """``count`` listed symbols; ``fail(symbol, status)`` makes one symbol's price answer ``status``."""

    def __init__(
        self,
        count: int = 100,
        *,
        seed: int = 0,
        faults: FaultPlan | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host=host, port=port, faults=faults)
        self.seed = seed
        self.symbols: list[str] = symbol_names(count)
        self.failing: dict[str, int] = {}

    # --- what tests read and change ---

    def price(self, symbol: str, day: str) -> dict[str, Any]:
        digest = hashlib.sha256(f"{self.seed}:{symbol}:{day}".encode()).digest()
        cents = 100 + int.from_bytes(digest[:4], "big") % 100_000
        return {"symbol": symbol, "date": day, "close": cents / 100, "volume": int.from_bytes(digest[4:7], "big")}

    def list_symbols(self, symbols: Iterable[str]) -> None:
        """Add newly listed symbols (at the front of the listing: nothing may be resumed by position)."""
        with self.lock:
            new = [s for s in symbols if s not in self.symbols]
            self.symbols[:0] = new

    def fail(self, symbol: str, status: int | None) -> None:
        """Answer ``symbol``'s price with ``status`` from now on (``None``: answer normally again)."""
        with self.lock:
            if status is None:
                self.failing.pop(symbol, None)
            else:
                self.failing[symbol] = status

    # --- the protocol ---

    def stats_key(self, request: Request) -> Hashable:
        return "prices" if request.path.startswith("/prices/") else request.path

    def control(self, request: Request) -> Reply | None:
        """``POST /_control/list?count=N``: list N new symbols (at the front), for trying it by hand."""
        if request.path != "/_control/list":
            return None
        count = int(request.query.get("count", "1"))
        known = set(self.symbols)
        fresh = [s for s in symbol_names(len(known) + count, 0) if s not in known][:count]
        self.list_symbols(fresh)
        return Reply(200, {"listed": fresh})

    def handle(self, request: Request) -> Reply:
        if request.path == "/symbols":
            return Reply(200, {"symbols": list(self.symbols)})
        if not request.path.startswith("/prices/"):
            return error_reply(404, f"no such path {request.path}")
        symbol = request.path[len("/prices/") :]
        day = request.query.get("date", "")
        try:
            date.fromisoformat(day)
        except ValueError:
            return error_reply(400, f"date must be YYYY-MM-DD, got {day!r}")
        if symbol not in self.symbols:
            return error_reply(404, f"unknown symbol {symbol}")
        if symbol in self.failing:
            status = self.failing[symbol]
            return error_reply(status, f"no price for {symbol} ({status})")
        self.stats.page_served("prices", [symbol])
        return Reply(200, self.price(symbol, day))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A local stock-price API for trying the daily stock sync offline.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    parser.add_argument("--count", type=int, default=100, help="listed symbols")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fail", action="append", default=[], metavar="SYMBOL:STATUS",
                        help="answer SYMBOL's price with STATUS, e.g. AAAC:404 (repeatable)")
    fault_arguments(parser)
    args = parser.parse_args(argv)
    server = PricesServer(args.count, seed=args.seed, faults=fault_plan(args), host=args.host, port=args.port)
    for value in args.fail:
        symbol, _, status = value.partition(":")
        if not status.isdigit():
            parser.error(f"--fail: expected SYMBOL:STATUS, got {value!r}")
        server.fail(symbol, int(status))
    return serve_until_signal(server, f"({len(server.symbols)} symbols, {server.symbols[0]}…)")


if __name__ == "__main__":
    raise SystemExit(main())

"""Testing your own sync with syncpoint.testing: a local API that fails like real ones, and kill -9 in a loop.

The sync under test is orders_sync.py, next to this file. docs/TESTING.md shows both files as they are.
"""

import sqlite3
import sys
from contextlib import closing
from pathlib import Path

from syncpoint.testing.crashloop import crash_loop
from syncpoint.testing.server import FaultPlan, LocalServer

SYNC = Path(__file__).with_name("orders_sync.py")
DAY, PAGES, PER_PAGE = "2026-11-30", 40, 10
ORDERS = [{"id": f"order-{n:04d}", "total": n * 3} for n in range(PAGES * PER_PAGE)]


def test_nothing_lost_and_nothing_twice_through_five_kill_9s(tmp_path: Path) -> None:
    # The API: /orders?day=…&page=N, an empty page after the last. It answers 503s, 429s with Retry-After,
    # drops connections and is slow, reproducibly (the seed), and counts the pages it served.
    routes = {f"/orders?day={DAY}&page={n + 1}": {"orders": ORDERS[n * PER_PAGE:(n + 1) * PER_PAGE]}
              for n in range(PAGES)}
    routes[f"/orders?day={DAY}&page={PAGES + 1}"] = {"orders": []}
    faults = FaultPlan(error_rate=0.1, rate_limit_rate=0.1, drop_rate=0.05, slow_rate=0.75, slow_seconds=0.05,
                       retry_after="0", seed=7)
    db = tmp_path / "orders.db"
    command = [sys.executable, str(SYNC), "--db", str(db), "--day", DAY, "--retry-wait", "0.01",
               "--store", f"sqlite:{tmp_path / 'checkpoints.db'}", "--no-progress"]

    with LocalServer(routes, faults=faults) as api:
        # kill -9 five times, at random moments and where the sync marked crash_point("page-written");
        # every attempt after the first gets --resume; the last one runs to the end
        report = crash_loop([*command, "--api", api.url], resume=["--resume"], kills=5, points=["page-written"],
                            delay=(0.5, 1.5), seed=1)

    assert report.completed and report.kills == 5, report.summary()
    with closing(sqlite3.connect(db)) as conn:
        writes = dict(conn.execute("SELECT id, writes FROM orders").fetchall())
    assert sorted(writes) == [order["id"] for order in ORDERS]  # nothing lost, nothing extra
    assert sum(writes.values()) - len(writes) <= report.kills * PER_PAGE  # rewritten: a page per kill at most
    assert sum(api.stats.pages.values()) <= len(routes) + report.kills  # fetched again: a page per kill at most
    assert api.stats.faults["503"] and api.stats.faults["429"] and api.stats.faults["drop"]  # and it was hard

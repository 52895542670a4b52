"""``syncpoint.testing.server``: the local API a user points a sync at in a test — their pages, the faults
they script, the counts they assert on, and its command line."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from syncpoint.http import HttpClient, RetryPolicy
from syncpoint.testing.server import FaultPlan, LocalServer, Reply, Request, error_reply


def test_routes_answer_by_exact_query_then_by_path_and_count_the_pages_served() -> None:
    routes = {
        "/items?page=1": {"items": [1, 2]},
        "/items?page=2&size=2": {"items": [3]},
        "/items": {"items": []},  # any other query
        "/gone": error_reply(410, "gone"),
    }
    with LocalServer(routes) as api, httpx.Client(base_url=api.url, timeout=5) as http:
        assert http.get("/items", params={"page": 1}).json() == {"items": [1, 2]}
        assert http.get("/items", params={"size": 2, "page": 2}).json() == {"items": [3]}  # order does not matter
        assert http.get("/items", params={"page": 2}).json() == {"items": []}
        assert http.get("/items", params={"page": 1}).json() == {"items": [1, 2]}
        gone = http.get("/gone")
        assert (gone.status_code, gone.json()["message"]) == (410, "gone")
        assert http.get("/nowhere").status_code == 404
    assert api.stats.pages == {"/items?page=1": 2, "/items?page=2&size=2": 1, "/items": 1}
    assert api.stats.requests["/items"] == 4 and api.stats.requests["/nowhere"] == 1


def test_a_callable_answers_every_request() -> None:
    def answer(request: Request) -> Reply:
        return Reply(200, {"path": request.path, "query": dict(request.query), "auth": request.headers.get("x-key")})

    with LocalServer(answer) as api:
        body = httpx.get(f"{api.url}/a/b", params={"q": "1"}, headers={"X-Key": "k"}, timeout=5).json()
    assert body == {"path": "/a/b", "query": {"q": "1"}, "auth": "k"}


def test_scripted_faults_come_in_order_and_a_client_gets_through_them() -> None:
    """503 and 429 with Retry-After (honoured by syncpoint.http's client), a dropped connection, a slow answer."""
    waits: list[float] = []
    with LocalServer({"/x": {"ok": True}}, faults=FaultPlan(retry_after="2")) as api:
        api.inject(503, 429, "drop", "slow:0.3")
        retry = RetryPolicy(initial_wait=0.01, jitter=0)
        with HttpClient(api.url, retry=retry, sleep=waits.append) as client:
            started = time.monotonic()
            assert client.get_json("/x") == {"ok": True}
            took = time.monotonic() - started
    assert waits == [2.0, 2.0, 0.04]  # the 503's and the 429's Retry-After, then the third backoff (0.01 * 2**2)
    assert took >= 0.3  # the fifth request's answer came late
    assert api.stats.faults == {"503": 1, "429": 1, "drop": 1, "slow:0.3": 1}
    assert api.stats.requests["/x"] == 4 and api.stats.pages["/x"] == 1


def test_fault_rates_are_the_same_for_the_same_seed() -> None:
    def statuses(seed: int) -> list[int]:
        plan = FaultPlan(error_rate=0.3, rate_limit_rate=0.2, seed=seed)
        with LocalServer({"/x": {}}, faults=plan) as api, httpx.Client(timeout=5) as http:
            return [http.get(f"{api.url}/x").status_code for _ in range(30)]

    first = statuses(4)
    assert first == statuses(4) and first != statuses(5)
    assert {200, 429, 503} == set(first)


def test_a_reply_delay_is_honoured_and_stop_does_not_wait_for_it() -> None:
    api = LocalServer({"/slow": Reply(200, {"ok": True}, delay=30), "/quick": Reply(200, {}, delay=0.2)}).start()
    started = time.monotonic()
    assert httpx.get(f"{api.url}/quick", timeout=5).status_code == 200
    assert time.monotonic() - started >= 0.2
    outcome: list[BaseException] = []

    def get_slow() -> None:
        try:
            httpx.get(f"{api.url}/slow", timeout=10)
        except httpx.HTTPError as exc:
            outcome.append(exc)

    waiting = threading.Thread(target=get_slow)
    waiting.start()
    time.sleep(0.2)
    started = time.monotonic()
    api.stop()
    waiting.join(10)
    assert time.monotonic() - started < 3 and not waiting.is_alive()
    assert len(outcome) == 1  # the slow answer never came: the connection was dropped


def test_a_restarted_server_keeps_its_port() -> None:
    api = LocalServer({"/x": {"n": 1}}).start()
    url = api.url
    api.stop()
    with api:
        assert api.url == url and httpx.get(f"{url}/x", timeout=5).json() == {"n": 1}


def test_the_command_line_serves_a_routes_file_with_faults(tmp_path: Path) -> None:
    routes = tmp_path / "routes.json"
    routes.write_text(json.dumps({"/orders?page=1": {"orders": ["a"]}, "/orders?page=2": {"orders": []}}))
    proc = subprocess.Popen([sys.executable, "-m", "syncpoint.testing.server", "--routes", str(routes), "--port", "0",
                             "--error-rate", "0.5", "--retry-after", "0"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        found = re.match(r"serving on (\S+)$", line.strip())
        assert found, line
        statuses = [httpx.get(f"{found.group(1)}/orders", params={"page": 1}, timeout=5).status_code
                    for _ in range(20)]
        assert set(statuses) == {200, 503}
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0


def test_the_command_line_says_in_one_line_what_is_wrong_with_the_routes_file(tmp_path: Path) -> None:
    routes = tmp_path / "routes.json"
    routes.write_text("[1, 2]")
    proc = subprocess.run([sys.executable, "-m", "syncpoint.testing.server", "--routes", str(routes)],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1].endswith("must hold a JSON object of path -> body")

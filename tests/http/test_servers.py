"""The examples' DIP and GitHub stand-ins (``examples/servers/``) behave like the real APIs in the ways a
resumable sync depends on."""

from __future__ import annotations

import itertools
import math
import os
import selectors
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from dip_server import DipServer, decode_cursor, encode_cursor
from github_server import GitHubServer

from syncpoint.testing.server import FaultPlan

SERVERS = Path(__file__).resolve().parents[2] / "examples" / "servers"
DIP_AUTH = {"Authorization": "ApiKey dip-test-key"}
GH_AUTH = {"Authorization": "Bearer ghp-test-token"}


def instant(value: str) -> datetime:
    return datetime.fromisoformat(value)


def sort_key(doc: dict[str, Any]) -> tuple[float, int]:
    return (-instant(doc["aktualisiert"]).timestamp(), -int(doc["id"]))


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5) as client:
        yield client


def dip_pages(http: httpx.Client, server: DipServer, endpoint: str, **params: str) -> list[dict[str, Any]]:
    """Raw cursor paging, bounded; returns the response bodies including the final empty one."""
    bodies: list[dict[str, Any]] = []
    query = {"format": "json", **{k.replace("_", "."): v for k, v in params.items()}}
    for _ in range(1000):
        response = http.get(f"{server.url}/{endpoint}", params=query, headers=DIP_AUTH)
        assert response.status_code == 200, response.text
        body = response.json()
        bodies.append(body)
        if not body["documents"] or body["cursor"] == query.get("cursor"):
            return bodies
        query["cursor"] = body["cursor"]
    raise AssertionError("paging did not end")


# --- DIP --------------------------------------------------------------------------------------------------


def test_dip_serves_newest_first_with_id_tiebreak_and_runs_split_by_pages(http: httpx.Client) -> None:
    with DipServer({"vorgang": 3000}, seed=7) as server:
        bodies = dip_pages(http, server, "vorgang")
    docs = [d for b in bodies for d in b["documents"]]
    assert [len(b["documents"]) for b in bodies] == [100] * 30 + [0]
    assert {b["numFound"] for b in bodies} == {3000}
    assert len({d["id"] for d in docs}) == 3000 and all(d["id"].isdigit() for d in docs)
    keys = [sort_key(d) for d in docs]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)  # strictly newest first, ties by id desc
    runs = Counter(d["aktualisiert"] for d in docs)
    assert 41 <= max(runs.values()) <= 250 and min(runs.values()) == 1
    edges = [
        (b["documents"][-1]["aktualisiert"], n["documents"][0]["aktualisiert"])
        for b, n in itertools.pairwise(bodies[:-1])
    ]
    split = [last for last, first in edges if last == first]
    assert len(split) >= 5  # many page boundaries fall inside a run of equal timestamps
    offsets = {d["aktualisiert"][-6:] for d in docs}
    assert offsets == {"+01:00", "+02:00"}  # spans a DST switch
    for doc in docs[:50]:
        assert set(doc) >= {"id", "aktualisiert", "datum", "titel", "typ"}
        assert doc["datum"] <= doc["aktualisiert"][:10]


def test_dip_data_is_deterministic_per_seed() -> None:
    a = DipServer({"drucksache": 400}, seed=1).documents("drucksache")
    b = DipServer({"drucksache": 400}, seed=1).documents("drucksache")
    c = DipServer({"drucksache": 400}, seed=2).documents("drucksache")
    assert a == b and a != c
    assert DipServer(3).documents("person") != DipServer(3).documents("aktivitaet")


def test_dip_cursor_ends_by_repeating_itself(http: httpx.Client) -> None:
    with DipServer({"person": 250}) as server:
        bodies = dip_pages(http, server, "person")
        assert [len(b["documents"]) for b in bodies] == [100, 100, 50, 0]
        assert bodies[-1]["cursor"] == bodies[-2]["cursor"]
        assert len({b["cursor"] for b in bodies[:-1]}) == 3
        assert server.stats.pages["person"] == 4 and server.stats.documents["person"] == 250


def test_dip_cursor_is_stateless_and_survives_a_restart(http: httpx.Client) -> None:
    with DipServer({"drucksache": 500}, seed=4) as first:
        page1 = dip_pages(http, first, "drucksache")[0]
    epoch, doc_id = decode_cursor(page1["cursor"])
    last = page1["documents"][-1]
    assert (epoch, str(doc_id)) == (instant(last["aktualisiert"]).timestamp(), last["id"])
    with DipServer({"drucksache": 500}, seed=4) as second:
        response = http.get(f"{second.url}/drucksache", params={"cursor": page1["cursor"]}, headers=DIP_AUTH)
        expected = second.documents("drucksache")[100:200]
    assert response.json()["documents"] == expected


def test_dip_filters_are_inclusive_and_accept_dates_and_datetimes(http: httpx.Client) -> None:
    with DipServer({"drucksache": 2000}, seed=9) as server:
        docs = server.documents("drucksache")
        run_value = Counter(d["aktualisiert"] for d in docs).most_common(1)[0][0]
        exact = dip_pages(http, server, "drucksache", f_aktualisiert_start=run_value, f_aktualisiert_end=run_value)
        in_utc = datetime.fromisoformat(run_value).astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
        same = dip_pages(http, server, "drucksache", f_aktualisiert_start=in_utc, f_aktualisiert_end=in_utc)
        day = docs[500]["aktualisiert"][:10]
        by_day = dip_pages(http, server, "drucksache", f_aktualisiert_start=day, f_aktualisiert_end=day)
        until = dip_pages(http, server, "drucksache", f_aktualisiert_end=day)
        datum = dip_pages(http, server, "drucksache", f_datum_start="2024-03-01", f_datum_end="2024-03-10")
    got = [d["id"] for b in exact for d in b["documents"]]
    assert got == [d["id"] for d in docs if d["aktualisiert"] == run_value] and len(got) > 1
    assert [d["id"] for b in same for d in b["documents"]] == got
    assert [d["id"] for b in by_day for d in b["documents"]] == [d["id"] for d in docs if d["aktualisiert"][:10] == day]
    assert [d["id"] for b in until for d in b["documents"]] == [d["id"] for d in docs if d["aktualisiert"][:10] <= day]
    assert by_day[0]["numFound"] == sum(len(b["documents"]) for b in by_day)
    want = [d["id"] for d in docs if "2024-03-01" <= d["datum"] <= "2024-03-10"]
    assert [d["id"] for b in datum for d in b["documents"]] == want and want


def test_dip_auth_and_bad_requests(http: httpx.Client) -> None:
    with DipServer({"person": 10}) as server:
        url = f"{server.url}/person"
        assert http.get(url).status_code == 401
        assert http.get(url, headers={"Authorization": "ApiKey nope"}).status_code == 401
        assert http.get(url, params={"apikey": "dip-test-key"}).status_code == 200
        assert http.get(url, params={"cursor": "%%%"}, headers=DIP_AUTH).status_code == 400
        assert http.get(url, params={"f.aktualisiert.start": "2024-13-45"}, headers=DIP_AUTH).status_code == 400
        assert http.get(url, params={"format": "xml"}, headers=DIP_AUTH).status_code == 400
        assert http.get(f"{server.url}/nope", headers=DIP_AUTH).status_code == 404
        doc = server.documents("person")[3]
        assert http.get(f"{url}/{doc['id']}", headers=DIP_AUTH).json() == doc
        assert server.stats.requests["person"] == 7


def test_dip_fault_schedule_is_served_in_order(http: httpx.Client) -> None:
    faults = FaultPlan(schedule=[503, 429, "drop", "slow:0.05", None], retry_after="2")
    with DipServer({"person": 10}, faults=faults) as server:
        url = f"{server.url}/person"
        outcomes: list[Any] = []
        for _ in range(6):
            try:
                response = http.get(url, headers=DIP_AUTH)
                outcomes.append((response.status_code, response.headers.get("retry-after")))
            except httpx.RemoteProtocolError:
                outcomes.append("dropped")
        assert outcomes == [(503, "2"), (429, "2"), "dropped", (200, None), (200, None), (200, None)]
        assert server.stats.faults == {"503": 1, "429": 1, "drop": 1, "slow:0.05": 1}
        assert server.stats.requests["person"] == 6 and server.stats.pages["person"] == 3


def test_dip_fault_rates_are_deterministic_from_the_seed(http: httpx.Client) -> None:
    def outcomes(seed: int) -> list[str]:
        plan = FaultPlan(error_rate=0.2, rate_limit_rate=0.1, drop_rate=0.1, seed=seed)
        result = []
        with DipServer({"person": 5}, faults=plan) as server:
            for _ in range(40):
                try:
                    result.append(str(http.get(f"{server.url}/person", headers=DIP_AUTH).status_code))
                except httpx.RemoteProtocolError:
                    result.append("drop")
        return result

    first = outcomes(1)
    assert first == outcomes(1) and first != outcomes(2)
    assert {"200", "503", "429", "drop"} <= set(first)


def test_dip_documents_can_change_while_running(http: httpx.Client) -> None:
    with DipServer({"drucksache": 300}, seed=2) as server:
        before = server.documents("drucksache")
        newest = before[0]["aktualisiert"]
        touched = server.touch("drucksache", before[150]["id"])
        added = server.add("drucksache", 3)
        server.delete("drucksache", before[10]["id"])
        bodies = dip_pages(http, server, "drucksache", f_aktualisiert_start=newest)
    fresh = [d for b in bodies for d in b["documents"]]
    assert len({d["aktualisiert"] for d in added}) == 1  # added together: one run of equal timestamps
    assert [d["id"] for d in fresh[:4]] == [*sorted((d["id"] for d in added), key=int, reverse=True), touched["id"]]
    assert instant(newest) < instant(touched["aktualisiert"]) < instant(added[0]["aktualisiert"])
    assert fresh[4]["aktualisiert"] == newest and fresh[4]["titel"] == before[0]["titel"]
    assert [sort_key(d) for d in fresh] == sorted(sort_key(d) for d in fresh)
    assert bodies[0]["numFound"] == len(fresh)
    after = server.documents("drucksache")
    assert len(after) == 302 and before[10]["id"] not in {d["id"] for d in after}


def test_dip_counts_served_documents(http: httpx.Client) -> None:
    with DipServer({"person": 120}) as server:
        bodies = dip_pages(http, server, "person")
        http.get(f"{server.url}/person", params={"cursor": bodies[0]["cursor"]}, headers=DIP_AUTH)
    stats = server.stats
    assert stats.pages["person"] == 3 + 1 and stats.documents["person"] == 120 + 20
    assert max(stats.served.values()) == 2 and sum(n == 2 for n in stats.served.values()) == 20
    assert stats.errors == []


def test_dip_cursor_codec_round_trips() -> None:
    assert decode_cursor(encode_cursor(1712304000.0, 4711)) == (1712304000.0, 4711)


def test_dip_server_runs_as_a_script() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, str(SERVERS / "dip_server.py"), "--port", "0", "--count", "30"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) as proc:
        try:
            assert proc.stdout is not None
            with selectors.DefaultSelector() as selector:
                selector.register(proc.stdout, selectors.EVENT_READ)
                assert selector.select(timeout=20), "server printed nothing within 20 s"
            line = proc.stdout.readline()
            url = line.split()[2]
            response = httpx.get(f"{url}/plenarprotokoll", headers=DIP_AUTH, timeout=5)
            assert response.json()["numFound"] == 30
        finally:
            proc.terminate()
            assert proc.wait(timeout=20) == 0


# --- GitHub -----------------------------------------------------------------------------------------------


def test_github_link_header_paging(http: httpx.Client) -> None:
    with GitHubServer("acme", [237]) as server:
        url = f"{server.url}/repos/acme/repo-00/issues"
        first = http.get(url, params={"state": "all", "per_page": 50}, headers=GH_AUTH)
        links = {rel: link["url"] for rel, link in first.links.items()}
        assert set(links) == {"next", "last"}
        assert links["next"].endswith("page=2") and "per_page=50" in links["next"] and links["last"].endswith("page=5")
        middle = http.get(links["next"], headers=GH_AUTH)
        assert set(middle.links) == {"prev", "first", "next", "last"}
        last = http.get(links["last"], headers=GH_AUTH)
        assert set(last.links) == {"prev", "first"} and len(last.json()) == 37
        capped = http.get(url, params={"state": "all", "per_page": 500}, headers=GH_AUTH)
        assert len(capped.json()) == 100
        default = http.get(url, headers=GH_AUTH).json()
        assert len(default) == 30 and {i["state"] for i in default} == {"open"}
        assert server.stats.pages[("acme/repo-00", "issues")] == 5


def test_github_items_issues_include_pulls_and_since_filters(http: httpx.Client) -> None:
    with GitHubServer("acme", [180], seed=5) as server:
        url = f"{server.url}/repos/acme/repo-00"
        pulls = http.get(f"{url}/pulls", params={"state": "all", "per_page": 100}, headers=GH_AUTH).json()
        issues = http.get(f"{url}/issues", params={"state": "all", "per_page": 100}, headers=GH_AUTH).json()
        since = "2025-03-01T00:00:00Z"
        recent = http.get(f"{url}/issues", params={"state": "all", "since": since, "per_page": 100}, headers=GH_AUTH)
    assert [i["number"] for i in issues] == list(range(180, 80, -1))  # newest created first
    assert all(set(i) >= {"id", "number", "created_at", "updated_at", "title"} for i in issues + pulls)
    assert all(i["updated_at"] >= i["created_at"] for i in issues)
    pull_numbers = {p["number"] for p in pulls}
    assert pull_numbers <= {i["number"] for i in server.items["acme/repo-00"] if "pull_request" in i}
    assert {i["number"] for i in issues if "pull_request" in i} <= pull_numbers | set(range(1, 81))
    assert not {p["id"] for p in pulls} & {i["id"] for i in issues}  # a pull's id differs from its issue's
    assert all(i["updated_at"] >= since for i in recent.json()) and recent.json()


def test_github_data_is_deterministic_with_varied_sizes() -> None:
    a, b = GitHubServer(repos=8, seed=3), GitHubServer(repos=8, seed=3)
    sizes = [len(a.items[r["full_name"]]) for r in a.repos]
    assert sizes == [len(b.items[r["full_name"]]) for r in b.repos] and a.items == b.items
    assert max(sizes) > 100 and max(sizes) <= 400
    assert sizes != [len(v) for v in GitHubServer(repos=8, seed=4).items.values()]


def test_github_auth(http: httpx.Client) -> None:
    with GitHubServer() as server:
        url = f"{server.url}/orgs/acme/repos"
        assert http.get(url).json()["message"] == "Requires authentication"
        assert http.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert http.get(url, headers={"Authorization": "token ghp-test-token"}).status_code == 200
        assert http.get(f"{server.url}/orgs/other/repos", headers=GH_AUTH).status_code == 404
        assert http.get(f"{server.url}/repos/acme/nope/pulls", headers=GH_AUTH).status_code == 404


def test_github_rate_limit_403_until_reset(http: httpx.Client) -> None:
    now = [1_700_000_000.5]
    with GitHubServer("acme", [5], rate_limit=3, reset_after=10, clock=lambda: now[0]) as server:
        url = f"{server.url}/repos/acme/repo-00/pulls"
        remaining = [http.get(url, headers=GH_AUTH).headers["x-ratelimit-remaining"] for _ in range(3)]
        assert remaining == ["2", "1", "0"]
        limited = http.get(url, headers=GH_AUTH)
        assert limited.status_code == 403 and "rate limit" in limited.json()["message"]
        assert limited.headers["x-ratelimit-remaining"] == "0"
        assert limited.headers["x-ratelimit-reset"] == str(math.ceil(now[0] + 10))
        now[0] += 9.9
        assert http.get(url, headers=GH_AUTH).status_code == 403
        now[0] += 0.1
        assert http.get(url, headers=GH_AUTH).status_code == 200
        assert server.stats.faults["rate-limit"] == 2
        assert server.stats.pages[("acme/repo-00", "pulls")] == 4


@pytest.mark.parametrize(("blocked", "issues", "pulls"), [(("issues", 410), 410, 200), (("*", 451), 451, 451)])
def test_github_blocked_repos(http: httpx.Client, blocked: tuple[str, int], issues: int, pulls: int) -> None:
    with GitHubServer("acme", [5, 5], blocked={("acme/repo-01", blocked[0]): blocked[1]}) as server:
        base = f"{server.url}/repos/acme"
        assert http.get(f"{base}/repo-01/issues", headers=GH_AUTH).status_code == issues
        assert http.get(f"{base}/repo-01/pulls", headers=GH_AUTH).status_code == pulls
        assert http.get(f"{base}/repo-00/issues", headers=GH_AUTH).status_code == 200


def test_github_faults_and_counts(http: httpx.Client) -> None:
    with GitHubServer("acme", [5], faults=FaultPlan(schedule=[502, "drop"])) as server:
        url = f"{server.url}/repos/acme/repo-00/issues"
        assert http.get(url, headers=GH_AUTH).status_code == 502
        with pytest.raises(httpx.RemoteProtocolError):
            http.get(url, headers=GH_AUTH)
        assert http.get(url, params={"state": "all"}, headers=GH_AUTH).status_code == 200
        assert server.stats.requests[("acme/repo-00", "issues")] == 3
        assert server.stats.pages[("acme/repo-00", "issues")] == 1
        assert server.stats.documents[("acme/repo-00", "issues")] == 5


def test_servers_stop_promptly_with_an_idle_keep_alive_connection(http: httpx.Client) -> None:
    server = DipServer({"person": 5}).start()
    http.get(f"{server.url}/person", headers=DIP_AUTH)  # leaves a pooled connection open
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 2
    server.start()  # same port again: saved absolute URLs stay valid
    assert http.get(f"{server.url}/person", headers=DIP_AUTH).status_code == 200
    server.stop()

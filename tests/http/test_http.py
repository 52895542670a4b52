"""syncpoint.http against the local DIP and GitHub servers: retries, waits, errors, pagination, resume."""

from __future__ import annotations

import email.utils
import logging
import math
import random
import socket
from collections import deque
from collections.abc import Iterator
from typing import Any

import pytest
from dip_server import DipServer
from github_server import GitHubServer

from syncpoint.errors import EXIT_FAILED, SyncpointError
from syncpoint.http import (
    HttpClient,
    HttpError,
    PermanentHttpError,
    RateLimited,
    RetryableHttpError,
    RetryPolicy,
    paginate_cursor,
    paginate_link,
    paginate_odata,
    paginate_page_number,
    redact_url,
)
from syncpoint.testing.server import FaultPlan, LocalServer, Reply, Request

DIP_KEY = "dip-test-key"
GH_TOKEN = "ghp-test-token"
T0 = 1_700_000_000.0


class FakeTime:
    """Stands in for time.sleep/monotonic/time: sleeping records the wait and moves the clock."""

    def __init__(self, start: float = T0) -> None:
        self.now = start
        self.waits: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert 0 <= seconds < 10_000, seconds
        self.waits.append(seconds)
        self.now += seconds


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime()


def make_client(url: str, fake: FakeTime, headers: dict[str, str] | None = None, **policy: Any) -> HttpClient:
    settings: dict[str, Any] = {
        "initial_wait": 1.0,
        "multiplier": 2.0,
        "max_wait": 8.0,
        "jitter": 0.0,
        "give_up_after": 120.0,
        "max_attempts": 10,
    }
    timeout = policy.pop("timeout", 5.0)
    return HttpClient(
        url,
        headers=headers,
        timeout=timeout,
        retry=RetryPolicy(**{**settings, **policy}),
        sleep=fake.sleep,
        clock=fake.time,
        now=fake.time,
    )


DIP_PAGE: dict[str, Any] = {"items": lambda d: d["documents"], "next_cursor": lambda d: d.get("cursor")}
"""DIP's page shape, ``{"numFound", "cursor", "documents"}``, for ``paginate_cursor``."""


def dip_client(server: DipServer, fake: FakeTime, **policy: Any) -> HttpClient:
    return make_client(server.url, fake, {"Authorization": f"ApiKey {DIP_KEY}"}, **policy)


def gh_client(server: GitHubServer, fake: FakeTime, **policy: Any) -> HttpClient:
    return make_client(server.url, fake, {"Authorization": f"Bearer {GH_TOKEN}"}, **policy)


@pytest.fixture
def dip() -> Iterator[DipServer]:
    with DipServer({"drucksache": 1234, "person": 250}, seed=3) as server:
        yield server


@pytest.fixture
def github() -> Iterator[GitHubServer]:
    with GitHubServer("acme", [237, 0, 100, 5], seed=1) as server:
        yield server


class Scripted(LocalServer):
    """Answers from a list, for replies the two fakes do not produce (HTTP dates, HTML bodies)."""

    def __init__(self, *replies: Reply) -> None:
        super().__init__()
        self.replies = deque(replies)

    def handle(self, request: Request) -> Reply:
        return self.replies.popleft() if self.replies else Reply(200, {"ok": True})


# --- errors -----------------------------------------------------------------------------------------------


def test_error_classes_carry_exit_code_retryable_flag_and_one_line_message() -> None:
    err = PermanentHttpError("get", "https://u:pw@x.org/a?token=s3cret&page=2", "Not Found", status=404)
    assert isinstance(err, HttpError) and isinstance(err, SyncpointError)
    assert err.exit_code == EXIT_FAILED
    assert err.retryable is False and RetryableHttpError.retryable is True and RateLimited.retryable is True
    assert str(err) == "GET https://***@x.org/a?token=***&page=2: 404 Not Found"
    multi = RetryableHttpError("GET", "http://x/", "Bad Gateway", status=502, detail="line one\nline two")
    assert "\n" not in str(multi) and str(multi).endswith("(line one line two)")


def test_redact_url_masks_credentials_and_secret_params_only() -> None:
    url = "https://user:pw@api.example/v1/x?apikey=K1&access_token=T&client_secret=S&cursor=AoE%3D&page=3#frag"
    red = redact_url(url)
    assert red == "https://***@api.example/v1/x?apikey=***&access_token=***&client_secret=***&cursor=AoE%3D&page=3"
    for secret in ("pw", "K1", "=T", "=S", "frag"):
        assert secret not in red


def test_backoff_grows_exponentially_with_bounded_jitter_and_cap() -> None:
    policy = RetryPolicy(initial_wait=0.5, multiplier=3, max_wait=10, jitter=0.25)
    rng = random.Random(1)
    for retry, base in ((1, 0.5), (2, 1.5), (3, 4.5)):
        wait = policy.backoff(retry, rng)
        assert base <= wait <= base + 0.25
    assert policy.backoff(4, rng) == 10  # 13.5 capped
    assert policy.backoff(500, rng) == 10  # no overflow for absurd retry numbers
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


# --- retries ----------------------------------------------------------------------------------------------


def test_5xx_retried_with_backoff_and_retry_after_then_success(dip: DipServer, fake: FakeTime) -> None:
    dip.faults.retry_after = "5"
    dip.inject(503, 500, 502)
    with dip_client(dip, fake) as client:
        data = client.get_json("/drucksache", {"format": "json"})
    assert len(data["documents"]) == 100
    assert fake.waits == [5.0, 2.0, 4.0]  # 503 carried Retry-After: 5; 500 and 502 got backoff 2, 4
    assert dip.stats.requests["drucksache"] == 4
    assert dip.stats.faults == {"503": 1, "500": 1, "502": 1}


def test_429_retry_after_seconds_is_honoured(dip: DipServer, fake: FakeTime) -> None:
    dip.faults.retry_after = "7"
    dip.inject(429, 429)
    with dip_client(dip, fake) as client:
        assert client.get("/person", {"format": "json"}).status_code == 200
    assert fake.waits == [7.0, 7.0]
    assert dip.stats.requests["person"] == 3


def test_retry_after_http_date_is_honoured(dip: DipServer, fake: FakeTime) -> None:
    dip.faults.retry_after = email.utils.formatdate(T0 + 42, usegmt=True)
    dip.inject(429)
    with dip_client(dip, fake) as client:
        client.get("/person", {"format": "json"})
    assert fake.waits == [42.0]


def test_retry_after_is_capped_by_the_ceiling_and_logged(
    dip: DipServer, fake: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    dip.faults.retry_after = "600"
    dip.inject(429)
    caplog.set_level(logging.INFO, logger="syncpoint.http")
    with dip_client(dip, fake, rate_limit_ceiling=100, give_up_after=1000) as client:
        client.get("/person", {"format": "json"})
    assert fake.waits == [100.0]
    [record] = [r for r in caplog.records if r.name == "syncpoint.http"]
    assert record.levelno == logging.WARNING
    assert "429" in record.getMessage() and "waiting 100.0 s (server asked 600 s, capped)" in record.getMessage()


def test_github_rate_limit_waits_until_reset_with_ceiling_and_log_line(
    fake: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="syncpoint.http")
    with GitHubServer("acme", [10], rate_limit=2, reset_after=50, clock=fake.time) as gh:
        with gh_client(gh, fake, rate_limit_ceiling=30) as client:
            for _ in range(3):
                assert client.get("/repos/acme/repo-00/issues").status_code == 200
        assert gh.stats.faults["rate-limit"] == 2
        assert gh.stats.requests[("acme/repo-00", "issues")] == 5
    assert fake.waits == [30.0, 20.0]  # reset was 50 s away: 30 (ceiling), then the remaining 20
    lines = [r.getMessage() for r in caplog.records if r.name == "syncpoint.http"]
    assert len(lines) == 2
    assert "rate limited (403 Forbidden)" in lines[0] and "waiting 30.0 s (server asked 50 s, capped)" in lines[0]
    assert "waiting 20.0 s before attempt 3" in lines[1]


def test_github_rate_limit_without_ceiling_waits_exactly_until_reset(fake: FakeTime) -> None:
    with GitHubServer("acme", [10], rate_limit=1, reset_after=50, clock=fake.time) as gh, gh_client(gh, fake) as client:
        client.get("/repos/acme/repo-00/pulls")
        fake.now += 12.5
        client.get("/repos/acme/repo-00/pulls")
    assert fake.waits == [37.5]


def test_rate_limit_reset_beyond_the_deadline_gives_up_at_once_with_reset_time(fake: FakeTime) -> None:
    with GitHubServer("acme", [10], rate_limit=0, reset_after=3600, clock=fake.time) as gh:
        with (
            gh_client(gh, fake, give_up_after=600, rate_limit_ceiling=3600) as client,
            pytest.raises(RateLimited) as caught,
        ):
            client.get("/repos/acme/repo-00/issues")
        assert gh.stats.requests[("acme/repo-00", "issues")] == 1
    err = caught.value
    assert fake.waits == []  # no point sleeping an hour only to give up
    assert err.retryable is True and err.status == 403 and err.reset_at == math.ceil(T0 + 3600)
    assert "rate limit resets at 2023-11-14T23:13:20Z" in str(err) and "gave up after 1 attempt" in str(err)


def test_gives_up_after_bounded_time_with_a_retryable_error(dip: DipServer, fake: FakeTime) -> None:
    dip.faults.error_rate = 1.0
    dip.faults.error_status = 500
    with dip_client(dip, fake, give_up_after=10, max_wait=100) as client, pytest.raises(RetryableHttpError) as caught:
        client.get_json("/drucksache", {"format": "json"})
    err = caught.value
    assert fake.waits == [1.0, 2.0, 4.0]  # the next wait (8) would end at 15 s > 10 s
    assert dip.stats.requests["drucksache"] == 4
    assert err.retryable is True and err.status == 500 and err.attempts == 4
    assert not isinstance(err, RateLimited)
    assert str(err).startswith(f"GET {dip.url}/drucksache?format=json: 500 Internal Server Error")
    assert "gave up after 4 attempts in 7.0 s" in str(err)


def test_gives_up_after_max_attempts(dip: DipServer, fake: FakeTime) -> None:
    dip.inject(*[502] * 5)
    with dip_client(dip, fake, max_attempts=3) as client, pytest.raises(RetryableHttpError) as caught:
        client.get("/drucksache")
    assert caught.value.attempts == 3 and caught.value.status == 502
    assert dip.stats.requests["drucksache"] == 3 and fake.waits == [1.0, 2.0]


def test_the_checkpoint_after_a_wait_ends_the_retrying_without_another_request(dip: DipServer, fake: FakeTime) -> None:
    """What a run passes as ``checkpoint`` raises once a stop is requested: the request ends after the wait."""

    class Stop(BaseException):
        pass

    calls: list[int] = []

    def checkpoint() -> None:
        calls.append(len(fake.waits))
        if len(fake.waits) == 2:  # "Ctrl+C" during the second wait
            raise Stop

    dip.inject(*[503] * 5)
    client = HttpClient(dip.url, headers={"Authorization": f"ApiKey {DIP_KEY}"}, sleep=fake.sleep,
                        checkpoint=checkpoint, clock=fake.time, now=fake.time,
                        retry=RetryPolicy(initial_wait=1.0, jitter=0.0))
    with client, pytest.raises(Stop):
        client.get("/drucksache")
    assert calls == [1, 2] and len(fake.waits) == 2
    assert dip.stats.requests["drucksache"] == 2  # no third attempt after the stop


@pytest.mark.parametrize(
    ("path", "params", "status", "stats_key"),
    [
        ("/drucksache", {"cursor": "not-a-cursor"}, 400, "drucksache"),
        ("/drucksache", {"f.aktualisiert.start": "yesterday"}, 400, "drucksache"),
        ("/drucksache/999999999", None, 404, "drucksache"),
        ("/person", {"apikey": "wrong"}, 401, "person"),
    ],
)
def test_dip_permanent_errors_raise_at_once(
    path: str, params: dict[str, str] | None, status: int, stats_key: str, fake: FakeTime
) -> None:
    with DipServer({"drucksache": 5, "person": 5}) as dip:
        headers = {} if status == 401 else {"Authorization": f"ApiKey {DIP_KEY}"}
        with make_client(dip.url, fake, headers) as client, pytest.raises(PermanentHttpError) as caught:
            client.get(path, params)
        assert dip.stats.requests[stats_key] == 1
    err = caught.value
    assert err.status == status and err.retryable is False and fake.waits == []
    assert "wrong" not in str(err)  # the api key in the query is masked


@pytest.mark.parametrize("status", [403, 404, 410, 451])
def test_github_blocked_endpoints_raise_permanent_errors_at_once(status: int, fake: FakeTime) -> None:
    with GitHubServer("acme", [10], blocked={("acme/repo-00", "issues"): status}) as gh:
        with gh_client(gh, fake) as client:
            with pytest.raises(PermanentHttpError) as caught:
                client.get("/repos/acme/repo-00/issues", {"state": "all"})
            assert client.get("/repos/acme/repo-00/pulls").status_code == 200
        assert gh.stats.requests[("acme/repo-00", "issues")] == 1
    assert caught.value.status == status and not caught.value.retryable and fake.waits == []


def test_github_missing_token_is_permanent_401(github: GitHubServer, fake: FakeTime) -> None:
    with make_client(github.url, fake) as client, pytest.raises(PermanentHttpError) as caught:
        client.get("/orgs/acme/repos")
    assert caught.value.status == 401 and "Requires authentication" in str(caught.value)
    assert github.stats.requests[("acme", "repos")] == 1


def test_permanent_error_after_retries_counts_the_attempts(dip: DipServer, fake: FakeTime) -> None:
    dip.faults.retry_after = "0"
    dip.inject(503, 503)
    with dip_client(dip, fake) as client, pytest.raises(PermanentHttpError) as caught:
        client.get("/drucksache/1")
    assert caught.value.status == 404 and caught.value.attempts == 3
    assert fake.waits == [1.0, 2.0]  # Retry-After: 0 falls back to backoff rather than a hot loop


def test_public_names_are_exported() -> None:
    import syncpoint.http as module

    assert sorted(module.__all__) == sorted(set(module.__all__))
    assert all(hasattr(module, name) for name in module.__all__)


def test_501_is_permanent(dip: DipServer, fake: FakeTime) -> None:
    dip.inject(501)
    with dip_client(dip, fake) as client, pytest.raises(PermanentHttpError):
        client.get("/person")
    assert dip.stats.requests["person"] == 1


def test_dropped_connection_is_retried(dip: DipServer, fake: FakeTime) -> None:
    dip.inject("drop", "drop")
    with dip_client(dip, fake) as client:
        data = client.get_json("/person", {"format": "json"})
    assert [d["id"] for d in data["documents"]] == [d["id"] for d in dip.documents("person")[:100]]
    assert dip.stats.faults["drop"] == 2 and dip.stats.requests["person"] == 3
    assert fake.waits == [1.0, 2.0]


def test_timeout_is_retried(dip: DipServer, fake: FakeTime) -> None:
    dip.inject("slow:3")
    with dip_client(dip, fake, timeout=1.0) as client:
        assert client.get("/person").status_code == 200
    assert dip.stats.requests["person"] == 2 and fake.waits == [1.0]


def test_connection_refused_gives_up_retryable(fake: FakeTime) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with (
        make_client(f"http://127.0.0.1:{port}", fake, max_attempts=3) as client,
        pytest.raises(RetryableHttpError) as caught,
    ):
        client.get("/x")
    assert caught.value.status is None and "ConnectError" in str(caught.value)
    assert caught.value.attempts == 3 and fake.waits == [1.0, 2.0]


def test_secondary_rate_limit_403_with_retry_after(fake: FakeTime) -> None:
    limited = Reply(403, {"message": "You have exceeded a secondary rate limit"}, {"Retry-After": "3"})
    with Scripted(limited) as server, make_client(server.url, fake) as client:
        assert client.get_json("/x") == {"ok": True}
    assert fake.waits == [3.0]


def test_non_json_body_is_a_permanent_error(fake: FakeTime) -> None:
    with (
        Scripted(Reply(200, b"<html>maintenance</html>")) as server,
        make_client(server.url, fake) as client,
        pytest.raises(PermanentHttpError) as caught,
    ):
        client.get_json("/x")
    assert "response is not JSON" in str(caught.value) and "<html>maint" in str(caught.value)


# --- pagination -------------------------------------------------------------------------------------------


def test_page_number_yields_each_item_once_and_resumes(github: GitHubServer, fake: FakeTime) -> None:
    path, params = "/repos/acme/repo-00/issues", {"state": "all", "per_page": 50}
    with gh_client(github, fake) as client:
        first = paginate_page_number(client, path, params)
        got = [next(first), next(first)]
        saved = got[-1].next_state
        first.close()  # interrupted
        assert [p.state for p in got] == [1, 2] and saved == 3
        rest = list(paginate_page_number(client, path, params, resume=saved))
    numbers = [i["number"] for p in got + rest for i in p.items]
    assert numbers == [i["number"] for i in github.expected("acme/repo-00", "issues")]
    assert len(numbers) == 237 == len(set(numbers))
    assert [p.state for p in rest] == [3, 4, 5] and rest[-1].next_state == 6
    assert github.stats.pages[("acme/repo-00", "issues")] == 6  # 5 pages + the empty one that ends it


def test_page_number_with_page_size_skips_the_empty_request(github: GitHubServer, fake: FakeTime) -> None:
    with gh_client(github, fake) as client:
        pages = list(paginate_page_number(client, "/repos/acme/repo-00/pulls", {"state": "all"}, page_size=30))
    assert pages[-1].next_state is None and len(pages[-1].items) < 30
    assert sum(len(p.items) for p in pages) == len(github.expected("acme/repo-00", "pulls"))
    assert github.stats.pages[("acme/repo-00", "pulls")] == len(pages)


def test_cursor_yields_each_document_once_and_resumes_across_a_restart(fake: FakeTime) -> None:
    with DipServer({"drucksache": 1234}, seed=3) as first_server:
        expected = [d["id"] for d in first_server.documents("drucksache")]
        with dip_client(first_server, fake) as client:
            pages = paginate_cursor(client, "/drucksache", {"format": "json"}, **DIP_PAGE)
            got = [next(pages) for _ in range(4)]
            pages.close()
    saved = got[-1].next_state
    assert got[0].state is None and isinstance(saved, str)
    assert got[0].data["numFound"] == 1234
    with DipServer({"drucksache": 1234}, seed=3) as second_server, dip_client(second_server, fake) as client:
        rest = list(paginate_cursor(client, "/drucksache", {"format": "json"}, resume=saved, **DIP_PAGE))
        assert second_server.stats.pages["drucksache"] == 10  # 9 pages + the one returning the same cursor
        assert second_server.stats.documents["drucksache"] == 834
    ids = [d["id"] for p in got + rest for d in p.items]
    assert ids == expected and len(set(ids)) == 1234
    assert rest[0].state == saved


def test_cursor_with_filter_and_faults_still_yields_each_document_once(fake: FakeTime) -> None:
    faults = FaultPlan(error_rate=0.25, drop_rate=0.1, seed=11)
    with DipServer({"drucksache": 1500}, seed=5, faults=faults) as dip:
        all_docs = dip.documents("drucksache")
        start = all_docs[700]["aktualisiert"]
        params = {"format": "json", "f.aktualisiert.start": start}
        expected = [d["id"] for d in dip.documents("drucksache", params)]
        with dip_client(dip, fake) as client:
            ids = [d["id"] for p in paginate_cursor(client, "/drucksache", params, **DIP_PAGE) for d in p.items]
        assert dip.stats.faults["503"] + dip.stats.faults["drop"] > 0
        assert dip.stats.documents["drucksache"] == len(expected)  # faults cost requests, never documents
    assert ids == expected and len(expected) >= 701


def test_cursor_that_stops_moving_ends_paging_even_when_items_are_repeated(fake: FakeTime) -> None:
    replies = [
        Reply(200, {"cursor": "a", "documents": [{"id": "1"}, {"id": "2"}]}),
        Reply(200, {"cursor": "b", "documents": [{"id": "3"}]}),
        Reply(200, {"cursor": "b", "documents": [{"id": "3"}]}),  # some servers repeat the last page
        Reply(200, {"cursor": "c", "documents": [{"id": "4"}]}),  # never requested
    ]
    with Scripted(*replies) as server, make_client(server.url, fake) as client:
        pages = list(paginate_cursor(client, "/x", **DIP_PAGE))
        assert server.stats.requests["/x"] == 3
    assert [[d["id"] for d in p.items] for p in pages] == [["1", "2"], ["3"]]
    assert [(p.state, p.next_state) for p in pages] == [(None, "a"), ("a", "b")]


def test_cursor_absent_means_last_page(fake: FakeTime) -> None:
    replies = [Reply(200, {"next": "t1", "items": [1, 2]}), Reply(200, {"next": None, "items": [3]})]
    with Scripted(*replies) as server, make_client(server.url, fake) as client:
        pages = list(
            paginate_cursor(
                client, "/x", cursor_param="token", next_cursor=lambda d: d["next"], items=lambda d: d["items"]
            )
        )
        assert server.stats.requests["/x"] == 2
    assert [(p.items, p.state, p.next_state) for p in pages] == [([1, 2], None, "t1"), ([3], "t1", None)]
    assert "token=t1" in str(pages[1].response.request.url)


def test_cursor_paging_reads_only_the_fields_the_caller_names(fake: FakeTime) -> None:
    """No API's page shape is a default: the caller names both fields, and a body without them (or with a
    token that is not a string) is a permanent error naming the problem, not a crash or an empty sync."""
    with Scripted() as server, make_client(server.url, fake) as client:
        with pytest.raises(TypeError):
            paginate_cursor(client, "/x")  # type: ignore[call-arg]
        server.replies.extend([Reply(200, {"cursor": "a", "documents": [1]}), Reply(200, {"data": [1], "next": 5})])
        for reply_shape in ("'data'", "must be a string"):
            with pytest.raises(PermanentHttpError) as caught:
                list(paginate_cursor(client, "/x", items=lambda d: d["data"], next_cursor=lambda d: d["next"]))
            assert "unexpected response shape" in str(caught.value) and reply_shape in str(caught.value)


def test_link_header_yields_each_item_once_without_an_extra_request(github: GitHubServer, fake: FakeTime) -> None:
    with gh_client(github, fake) as client:
        repos = [r["full_name"] for p in paginate_link(client, "/orgs/acme/repos", {"per_page": 3}) for r in p.items]
        assert repos == ["acme/repo-00", "acme/repo-01", "acme/repo-02", "acme/repo-03"]
        for repo in repos:
            for endpoint in ("issues", "pulls"):
                params = {"state": "all", "per_page": 40}
                pages = list(paginate_link(client, f"/repos/{repo}/{endpoint}", params))
                ids = [i["id"] for p in pages for i in p.items]
                assert ids == [i["id"] for i in github.expected(repo, endpoint)]
                assert len(ids) == len(set(ids))
                assert github.stats.pages[(repo, endpoint)] == max(1, math.ceil(len(ids) / 40))
                assert not pages or pages[-1].next_state is None


def test_link_header_resumes_from_saved_next_url(github: GitHubServer, fake: FakeTime) -> None:
    path, params = "/repos/acme/repo-00/issues", {"state": "all", "per_page": 100, "sort": "updated"}
    with gh_client(github, fake) as client:
        pages = paginate_link(client, path, params)
        first = next(pages)
        pages.close()
        assert isinstance(first.next_state, str) and "page=2" in first.next_state
        rest = list(paginate_link(client, path, params, resume=first.next_state))
    assert [len(p.items) for p in [first, *rest]] == [100, 100, 37]
    assert "sort=updated" in str(rest[-1].response.request.url)  # the query survived the resume
    numbers = [i["number"] for p in [first, *rest] for i in p.items]
    assert sorted(numbers) == list(range(1, 238))


class ODataServer(LocalServer):
    """``{"value": [...], "@odata.nextLink": ...}`` paging by ``$skip``, like the Tweede Kamer API."""

    base_path = "/OData/v4/2.0"

    def __init__(self, count: int, page: int, relative: bool = False) -> None:
        super().__init__()
        self.count, self.page, self.relative = count, page, relative

    def handle(self, request: Request) -> Reply:
        skip = int(request.query.get("$skip", "0"))
        value = [{"Id": f"z-{i}", "Nummer": i} for i in range(skip, min(skip + self.page, self.count))]
        self.stats.page_served("Zaak", [v["Id"] for v in value])
        body: dict[str, Any] = {"@odata.context": "$metadata#Zaak", "value": value}
        if skip + self.page < self.count:
            next_path = f"Zaak?$filter=Verwijderd%20eq%20false&$skip={skip + self.page}"
            body["@odata.nextLink"] = next_path if self.relative else f"{self.url}/{next_path}"
        return Reply(200, body)


@pytest.mark.parametrize("relative", [False, True])
def test_odata_next_link_yields_each_item_once_and_resumes(relative: bool, fake: FakeTime) -> None:
    with ODataServer(130, 25, relative) as server, make_client(server.url, fake) as client:
        params = {"$filter": "Verwijderd eq false"}
        pages = paginate_odata(client, f"{server.url}/Zaak", params)
        got = [next(pages), next(pages)]
        pages.close()
        rest = list(paginate_odata(client, f"{server.url}/Zaak", params, resume=got[-1].next_state))
        assert server.stats.pages["Zaak"] == 6  # ceil(130 / 25), nothing fetched twice
    numbers = [v["Nummer"] for p in got + rest for v in p.items]
    assert numbers == list(range(130))
    assert rest[-1].next_state is None
    assert all(str(p.next_state).startswith(server.url) for p in got)


def test_max_pages_bounds_a_pagination_that_does_not_end(github: GitHubServer, fake: FakeTime) -> None:
    with gh_client(github, fake) as client, pytest.raises(PermanentHttpError) as caught:
        for _ in paginate_page_number(client, "/repos/acme/repo-00/issues", {"state": "all"}, max_pages=2):
            pass
    assert "more than 2 pages" in str(caught.value)
    assert github.stats.pages[("acme/repo-00", "issues")] == 2


def test_unexpected_shape_is_a_permanent_error(dip: DipServer, fake: FakeTime) -> None:
    with dip_client(dip, fake) as client, pytest.raises(PermanentHttpError) as caught:
        list(paginate_link(client, "/person", {"format": "json"}))  # DIP answers an object, not a list
    assert "unexpected response shape" in str(caught.value)

"""HTTP for long syncs: one client that retries what is worth retrying, errors a sync can act on, paging.

A sync that runs for hours meets every transient failure an API has: 502s during deploys, dropped
connections, timeouts, rate limits. Retrying those inside the request keeps the sync's own code about
records, and the few errors that do reach it say whether trying again later can help (``.retryable``):
the run marks the task failed with that flag, so a later ``--retry-failed`` picks up exactly the tasks
that deserve it.

    SyncpointError (syncpoint.errors)        exit 1
    └── HttpError                            .retryable .method .url .status .reason .attempts
        ├── RetryableHttpError               retryable: 5xx, 408, timeouts, network errors, dropped connections
        │   └── RateLimited                  429, or 403 with X-RateLimit-Remaining: 0 or Retry-After; .reset_at
        └── PermanentHttpError               not retryable: 400, 401, 403 (no rate limit), 404, 410, 451, other
                                             4xx, a body that is not the JSON expected, a paging loop

Retryable errors only reach the caller after the client has given up (``RetryPolicy``): after
``max_attempts`` attempts, or when the next wait would end beyond ``give_up_after`` seconds from the first
attempt. Giving up *before* a long wait rather than after it lets the sync checkpoint and exit at once.

A long wait must not outlive a stop: the client sleeps with the ``sleep`` it is given (``run.sleep`` wakes
on Ctrl+C) and then calls ``checkpoint`` (``run.checkpoint`` commits and raises ``syncpoint.Stopped`` once a
stop is requested), so Ctrl+C during a rate-limit wait ends the wait *and* the retrying, without another
request, and the run ends ``interrupted`` (130/143) instead of firing the remaining attempts at once.

Every error message is one line with the URL's credentials and secret query values masked, because these
lines end up in logs and in the run history.

Needs the http extra, ``pip install 'syncpoint[http]'`` (httpx, tenacity): syncs that fetch with another
client, or read files and databases, do not pay for them. Without it, importing this module raises a
``ModuleNotFoundError`` that says so.
"""

from __future__ import annotations

import email.utils
import logging
import math
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Generic, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from syncpoint.errors import SyncpointError
from syncpoint.extras import missing

try:  # the http extra: a plain ``pip install syncpoint`` has neither (``syncpoint.extras``)
    import httpx
    import tenacity
except ModuleNotFoundError as exc:
    raise missing("syncpoint.http", exc) from None

__all__ = [
    "MAX_PAGES",
    "HttpClient",
    "HttpError",
    "Page",
    "PermanentHttpError",
    "RateLimited",
    "RetryPolicy",
    "RetryableHttpError",
    "json_body",
    "paginate_cursor",
    "paginate_link",
    "paginate_odata",
    "paginate_page_number",
    "redact_url",
]

logger = logging.getLogger("syncpoint.http")

MAX_PAGES = 100_000
"""Default bound on pages per pagination: an API that keeps sending a next page forever is a bug, not data."""

_SECRET_NAMES = frozenset(
    {"key", "apikey", "api_key", "token", "access_token", "auth", "password", "secret", "sig", "signature"}
)
_RETRY_STATUSES = frozenset({408, 425, 429})
_PERMANENT_5XX = frozenset({501, 505})  # "not implemented" does not get implemented by retrying


def redact_url(url: str | httpx.URL) -> str:
    """Mask userinfo and secret-looking query values: error lines are logged and stored in run history."""
    parts = urlsplit(str(url))
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    pairs = [(k, "***" if _is_secret(k) else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(pairs, safe="*:,/"), ""))


def _is_secret(name: str) -> bool:
    name = name.lower().replace("-", "_")
    return name in _SECRET_NAMES or name.endswith(("_key", "_token", "_secret")) or "password" in name


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


class HttpError(SyncpointError):
    """A request that did not give the sync a usable response."""

    retryable: bool = False

    def __init__(
        self,
        method: str,
        url: str | httpx.URL,
        reason: str,
        *,
        status: int | None = None,
        detail: str = "",
        attempts: int = 1,
        response: httpx.Response | None = None,
    ) -> None:
        self.method = method.upper()
        self.url = redact_url(url)
        self.reason = reason
        self.status = status
        self.detail = detail
        self.attempts = attempts
        self.response = response
        what = reason if status is None else f"{status} {reason}"
        tail = f" ({detail})" if detail else ""
        super().__init__(_one_line(f"{self.method} {self.url}: {what}{tail}"))


class PermanentHttpError(HttpError):
    """Trying again will give the same answer: a wrong request, credentials, or a gone resource."""

    retryable = False


class RetryableHttpError(HttpError):
    """Transient; the client already retried. A later run can try again (``retry_after``: server's hint)."""

    retryable = True

    def __init__(
        self,
        method: str,
        url: str | httpx.URL,
        reason: str,
        *,
        status: int | None = None,
        detail: str = "",
        attempts: int = 1,
        response: httpx.Response | None = None,
        retry_after: float | None = None,
        reset_at: float | None = None,
    ) -> None:
        super().__init__(method, url, reason, status=status, detail=detail, attempts=attempts, response=response)
        self.retry_after = retry_after
        self.reset_at = reset_at

    def gave_up(self, attempts: int, elapsed: float) -> RetryableHttpError:
        """The same failure, re-worded for the caller: how long we tried and when the server lets us back."""
        notes = [self.detail] if self.detail else []
        if self.reset_at is not None:
            reset = datetime.fromtimestamp(self.reset_at, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            notes.append(f"rate limit resets at {reset}")
        notes.append(f"gave up after {attempts} attempt{'s' if attempts != 1 else ''} in {elapsed:.1f} s")
        return type(self)(
            self.method,
            self.url,
            self.reason,
            status=self.status,
            detail="; ".join(notes),
            attempts=attempts,
            response=self.response,
            retry_after=self.retry_after,
            reset_at=self.reset_at,
        )


class RateLimited(RetryableHttpError):
    """The server asked us to slow down; ``reset_at`` (epoch seconds) says when it lets us back, if known."""


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one request tries before the sync hears about the failure.

    Backoff before retry *n* is ``min(max_wait, initial_wait * multiplier**(n-1) + uniform(0, jitter))``;
    jitter keeps many workers from retrying in lock step. A wait the server asks for (``Retry-After``,
    ``X-RateLimit-Reset``) replaces the backoff, capped at ``rate_limit_ceiling`` so a bogus far-future reset
    cannot park the sync. ``give_up_after`` bounds one request's total time, waits included, and
    ``max_attempts`` bounds the attempts, so a dead server ends the sync instead of stalling it.
    """

    initial_wait: float = 1.0
    multiplier: float = 2.0
    max_wait: float = 60.0
    jitter: float = 1.0
    give_up_after: float = 1800.0
    max_attempts: int = 12
    rate_limit_ceiling: float = 900.0

    def __post_init__(self) -> None:
        numbers = (self.initial_wait, self.max_wait, self.jitter, self.give_up_after, self.rate_limit_ceiling)
        if min(numbers) < 0 or self.multiplier < 1 or self.max_attempts < 1:
            raise ValueError(f"invalid retry policy: {self}")

    def backoff(self, retry: int, rng: random.Random) -> float:
        exponential = self.initial_wait * self.multiplier ** min(retry - 1, 64)
        return min(self.max_wait, exponential + rng.uniform(0, self.jitter))


def _retry_after(response: httpx.Response, now: float) -> float | None:
    """Seconds the server asked us to wait, from ``Retry-After`` (seconds or an HTTP date)."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - now)


def _rate_limit_reset(response: httpx.Response) -> float | None:
    """GitHub-style exhaustion: ``X-RateLimit-Remaining: 0`` with the reset as epoch seconds."""
    if response.headers.get("x-ratelimit-remaining", "").strip() != "0":
        return None
    try:
        return float(response.headers.get("x-ratelimit-reset", ""))
    except ValueError:
        return float("nan")  # exhausted, reset unknown: fall back to backoff


def _server_message(response: httpx.Response) -> str:
    """The API's own explanation ("Bad credentials", "Repository access blocked"), if it gave a short one."""
    try:
        data = response.json()
    except ValueError:
        return ""
    if isinstance(data, dict):
        for key in ("message", "error", "detail", "title"):
            value = data.get(key)
            if isinstance(value, str):
                return _one_line(value, 160)
            if isinstance(value, dict) and isinstance(value.get("message"), str):
                return _one_line(value["message"], 160)
    return ""


def _status_error(request: httpx.Request, response: httpx.Response, now: float) -> HttpError:
    """Classify a non-2xx response into the error the retry loop and the sync act on."""
    status = response.status_code
    args = (request.method, request.url, response.reason_phrase or "error")
    detail = _server_message(response)
    common: dict[str, Any] = {"status": status, "detail": detail, "response": response}
    retry_after = _retry_after(response, now)
    if status in (403, 429):
        reset = _rate_limit_reset(response)
        reset_at = None if reset is None or math.isnan(reset) else reset  # NaN: exhausted, reset not given
        if reset_at is not None:
            retry_after = max(0.0, reset_at - now)
        # GitHub's secondary limit is a 403 that may carry only Retry-After, or only its message.
        if status == 429 or reset is not None or retry_after is not None or "rate limit" in detail.lower():
            return RateLimited(*args, retry_after=retry_after, reset_at=reset_at, **common)
    if status in _RETRY_STATUSES or (status >= 500 and status not in _PERMANENT_5XX):
        return RetryableHttpError(*args, retry_after=retry_after, **common)
    return PermanentHttpError(*args, **common)


def _transport_error(request: httpx.Request, exc: httpx.HTTPError) -> HttpError:
    """Network trouble is worth retrying; a URL or protocol we cannot speak is not."""
    reason = _one_line(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, 160)
    transient = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError, httpx.ProxyError)
    if isinstance(exc, transient):
        return RetryableHttpError(request.method, request.url, reason)
    return PermanentHttpError(request.method, request.url, reason)


def json_body(response: httpx.Response) -> Any:
    """Decode JSON, turning a non-JSON body (a proxy's HTML error page) into a sync-level error."""
    try:
        return response.json()
    except ValueError as exc:
        snippet = _one_line(response.text[:80], 80)
        raise PermanentHttpError(
            response.request.method,
            response.request.url,
            "response is not JSON",
            status=response.status_code,
            detail=f"body starts {snippet!r}",
            response=response,
        ) from exc


class _Call:
    """One logical request across its attempts: what tenacity asks us (wait? stop?) and what it sends."""

    def __init__(self, client: HttpClient, request: httpx.Request) -> None:
        self.client = client
        self.request = request
        self.started = client._clock()
        self.waits: dict[int, float] = {}
        self.capped: dict[int, float] = {}
        self.attempts = 0

    def send(self) -> httpx.Response:
        self.attempts += 1
        try:
            response = self.client._http.send(self.request)
        except httpx.HTTPError as exc:
            error = _transport_error(self.request, exc)
            error.attempts = self.attempts
            raise error from exc
        if response.is_success:
            return response
        error = _status_error(self.request, response, self.client._now())
        error.attempts = self.attempts  # a 404 after two 503s took three attempts
        raise error

    def wait(self, state: tenacity.RetryCallState) -> float:
        """Memoised per attempt, because tenacity versions differ in whether stop or wait asks first."""
        n = state.attempt_number
        if n not in self.waits:
            err = state.outcome.exception() if state.outcome else None
            hint = err.retry_after if isinstance(err, RetryableHttpError) else None
            policy = self.client.retry
            if hint is not None and hint > 0:
                self.waits[n] = min(hint, policy.rate_limit_ceiling)
                if hint > policy.rate_limit_ceiling:
                    self.capped[n] = hint
            else:
                self.waits[n] = policy.backoff(n, self.client._rng)
        return self.waits[n]

    def stop(self, state: tenacity.RetryCallState) -> bool:
        policy = self.client.retry
        elapsed = self.client._clock() - self.started
        return state.attempt_number >= policy.max_attempts or elapsed + self.wait(state) > policy.give_up_after

    def before_sleep(self, state: tenacity.RetryCallState) -> None:
        n = state.attempt_number
        err = state.outcome.exception() if state.outcome else None
        wait = self.waits.get(n, 0.0)
        where = f"{self.request.method} {redact_url(self.request.url)}"
        why = str(err) if not isinstance(err, HttpError) else err.reason
        if isinstance(err, HttpError) and err.status is not None:
            why = f"{err.status} {err.reason}"
        if isinstance(err, RateLimited) or (isinstance(err, RetryableHttpError) and err.retry_after):
            cap = f" (server asked {self.capped[n]:.0f} s, capped)" if n in self.capped else ""
            kind = "rate limited" if isinstance(err, RateLimited) else "server asked to wait"
            logger.warning("%s: %s (%s); waiting %.1f s%s before attempt %d", where, kind, why, wait, cap, n + 1)
        else:
            logger.info("%s: %s; waiting %.1f s before attempt %d", where, why, wait, n + 1)

    def give_up(self, state: tenacity.RetryCallState) -> httpx.Response:
        err = state.outcome.exception() if state.outcome else None
        if isinstance(err, RetryableHttpError):
            raise err.gave_up(state.attempt_number, self.client._clock() - self.started) from err
        raise RuntimeError(f"retrying ended without a retryable error: {err!r}")  # not reachable


class HttpClient:
    """An ``httpx.Client`` whose requests either succeed, or fail once with an ``HttpError``.

    ``sleep``, ``clock`` (monotonic, for the give-up deadline) and ``now`` (epoch, for ``Retry-After`` dates
    and rate-limit resets) are injectable so that tests do not wait, and so that a run can pass a sleep that
    wakes up when the user presses Ctrl+C during a long rate-limit wait. ``checkpoint`` is called after every
    retry wait, before the next attempt: whatever it raises ends the request there. In a sync, pass both
    from the run (``sleep=run.sleep, checkpoint=run.checkpoint``): a stop asked for during a wait then ends
    the wait and the retrying, with no further request, as ``Stopped``.
    """

    def __init__(
        self,
        base_url: str | httpx.URL = "",
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float | httpx.Timeout = 30.0,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        checkpoint: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        transport: httpx.BaseTransport | None = None,
        follow_redirects: bool = True,
    ) -> None:
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._checkpoint = checkpoint
        self._clock = clock
        self._now = now
        self._rng = rng or random.Random()
        self._http = httpx.Client(
            base_url=base_url,
            headers=dict(headers or {}),
            timeout=timeout,
            transport=transport,
            follow_redirects=follow_redirects,
        )

    def request(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send with retries; ``path`` may be absolute (a next-page link). ``None`` params are left out.

        ``params`` are merged into the query ``path`` already has (httpx would replace it, losing a next
        link's own parameters).
        """
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            url = httpx.URL(path)
            if query:
                url = url.copy_merge_params(query)
            request = self._http.build_request(method, url, headers=headers)
        except httpx.InvalidURL as exc:
            raise PermanentHttpError(method, path, f"invalid URL: {exc}") from exc
        call = _Call(self, request)
        retrying = tenacity.Retrying(
            sleep=self._wait,
            stop=call.stop,
            wait=call.wait,
            retry=tenacity.retry_if_exception_type(RetryableHttpError),
            before_sleep=call.before_sleep,
            retry_error_callback=call.give_up,
        )
        response: httpx.Response = retrying(call.send)
        return response

    def _wait(self, seconds: float) -> None:
        """A retry wait, then the caller's safe point: a stop requested meanwhile ends the request here."""
        self._sleep(seconds)
        if self._checkpoint is not None:
            self._checkpoint()

    def get(
        self, path: str, params: Mapping[str, Any] | None = None, *, headers: Mapping[str, str] | None = None
    ) -> httpx.Response:
        return self.request("GET", path, params, headers=headers)

    def get_json(
        self, path: str, params: Mapping[str, Any] | None = None, *, headers: Mapping[str, str] | None = None
    ) -> Any:
        return json_body(self.get(path, params, headers=headers))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# --- pagination -------------------------------------------------------------------------------------------

StateT = TypeVar("StateT", int, str)
ItemsOf = Callable[[Any], list[Any]]


@dataclass(frozen=True)
class Page(Generic[StateT]):
    """One page and where to continue after it.

    ``state`` fetched this page (``None``: the first request); ``next_state`` fetches the next one, is
    JSON-serialisable, and is what a checkpoint stores once the page's items are durable. ``None`` means no
    further page is known; the generator ending means there is none.
    """

    items: list[Any]
    state: StateT | None
    next_state: StateT | None
    response: httpx.Response
    data: Any


def _list_body(data: Any) -> list[Any]:
    if not isinstance(data, list):
        raise TypeError(f"expected a JSON array, got {type(data).__name__}")
    return data


def _items(extract: ItemsOf, data: Any, response: httpx.Response) -> list[Any]:
    """Run the caller's extractor; a response of the wrong shape is a permanent error, not a crash."""
    try:
        got = extract(data)
        if not isinstance(got, list):
            raise TypeError(f"items must be a list, got {type(got).__name__}")
        return got
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise PermanentHttpError(
            response.request.method, response.request.url, "unexpected response shape", detail=str(exc)
        ) from exc


def _too_many_pages(path: str, max_pages: int) -> PermanentHttpError:
    return PermanentHttpError("GET", path, "pagination did not end", detail=f"more than {max_pages} pages")


def paginate_page_number(
    client: HttpClient,
    path: str,
    params: Mapping[str, Any] | None = None,
    *,
    resume: int | None = None,
    first_page: int = 1,
    page_param: str = "page",
    page_size: int | None = None,
    items: ItemsOf = _list_body,
    max_pages: int = MAX_PAGES,
) -> Iterator[Page[int]]:
    """``?page=N`` until an empty page; with ``page_size``, a short page ends it one request earlier."""
    page = first_page if resume is None else resume
    for _ in range(max_pages):
        response = client.get(path, {**(params or {}), page_param: page})
        data = json_body(response)
        got = _items(items, data, response)
        if not got:
            return
        last = page_size is not None and len(got) < page_size
        yield Page(got, page, None if last else page + 1, response, data)
        if last:
            return
        page += 1
    raise _too_many_pages(path, max_pages)


def _next_token(extract: Callable[[Any], str | None], data: Any, response: httpx.Response) -> str | None:
    """Run the caller's token reader; a response of the wrong shape is a permanent error, not a crash."""
    try:
        token = extract(data)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise PermanentHttpError(
            response.request.method, response.request.url, "unexpected response shape", detail=str(exc)
        ) from exc
    if token is not None and not isinstance(token, str):
        raise PermanentHttpError(response.request.method, response.request.url, "unexpected response shape",
                                 detail=f"next-page token must be a string, got {type(token).__name__}")
    return token


def paginate_cursor(
    client: HttpClient,
    path: str,
    params: Mapping[str, Any] | None = None,
    *,
    items: ItemsOf,
    next_cursor: Callable[[Any], str | None],
    resume: str | None = None,
    cursor_param: str = "cursor",
    max_pages: int = MAX_PAGES,
) -> Iterator[Page[str]]:
    """Opaque next-page tokens: ``items`` reads a page's items from the decoded body and ``next_cursor`` its
    next token, which goes back as ``?{cursor_param}=…`` (e.g. ``items=lambda d: d["data"],
    next_cursor=lambda d: d.get("next_cursor")``). A body without them is a ``PermanentHttpError``.

    The end is no token, no items, or a token equal to the one sent: some APIs answer the last page's
    cursor with the same cursor and nothing else, and never say "last page" up front. A token that did
    not move cannot have moved past new items either, so items that come with it are a repeat and are not
    yielded.
    """
    cursor = resume
    for _ in range(max_pages):
        query = dict(params or {})
        if cursor is not None:
            query[cursor_param] = cursor
        response = client.get(path, query)
        data = json_body(response)
        got = _items(items, data, response)
        new = _next_token(next_cursor, data, response)
        if cursor is not None and new == cursor:
            return
        done = new is None or not got
        if got:
            yield Page(got, cursor, None if done else new, response, data)
        if done:
            return
        cursor = new
    raise _too_many_pages(path, max_pages)


def _follow(
    client: HttpClient,
    path: str,
    params: Mapping[str, Any] | None,
    resume: str | None,
    items: ItemsOf,
    next_of: Callable[[httpx.Response, Any], str | None],
    max_pages: int,
) -> Iterator[Page[str]]:
    """Follow absolute next-page URLs; the URL already carries the query, so a resume sends no params."""
    state = resume
    url, query = (resume, None) if resume is not None else (path, params)
    for _ in range(max_pages):
        response = client.get(url, query)
        data = json_body(response)
        got = _items(items, data, response)
        link = next_of(response, data)
        nxt = str(response.request.url.join(link)) if link else None
        if nxt is not None and nxt == str(response.request.url):
            raise PermanentHttpError("GET", nxt, "pagination did not end", detail="next page is this page")
        if got:
            yield Page(got, state, nxt, response, data)
        if nxt is None:
            return
        url, query, state = nxt, None, nxt
    raise _too_many_pages(path, max_pages)


def _link_next(response: httpx.Response, data: Any) -> str | None:
    return response.links.get("next", {}).get("url")


def paginate_link(
    client: HttpClient,
    path: str,
    params: Mapping[str, Any] | None = None,
    *,
    resume: str | None = None,
    items: ItemsOf = _list_body,
    max_pages: int = MAX_PAGES,
) -> Iterator[Page[str]]:
    """``Link: <…>; rel="next"`` (GitHub): no request for an empty page after the last one."""
    return _follow(client, path, params, resume, items, _link_next, max_pages)


def _odata_next(response: httpx.Response, data: Any) -> str | None:
    if not isinstance(data, dict):
        return None
    link = data.get("@odata.nextLink", data.get("odata.nextLink"))
    return link if isinstance(link, str) else None


def _odata_value(data: Any) -> list[Any]:
    value = data["value"]
    if not isinstance(value, list):
        raise TypeError("OData 'value' is not an array")
    return value


def paginate_odata(
    client: HttpClient,
    path: str,
    params: Mapping[str, Any] | None = None,
    *,
    resume: str | None = None,
    items: ItemsOf = _odata_value,
    max_pages: int = MAX_PAGES,
) -> Iterator[Page[str]]:
    """OData ``{"value": […], "@odata.nextLink": …}`` (e.g. Tweede Kamer): server-driven paging."""
    return _follow(client, path, params, resume, items, _odata_next, max_pages)

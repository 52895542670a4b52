"""Safe by default: where the dashboard may listen, who may read it, and the headers every answer carries.

* It listens on 127.0.0.1 unless told otherwise; any other address needs a token (``--token`` or
  ``SYNCPOINT_WEB_TOKEN``), else ``syncpoint serve`` refuses to start (exit 64).
* With a token, every request must carry it: ``Authorization: Bearer TOKEN``, or ``?token=TOKEN`` once in a
  browser (answered with a redirect that sets an HttpOnly, SameSite=Strict cookie and drops it from the URL).
* Every answer says ``Content-Security-Policy: default-src 'self'`` (no inline script runs, so a value that
  slipped past escaping could not execute either), ``X-Frame-Options: DENY`` and ``nosniff``.
* Actions (delete a run, reset state) exist only with ``--allow-actions``; each is a POST from a
  confirmation page carrying a per-process secret (CSRF) and the name of what it acts on.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl, urlencode

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from syncpoint.errors import UsageError

COOKIE = "syncpoint_token"
TOKEN_VAR = "SYNCPOINT_WEB_TOKEN"
HEADERS = [
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to listen beyond this machine without a token (one line, exit 64)."""
    if token is not None and len(token) < 16:
        raise UsageError("the dashboard token must be at least 16 characters; generate one with: "
                         "python -c 'import secrets; print(secrets.token_urlsafe())'")
    if not is_loopback(host) and not token:
        raise UsageError(
            f"refusing to serve the dashboard on {host} without a token: anyone who can reach it could read "
            f"your checkpoints; pass --token TOKEN (or set {TOKEN_VAR}), or keep the default --host 127.0.0.1"
        )


def new_secret() -> str:
    return secrets.token_urlsafe(24)


class Guard:
    """ASGI middleware: the token check and the security headers, around every request."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                message["headers"] = headers + [h for h in HEADERS if h[0] not in present]
            await send(message)

        if self.token is not None:
            verdict = self._check(scope)
            if verdict is not None:
                await verdict(with_headers)
                return
        await self.app(scope, receive, with_headers)

    def _check(self, scope: Scope) -> _Reply | None:
        assert self.token is not None
        headers = dict(scope.get("headers", []))
        auth = headers.get(b"authorization", b"").decode("latin-1")
        if auth.startswith("Bearer ") and _same(auth[len("Bearer "):], self.token):
            return None
        cookie = SimpleCookie(headers.get(b"cookie", b"").decode("latin-1"))
        if COOKIE in cookie and _same(cookie[COOKIE].value, self.token):
            return None
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        given = [v for k, v in query if k == "token"]
        if given and _same(given[-1], self.token):
            rest = urlencode([(k, v) for k, v in query if k != "token"])
            location = scope.get("root_path", "") + scope["path"] + (f"?{rest}" if rest else "")
            cookie_value = f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"
            return _Reply(303, b"", [(b"location", location.encode("latin-1")),
                                     (b"set-cookie", cookie_value.encode("latin-1"))])
        return _Reply(401, b"a token is required: open the dashboard with ?token=TOKEN once, or send "
                           b"Authorization: Bearer TOKEN\n", [(b"www-authenticate", b"Bearer")])


class _Reply:
    def __init__(self, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        self.status, self.body, self.headers = status, body, headers

    async def __call__(self, send: Send) -> None:
        headers = [(b"content-type", b"text/plain; charset=utf-8"),
                   (b"content-length", str(len(self.body)).encode()), *self.headers]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8"))

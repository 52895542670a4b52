"""The API ``syncpoint demo`` syncs: documents in pages behind opaque page tokens, answered slowly on purpose.

    GET /documents[?cursor=TOKEN]    {"documents": [{"id", "title", "updated"}, ...], "next": TOKEN | null,
                                      "total": N}

It is one ``Routes`` callable for ``syncpoint.testing.server.LocalServer`` (the demo's own use of what the
package ships for testing syncs). Documents are a pure function of the seed and their position, and a token
names a position, so a token saved before Ctrl+C is still good for the server the resumed demo starts (on
another port). Each page takes ``delay`` seconds, to leave time for Ctrl+C.
"""

from __future__ import annotations

import base64
import binascii
import random
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from syncpoint.testing.server import Reply, Request, error_reply

PAGE_SIZE = 100
PATH = "/documents"
_NEWEST = datetime(2026, 11, 30, 18, 0, tzinfo=timezone.utc)
_WORDS = ("sync", "resume", "cursor", "page", "commit", "retry", "budget", "ledger", "watermark", "signal")


def demo_api(count: int, seed: int = 0, *, page_size: int = PAGE_SIZE, delay: float = 0.0
             ) -> Callable[[Request], Reply]:
    """The answer to every request: a page of ``count`` documents, after ``delay`` seconds."""

    def answer(request: Request) -> Reply:
        if request.path != PATH:
            return error_reply(404, f"no such endpoint {request.path}; this API has {PATH}")
        token = request.query.get("cursor")
        start = 0 if token is None else _position(token)
        if start is None or not 0 <= start <= count:
            return error_reply(400, f"invalid cursor {token!r}")
        end = min(start + page_size, count)
        body = {"documents": [document(seed, n) for n in range(start, end)],
                "next": _token(end) if end < count else None, "total": count}
        return Reply(200, body, delay=delay)

    return answer


def document(seed: int, n: int) -> dict[str, Any]:
    """The n-th document (0-based), the same for the same seed."""
    rng = random.Random(f"{seed}:{n}")
    updated = _NEWEST - timedelta(minutes=n * 7 + rng.randint(0, 6))
    return {"id": f"doc-{n + 1:07d}", "title": " ".join(rng.choice(_WORDS) for _ in range(3)).capitalize(),
            "updated": updated.isoformat(timespec="seconds")}


def _token(position: int) -> str:
    return base64.urlsafe_b64encode(f"after:{position}".encode()).decode().rstrip("=")


def _position(token: str) -> int | None:
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    prefix, _, number = text.partition(":")
    return int(number) if prefix == "after" and number.isdigit() else None

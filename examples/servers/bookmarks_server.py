"""A local stand-in for a Twitter/X-like bookmarks API, for the bookmark crawler (``examples/bookmarks_crawler.py``).

    GET /users/{user}/bookmarks?count=N[&cursor=TOKEN]      Authorization: Bearer <that user's token>
    -> {"data": [{"id": "1000000000000000042", "text": ..., "created_at": ...}, ...], "next_cursor": "..." | null}

Bookmarks come newest first; tweet IDs are strings of digits, and by default they straddle 10**18, so the
older ones have 18 digits and the newer ones 19 (``"999…" > "100…"`` as strings: compare them as integers).
Users may share tweets (two users bookmarking the same tweet). The cursor is a stateless token (the last ID
served), so it stays valid across restarts of the server and when new bookmarks arrive at the front
(``add``). Each user has a bearer token; ``revoke`` makes that user's requests answer 401. Faults come from
a ``FaultPlan``; ``stats`` counts what was served per user. Run
``python examples/servers/bookmarks_server.py --port 8080 --users alice,bob --count 500``; while it runs,
``curl -X POST http://127.0.0.1:8080/_control/revoke/alice`` revokes alice's token (her requests answer 401),
``…/_control/token/alice?token=T`` gives her a new one, and ``…/_control/add/alice?count=5`` adds 5 new
bookmarks at the front (``--revoked bob`` starts with bob's token revoked).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import random
import re
from collections.abc import Hashable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
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

_PATH = re.compile(r"/users/(?P<user>[A-Za-z0-9_.-]+)/bookmarks")
_EPOCH = datetime(2024, 5, 1, tzinfo=timezone.utc)
_WORDS = ("sync", "resume", "cursor", "kill", "postgres", "bookmark", "thread", "paper", "demo", "bug")
DEFAULT_FIRST_ID = 10**18 - 5_000  # the generated IDs cross from 18 to 19 digits


def encode_cursor(tweet_id: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"before": str(tweet_id)}).encode()).decode().rstrip("=")


def decode_cursor(token: str) -> int:
    try:
        value = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return int(value["before"])
    except (ValueError, TypeError, KeyError, binascii.Error) as exc:
        raise ValueError(f"invalid cursor {token!r}") from exc


class BookmarksServer(LocalServer):
    """Users' bookmarks, newest first; ``users`` maps each user to how many bookmarks they start with."""

    def __init__(
        self,
        users: Mapping[str, int],
        *,
        tokens: Mapping[str, str] | None = None,
        page_size: int = 20,
        max_count: int = 100,
        first_id: int = DEFAULT_FIRST_ID,
        seed: int = 0,
        faults: FaultPlan | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host=host, port=port, faults=faults)
        self.page_size = page_size
        self.max_count = max_count
        self.tokens: dict[str, str | None] = {u: (tokens or {}).get(u, f"token-{u}") for u in users}
        self._rng = random.Random(f"bookmarks:{seed}")
        self._next_id = first_id
        self._tweets: dict[int, dict[str, Any]] = {}
        self._marks: dict[str, list[int]] = {u: [] for u in users}  # newest first
        pool = self._new_tweets(max(users.values(), default=0) * 2)  # oldest first
        for user, count in users.items():
            chosen = sorted(self._rng.sample(pool, min(count, len(pool))), reverse=True)
            self._marks[user] = chosen

    # --- what tests read and change ---

    def bookmarks(self, user: str) -> list[dict[str, Any]]:
        """What a full crawl of ``user`` receives, newest first."""
        with self.lock:
            return [dict(self._tweets[i]) for i in self._marks[user]]

    def all_ids(self) -> list[tuple[str, str]]:
        """Every (user, tweet ID) pair the server holds: what a crawl of everyone must end up with."""
        with self.lock:
            return [(user, str(i)) for user, ids in self._marks.items() for i in ids]

    def add(self, user: str, count: int = 1, *, at_least: int | None = None) -> list[dict[str, Any]]:
        """New bookmarks of new tweets (IDs above every existing one, and from ``at_least`` on if given, e.g.
        ``10**18`` to cross into 19 digits): they appear at the front."""
        with self.lock:
            if at_least is not None:
                self._next_id = max(self._next_id, at_least - 1)
            ids = self._new_tweets(count)
            self._marks[user] = sorted(ids, reverse=True) + self._marks[user]
            return [dict(self._tweets[i]) for i in sorted(ids, reverse=True)]

    def revoke(self, user: str) -> None:
        """The user's token stops working: their requests answer 401."""
        with self.lock:
            self.tokens[user] = None

    def set_token(self, user: str, token: str) -> None:
        with self.lock:
            self.tokens[user] = token

    def _new_tweets(self, count: int) -> list[int]:
        ids: list[int] = []
        for _ in range(count):
            self._next_id += self._rng.randint(1, 40)
            tweet_id = self._next_id
            words = " ".join(self._rng.choice(_WORDS) for _ in range(6))
            created = _EPOCH + timedelta(seconds=(tweet_id - DEFAULT_FIRST_ID) * 7)
            self._tweets[tweet_id] = {
                "id": str(tweet_id), "text": f"tweet {tweet_id}: {words}",
                "created_at": created.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            }
            ids.append(tweet_id)
        return ids

    # --- the protocol ---

    def stats_key(self, request: Request) -> Hashable:
        match = _PATH.fullmatch(request.path)
        return match.group("user") if match else request.path

    def authorize(self, request: Request) -> Reply | None:
        match = _PATH.fullmatch(request.path)
        if match is None or match.group("user") not in self.tokens:
            return error_reply(404, f"no such resource {request.path}")
        expected = self.tokens[match.group("user")]
        if expected is None or request.headers.get("authorization", "") != f"Bearer {expected}":
            return error_reply(401, "Unauthorized: invalid or revoked token")
        return None

    def control(self, request: Request) -> Reply | None:
        """``POST /_control/{revoke,token,add}/{user}``: change the server by hand while it runs."""
        parts = request.path.split("/")
        if len(parts) != 4 or parts[1] != "_control":
            return None
        action, user = parts[2], parts[3]
        if user not in self.tokens:
            return error_reply(404, f"no user {user!r}")
        if action == "revoke":
            self.revoke(user)
            return Reply(200, {"revoked": user})
        if action == "token" and request.query.get("token"):
            self.set_token(user, request.query["token"])
            return Reply(200, {"token": user})
        if action == "add":
            added = self.add(user, int(request.query.get("count", "1")))
            return Reply(200, {"added": [b["id"] for b in added]})
        return error_reply(400, "use revoke/USER, token/USER?token=T or add/USER?count=N")

    def handle(self, request: Request) -> Reply:
        match = _PATH.fullmatch(request.path)
        assert match is not None  # authorize() answered 404 otherwise
        user = match.group("user")
        try:
            count = int(request.query.get("count", self.page_size))
            before = decode_cursor(request.query["cursor"]) if request.query.get("cursor") else None
        except ValueError as exc:
            return error_reply(400, str(exc))
        if not 1 <= count <= self.max_count:
            return error_reply(400, f"count must be 1..{self.max_count}")
        ids = self._marks[user]
        start = 0 if before is None else next((n for n, i in enumerate(ids) if i < before), len(ids))
        chosen = ids[start : start + count]
        more = start + count < len(ids)
        self.stats.page_served(user, [str(i) for i in chosen])
        body = {
            "data": [dict(self._tweets[i]) for i in chosen],
            "next_cursor": encode_cursor(chosen[-1]) if chosen and more else None,
        }
        return Reply(200, body)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A local bookmarks API for trying the bookmark crawler.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    parser.add_argument("--users", default="alice,bob", help="comma-separated user names")
    parser.add_argument("--count", type=int, default=500, help="bookmarks per user")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--revoked", default="", help="comma-separated users whose tokens start revoked")
    fault_arguments(parser)
    args = parser.parse_args(argv)
    users = [u for u in args.users.split(",") if u]
    server = BookmarksServer(dict.fromkeys(users, args.count), seed=args.seed, faults=fault_plan(args),
                             host=args.host, port=args.port)
    for user in filter(None, args.revoked.split(",")):
        if user not in users:
            parser.error(f"--revoked {user}: not one of --users")
        server.revoke(user)
    tokens = ", ".join(f"{u}: token-{u}" for u in users)
    return serve_until_signal(server, f"(tokens: {tokens})")


if __name__ == "__main__":
    raise SystemExit(main())

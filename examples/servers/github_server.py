"""A local stand-in for the parts of GitHub's REST API a year-end collector pages through.

It has what makes such a collector hard to resume: ``Link``-header paging, a primary rate limit that
answers 403 with ``X-RateLimit-Remaining: 0`` until ``X-RateLimit-Reset``, repos that answer 404/410/451
on one endpoint, issues lists that include pull requests, and (via ``FaultPlan``) 5xx and dropped
connections. The server's clock is injectable so a test can share a fake clock with the client and "wait"
for a rate-limit reset without waiting. Run, e.g.::

    python examples/servers/github_server.py --port 8081 --repos 6 --rate-limit 50 --reset-after 30 \
        --blocked acme/repo-01:pulls:404 --blocked 'acme/repo-03:*:451' --error-rate 0.05
"""

from __future__ import annotations

import argparse
import math
import random
import re
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

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

_START = datetime(2025, 1, 1, tzinfo=timezone.utc)
_REPO_PATH = re.compile(r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/(?P<endpoint>pulls|issues)")
_ORG_PATH = re.compile(r"/orgs/(?P<org>[^/]+)/repos")
_MESSAGES = {
    401: "Bad credentials",
    403: "Resource not accessible by integration",
    404: "Not Found",
    410: "Issues are disabled for this repo",
    451: "Repository access blocked",
}


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def generate_items(repo_id: int, full_name: str, count: int, rng: random.Random) -> list[dict[str, Any]]:
    """Issues and pulls sharing one number space, oldest first; pulls carry ``pull_request`` as on GitHub."""
    items: list[dict[str, Any]] = []
    created = _START
    for number in range(1, count + 1):
        created += timedelta(minutes=rng.randint(1, 600))
        updated = created + timedelta(minutes=rng.randint(0, 60 * 24 * 30))
        closed = rng.random() < 0.7
        item: dict[str, Any] = {
            "id": repo_id * 100_000 + number,
            "number": number,
            "title": f"{rng.choice(('Fix', 'Add', 'Remove', 'Document'))} {rng.choice(('cache', 'login', 'CI'))}",
            "state": "closed" if closed else "open",
            "created_at": _iso(created),
            "updated_at": _iso(updated),
            "closed_at": _iso(updated) if closed else None,
            "user": {"login": rng.choice(("ada", "linus", "grace", "ken"))},
        }
        if rng.random() < 0.45:
            item["pull_request"] = {"url": f"/repos/{full_name}/pulls/{number}"}
        items.append(item)
    return items


def _as_pull(item: Mapping[str, Any]) -> dict[str, Any]:
    """A pull as ``/pulls`` shows it: its own id (not the issue's), no ``pull_request`` key."""
    pull = {k: v for k, v in item.items() if k != "pull_request"}
    pull["id"] = item["id"] + 50_000
    return pull


class GitHubServer(LocalServer):
    """``/orgs/{org}/repos`` and ``/repos/{owner}/{repo}/{pulls,issues}`` for one org of generated repos.

    ``repos`` is a number of repos (item counts drawn from the seed, 0 to a few hundred) or the item
    count of each repo. ``blocked`` maps ``(full_name, endpoint)`` (endpoint ``"*"`` for all) to a status.
    ``rate_limit`` requests are allowed per window of ``reset_after`` seconds of ``clock``.
    """

    def __init__(
        self,
        org: str = "acme",
        repos: int | Sequence[int] = 6,
        *,
        seed: int = 0,
        token: str = "ghp-test-token",
        rate_limit: int | None = None,
        reset_after: float = 60.0,
        clock: Callable[[], float] = time.time,
        blocked: Mapping[tuple[str, str], int] | None = None,
        faults: FaultPlan | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host=host, port=port, faults=faults)
        self.org = org
        self.token = token
        self.rate_limit = rate_limit
        self.reset_after = reset_after
        self.clock = clock
        self.blocked = dict(blocked or {})
        self._used = 0
        self._reset_at: float | None = None
        rng = random.Random(f"{seed}:github")
        sizes = list(repos) if not isinstance(repos, int) else [self._size(rng) for _ in range(repos)]
        self.repos: list[dict[str, Any]] = []
        self.items: dict[str, list[dict[str, Any]]] = {}
        for i, size in enumerate(sizes):
            name = f"repo-{i:02d}"
            full = f"{org}/{name}"
            repo: dict[str, Any] = {
                "id": 1000 + i,
                "name": name,
                "full_name": full,
                "owner": {"login": org},
                "private": False,
            }
            repo["created_at"] = _iso(_START - timedelta(days=30 * (len(sizes) - i)))
            self.repos.append(repo)
            self.items[full] = generate_items(int(repo["id"]), full, size, rng)

    @staticmethod
    def _size(rng: random.Random) -> int:
        return rng.choice((0, rng.randint(1, 40), rng.randint(41, 150), rng.randint(151, 400)))

    def expected(self, full_name: str, endpoint: str, state: str = "all") -> list[dict[str, Any]]:
        """What a complete listing returns (default sort), for tests to compare against."""
        items = self.items[full_name]
        if endpoint == "pulls":
            items = [_as_pull(i) for i in items if "pull_request" in i]
        return sorted((i for i in items if state in ("all", i["state"])), key=lambda i: -i["number"])

    def reset_rate_limit(self) -> None:
        with self.lock:
            self._used, self._reset_at = 0, None

    # --- the protocol ---

    def stats_key(self, request: Request) -> Hashable:
        match = _REPO_PATH.fullmatch(request.path)
        if match:
            return (f"{match['owner']}/{match['repo']}", match["endpoint"])
        match = _ORG_PATH.fullmatch(request.path)
        return (match["org"], "repos") if match else (request.path, "?")

    def authorize(self, request: Request) -> Reply | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if not token:
            return error_reply(401, "Requires authentication")
        if scheme.lower() not in ("bearer", "token") or token != self.token:
            return error_reply(401, "Bad credentials")
        now = self.clock()
        if self._reset_at is None or now >= self._reset_at:
            self._used, self._reset_at = 0, now + self.reset_after
        if self.rate_limit is not None and self._used >= self.rate_limit:
            self.stats.faults["rate-limit"] += 1
            return error_reply(403, "API rate limit exceeded for user ID 1.", self._rate_headers())
        self._used += 1
        return None

    def _rate_headers(self) -> dict[str, str]:
        limit = self.rate_limit if self.rate_limit is not None else 5000
        return {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(max(0, limit - self._used)),
            "X-RateLimit-Reset": str(math.ceil(self._reset_at or self.clock())),
            "X-RateLimit-Used": str(self._used),
        }

    def handle(self, request: Request) -> Reply:
        reply = self._route(request)
        reply.headers.update(self._rate_headers())
        return reply

    def _route(self, request: Request) -> Reply:
        key = self.stats_key(request)
        if isinstance(key, tuple) and key[1] == "repos":
            if key[0] != self.org:
                return error_reply(404, "Not Found")
            return self._page(request, key, self.repos)
        if not isinstance(key, tuple) or key[0] not in self.items:
            return error_reply(404, "Not Found")
        full_name, endpoint = key
        status = self.blocked.get((full_name, endpoint), self.blocked.get((full_name, "*")))
        if status is not None:
            return error_reply(status, _MESSAGES.get(status, "Blocked"))
        try:
            items = self._select(request.query, full_name, endpoint)
        except ValueError as exc:
            return error_reply(422, f"Validation Failed: {exc}")
        return self._page(request, key, items)

    def _select(self, query: Mapping[str, str], full_name: str, endpoint: str) -> list[dict[str, Any]]:
        state = query.get("state", "open")
        items = [i for i in self.expected(full_name, endpoint, state if state in ("open", "closed") else "all")]
        since = query.get("since")
        if since and endpoint == "issues":
            cutoff = datetime.fromisoformat(since.replace("Z", "+00:00"))
            items = [i for i in items if datetime.fromisoformat(i["updated_at"][:-1] + "+00:00") >= cutoff]
        field = "updated_at" if query.get("sort") == "updated" else "created_at"
        return sorted(items, key=lambda i: (i[field], i["number"]), reverse=query.get("direction") != "asc")

    def _page(self, request: Request, key: Hashable, items: list[dict[str, Any]]) -> Reply:
        per_page = min(100, max(1, _int(request.query.get("per_page"), 30)))
        page = max(1, _int(request.query.get("page"), 1))
        last = max(1, math.ceil(len(items) / per_page))
        chunk = items[(page - 1) * per_page : page * per_page]
        self.stats.page_served(key, [str(i.get("number", i["id"])) for i in chunk])
        links = {"prev": page - 1, "first": 1} if page > 1 else {}
        if page < last:
            links.update(next=page + 1, last=last)
        header = ", ".join(f'<{self._url(request, n)}>; rel="{rel}"' for rel, n in links.items())
        return Reply(200, chunk, {"Link": header} if header else {})

    def _url(self, request: Request, page: int) -> str:
        return f"{self.origin}{request.path}?{urlencode({**request.query, 'page': page})}"


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A local GitHub-like API for trying syncpoint offline.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    parser.add_argument("--org", default="acme")
    parser.add_argument("--repos", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--token", default="ghp-test-token")
    parser.add_argument("--rate-limit", type=int, default=None, help="requests per window")
    parser.add_argument("--reset-after", type=float, default=60.0, help="rate-limit window, seconds")
    parser.add_argument("--blocked", action="append", default=[], metavar="OWNER/REPO:ENDPOINT:STATUS",
                        help="answer that repo's endpoint (pulls, issues, or * for both) STATUS, e.g. "
                             "acme/repo-01:pulls:404 (repeatable)")
    fault_arguments(parser)
    args = parser.parse_args(argv)
    blocked: dict[tuple[str, str], int] = {}
    for value in args.blocked:
        repo, _, rest = value.partition(":")
        endpoint, _, status = rest.partition(":")
        if not repo or endpoint not in ("pulls", "issues", "*") or not status.isdigit():
            parser.error(f"--blocked: expected OWNER/REPO:pulls|issues|*:STATUS, got {value!r}")
        blocked[(repo, endpoint)] = int(status)
    server = GitHubServer(
        args.org,
        args.repos,
        seed=args.seed,
        token=args.token,
        rate_limit=args.rate_limit,
        reset_after=args.reset_after,
        blocked=blocked,
        faults=fault_plan(args),
        host=args.host,
        port=args.port,
    )
    return serve_until_signal(server, f"(org {args.org}, token: {args.token})")


if __name__ == "__main__":
    raise SystemExit(main())

"""A local stand-in for the Bundestag DIP API, with the properties that make resuming a DIP sync hard.

Documents come newest first by ``aktualisiert``, in long runs of equal timestamps that page boundaries cut
through, with ``+01:00``/``+02:00`` offsets on either side of a DST switch (compare instants, not
strings); the cursor is a stateless token, valid across restarts; faults are deterministic; and the server
counts what it served, so a test can bound how much a resumed sync fetched twice.

Built on ``syncpoint.testing.server`` (``LocalServer``, ``FaultPlan``, ``ServerStats``), like the other
stand-ins here. Run ``python examples/servers/dip_server.py --port 8080 --count 5000``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import bisect
import functools
import json
import math
import random
import re
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from datetime import time as dtime
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

ENDPOINTS = (
    "person",
    "vorgang",
    "vorgangsposition",
    "aktivitaet",
    "drucksache",
    "drucksache-text",
    "plenarprotokoll",
    "plenarprotokoll-text",
)
_TYP = {"person": "Person", "vorgang": "Vorgang", "vorgangsposition": "Vorgangsposition", "aktivitaet": "Aktivität"}
_NEWEST = datetime(2024, 4, 5, 8, 0, 0, tzinfo=timezone.utc)  # a few days after a DST switch
_WORDS = ("Antrag", "Gesetz", "Bericht", "Anfrage", "Haushalt", "Energie", "Verkehr", "Bildung", "Klima", "Rente")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class BadRequest(Exception):
    pass


def _last_sunday(year: int, month: int) -> date:
    last = date(year, month + 1, 1) - timedelta(days=1)
    return last - timedelta(days=(last.weekday() + 1) % 7)


def berlin_offset(instant: datetime) -> timedelta:
    """Europe/Berlin's UTC offset at an instant (EU rules; no tz database needed)."""
    utc = instant.astimezone(timezone.utc)
    start = datetime.combine(_last_sunday(utc.year, 3), dtime(1), timezone.utc)
    end = datetime.combine(_last_sunday(utc.year, 10), dtime(1), timezone.utc)
    return timedelta(hours=2 if start <= utc < end else 1)


def berlin_iso(epoch: float) -> str:
    instant = datetime.fromtimestamp(epoch, timezone.utc)
    return instant.astimezone(timezone(berlin_offset(instant))).isoformat()


def _berlin_midnight(day: date) -> datetime:
    guess = datetime.combine(day, dtime(0), timezone(timedelta(hours=1)))
    return datetime.combine(day, dtime(0), timezone(berlin_offset(guess)))


def parse_instant(value: str, *, end: bool = False) -> datetime:
    """A filter bound: a date (Berlin day; as an end, the whole day) or an ISO datetime (naive = Berlin)."""
    if _DATE.fullmatch(value):
        try:
            day = date.fromisoformat(value)
        except ValueError as exc:
            raise BadRequest(f"invalid date {value!r}") from exc
        if end:
            return _berlin_midnight(day + timedelta(days=1)) - timedelta(microseconds=1)
        return _berlin_midnight(day)
    try:
        parsed = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)
    except ValueError as exc:
        raise BadRequest(f"invalid date or datetime {value!r}") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone(berlin_offset(parsed.replace(tzinfo=timezone.utc))))
    return parsed


def _parse_day(value: str) -> date:
    try:
        return parse_instant(value).date() if not _DATE.fullmatch(value) else date.fromisoformat(value)
    except ValueError as exc:
        raise BadRequest(f"invalid date {value!r}") from exc


def encode_cursor(epoch: float, doc_id: int) -> str:
    raw = json.dumps([epoch, doc_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, int]:
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        epoch, doc_id = value
        if not isinstance(epoch, (int, float)) or not isinstance(doc_id, int):
            raise ValueError(cursor)
        return float(epoch), doc_id
    except (ValueError, TypeError, binascii.Error) as exc:
        raise BadRequest(f"invalid cursor {cursor!r}") from exc


def _run_length(rng: random.Random) -> int:
    roll = rng.random()
    if roll < 0.5:
        return rng.randint(1, 3)
    return rng.randint(4, 40) if roll < 0.8 else rng.randint(41, 250)


def _gap(rng: random.Random) -> int:
    roll = rng.random()
    if roll < 0.4:
        return rng.randint(1, 59)
    return rng.randint(60, 3600) if roll < 0.8 else rng.randint(3600, 2 * 86400)


def make_document(endpoint: str, doc_id: int, aktualisiert: str, rng: random.Random) -> dict[str, Any]:
    draw = int(rng.random() * 1_000_000)  # one draw per document keeps big data sets quick to build
    words = [_WORDS[(draw // 10**k) % len(_WORDS)] for k in range(3)]
    doc: dict[str, Any] = {
        "id": str(doc_id),
        "typ": _TYP.get(endpoint, "Dokument"),
        "aktualisiert": aktualisiert,
        "datum": (date.fromisoformat(aktualisiert[:10]) - timedelta(days=draw % 61)).isoformat(),
        "titel": " ".join(words),
        "wahlperiode": 20,
    }
    if endpoint == "person":
        doc.update(vorname=("Anna", "Jonas", "Leyla", "Petra")[draw % 4], nachname=words[0])
        doc["titel"] = f"{doc['vorname']} {doc['nachname']}, MdB"
    elif endpoint.startswith(("drucksache", "plenarprotokoll")):
        doc["dokumentnummer"] = f"20/{doc_id % 20000}"
        doc["herausgeber"] = "BT"
    if endpoint.endswith("-text"):
        doc["text"] = " ".join(words * 4)
    return doc


def generate_documents(endpoint: str, count: int, seed: int = 0) -> list[dict[str, Any]]:
    """Newest first, in runs of 1-250 equal timestamps, ids unique and unrelated to time."""
    rng = random.Random(f"{seed}:{endpoint}")
    ids = rng.sample(range(1, 20 * count + 1000), count)
    epoch = _NEWEST.timestamp()
    docs: list[dict[str, Any]] = []
    while len(docs) < count:
        aktualisiert = berlin_iso(epoch)
        for _ in range(min(_run_length(rng), count - len(docs))):
            docs.append(make_document(endpoint, ids[len(docs)], aktualisiert, rng))
        epoch -= _gap(rng)
    return docs


Key = tuple[float, float]  # (-epoch, -id): ascending order = newest first, ties by id descending


class _Collection:
    def __init__(self, docs: Iterable[dict[str, Any]]) -> None:
        self.docs: dict[str, dict[str, Any]] = {}
        self.keys: list[Key] = []
        self.version = 0
        for doc in docs:
            self.docs[doc["id"]] = doc
        self.keys = sorted(_key(doc) for doc in self.docs.values())

    def put(self, doc: dict[str, Any]) -> None:
        if not isinstance(doc.get("id"), str) or str(int(doc["id"])) != doc["id"]:
            raise ValueError(f"document id must be a string of digits without leading zeros: {doc.get('id')!r}")
        old = self.docs.get(doc["id"])
        if old is not None:
            del self.keys[bisect.bisect_left(self.keys, _key(old))]
        self.docs[doc["id"]] = doc
        bisect.insort(self.keys, _key(doc))
        self.version += 1

    def delete(self, doc_id: str) -> None:
        old = self.docs.pop(doc_id)
        del self.keys[bisect.bisect_left(self.keys, _key(old))]
        self.version += 1

    def doc_at(self, key: Key) -> dict[str, Any]:
        return self.docs[str(int(-key[1]))]


def _key(doc: Mapping[str, Any]) -> Key:
    return (-_epoch(doc["aktualisiert"]), -int(doc["id"]))


@functools.lru_cache(maxsize=1 << 16)
def _epoch(aktualisiert: str) -> float:
    return parse_instant(aktualisiert).timestamp()


@dataclass(frozen=True)
class _Query:
    start: float = -math.inf
    end: float = math.inf
    datum_start: date = date.min
    datum_end: date = date.max

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> _Query:
        get = query.get
        fmt = get("format", "json")
        if fmt != "json":
            raise BadRequest(f"unsupported format {fmt!r}; this server speaks format=json")
        start, end = get("f.aktualisiert.start"), get("f.aktualisiert.end")
        ds, de = get("f.datum.start"), get("f.datum.end")
        return cls(
            parse_instant(start).timestamp() if start else -math.inf,
            parse_instant(end, end=True).timestamp() if end else math.inf,
            _parse_day(ds) if ds else date.min,
            _parse_day(de) if de else date.max,
        )

    def matches(self, doc: Mapping[str, Any]) -> bool:
        return self.datum_start <= date.fromisoformat(doc["datum"]) <= self.datum_end


class DipServer(LocalServer):
    """DIP's list and detail endpoints under ``/api/v1``, ``count`` documents per endpoint."""

    base_path = "/api/v1"

    def __init__(
        self,
        count: int | Mapping[str, int] = 1000,
        *,
        seed: int = 0,
        api_key: str = "dip-test-key",
        page_size: int = 100,
        faults: FaultPlan | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host=host, port=port, faults=faults)
        self.api_key = api_key
        self.page_size = page_size
        self.seed = seed
        counts = count if isinstance(count, Mapping) else dict.fromkeys(ENDPOINTS, count)
        self._collections = {e: _Collection(generate_documents(e, counts.get(e, 0), seed)) for e in ENDPOINTS}
        self._num_found: dict[tuple[Any, ...], int] = {}

    # --- what tests read and change ---

    def documents(self, endpoint: str, params: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        """What a full sync should receive, in served order; ``params`` are the query's filters."""
        with self.lock:
            query = _Query.parse(params or {})
            return [dict(d) for d in self._scan(endpoint, query, 0, None)]

    def put(self, endpoint: str, doc: Mapping[str, Any]) -> None:
        """Insert or replace a document (it moves to its new ``aktualisiert`` position)."""
        with self.lock:
            self._collections[endpoint].put(dict(doc))

    def touch(self, endpoint: str, doc_id: str, aktualisiert: str | None = None) -> dict[str, Any]:
        """Change a document as DIP does on an edit: a new ``aktualisiert`` (default: newer than all)."""
        with self.lock:
            doc = dict(self._collections[endpoint].docs[doc_id])
            doc["aktualisiert"] = aktualisiert or berlin_iso(self._after_newest(endpoint))
            doc["titel"] = doc["titel"] + " (geändert)"
            self._collections[endpoint].put(doc)
            return dict(doc)

    def add(self, endpoint: str, count: int = 1, aktualisiert: str | None = None) -> list[dict[str, Any]]:
        """New documents sharing one timestamp (default: newer than all), with fresh ids."""
        with self.lock:
            coll = self._collections[endpoint]
            rng = random.Random(f"{self.seed}:{endpoint}:add:{coll.version}")
            epoch = parse_instant(aktualisiert).timestamp() if aktualisiert else self._after_newest(endpoint)
            first = max((int(i) for i in coll.docs), default=0) + 1
            docs = [make_document(endpoint, first + i, berlin_iso(epoch), rng) for i in range(count)]
            for doc in docs:
                coll.put(doc)
            return [dict(d) for d in docs]

    def delete(self, endpoint: str, doc_id: str) -> None:
        with self.lock:
            self._collections[endpoint].delete(doc_id)

    def _after_newest(self, endpoint: str) -> float:
        keys = self._collections[endpoint].keys
        return (-keys[0][0] if keys else _NEWEST.timestamp()) + 1

    # --- the protocol ---

    def stats_key(self, request: Request) -> Hashable:
        rest = request.path[len(self.base_path) + 1 :] if request.path.startswith(self.base_path + "/") else ""
        return rest.split("/")[0] if rest.split("/")[0] in ENDPOINTS else request.path

    def authorize(self, request: Request) -> Reply | None:
        header = request.headers.get("authorization", "")
        if header == f"ApiKey {self.api_key}" or request.query.get("apikey") == self.api_key:
            return None
        return error_reply(401, "Unauthorized: missing or invalid API key (Authorization: ApiKey …)")

    def handle(self, request: Request) -> Reply:
        parts = request.path[len(self.base_path) :].strip("/").split("/")
        if not request.path.startswith(self.base_path + "/") or parts[0] not in ENDPOINTS or len(parts) > 2:
            return error_reply(404, f"no such endpoint {request.path}")
        try:
            if len(parts) == 2:
                return self._detail(parts[0], parts[1])
            return self._list(parts[0], request.query)
        except BadRequest as exc:
            return error_reply(400, str(exc))

    def _detail(self, endpoint: str, doc_id: str) -> Reply:
        doc = self._collections[endpoint].docs.get(doc_id)
        if doc is None:
            return error_reply(404, f"{endpoint} {doc_id} not found")
        self.stats.page_served(endpoint, [doc_id])
        return Reply(200, doc)

    def _list(self, endpoint: str, params: Mapping[str, str]) -> Reply:
        query = _Query.parse(params)
        sent = params.get("cursor") or None
        position = None if sent in (None, "*") else decode_cursor(sent)
        start = 0
        if position is not None:
            start = bisect.bisect_right(self._collections[endpoint].keys, (-position[0], -position[1]))
        docs = list(self._scan(endpoint, query, start, self.page_size))
        cursor = sent or "*"
        if docs:
            cursor = encode_cursor(*_epoch_id(docs[-1]))
        self.stats.page_served(endpoint, [d["id"] for d in docs])
        body = {"numFound": self._count(endpoint, query), "cursor": cursor, "documents": docs}
        return Reply(200, body)

    def _scan(self, endpoint: str, query: _Query, start: int, limit: int | None) -> Iterable[dict[str, Any]]:
        """Matching documents from index ``start`` on, newest first; the time filter bounds the walk."""
        coll = self._collections[endpoint]
        start = max(start, bisect.bisect_left(coll.keys, (-query.end, -math.inf)))
        found = 0
        for key in coll.keys[start:]:
            if -key[0] < query.start or (limit is not None and found >= limit):
                return
            doc = coll.doc_at(key)
            if query.matches(doc):
                found += 1
                yield doc

    def _count(self, endpoint: str, query: _Query) -> int:
        cache_key = (endpoint, self._collections[endpoint].version, query)
        if cache_key not in self._num_found:
            if len(self._num_found) > 1000:
                self._num_found.clear()
            self._num_found[cache_key] = sum(1 for _ in self._scan(endpoint, query, 0, None))
        return self._num_found[cache_key]


def _epoch_id(doc: Mapping[str, Any]) -> tuple[float, int]:
    return _epoch(doc["aktualisiert"]), int(doc["id"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A local DIP-like API for trying syncpoint without the internet.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    parser.add_argument("--count", type=int, default=1000, help="documents per endpoint")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--api-key", default="dip-test-key")
    fault_arguments(parser)
    args = parser.parse_args(argv)
    server = DipServer(args.count, seed=args.seed, api_key=args.api_key, faults=fault_plan(args), host=args.host,
                       port=args.port)
    return serve_until_signal(server, f"(api key: {args.api_key})")


if __name__ == "__main__":
    raise SystemExit(main())

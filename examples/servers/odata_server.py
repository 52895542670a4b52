"""A local stand-in for the Tweede Kamer's OData v4 API (``gegevensmagazijn.tweedekamer.nl/OData/v4/2.0``).

Entities ``Zaak``, ``Document``, ``Vergadering``, ``Agendapunt``, ``Activiteit``, each a list of records
``{"Id": <guid>, "GewijzigdOp": "…Z", …}`` ordered by ``GewijzigdOp`` then ``Id``. Supported:

    GET {base}/{Entity}?$filter=GewijzigdOp ge 2024-06-01T00:00:00Z&$top=N&$skip=M&$count=true
    GET {base}/{Entity}({Id})                    one record, or 404

A list answer is ``{"value": [...], "@odata.nextLink": "<absolute URL>", "@odata.count": N}`` (the count only
with ``$count=true``; the next link only when more records follow). Tests can serve a few records
malformed (``malform``; ``fix`` serves them whole again) and make a whole entity fail (``fail_entity``).
Faults (``FaultPlan``) and served counts (``ServerStats``, keyed by entity) come from ``syncpoint.testing.server``. Run
``python examples/servers/odata_server.py --port 8082 --count 1000 --malform Zaak:3 --fail-entity Agendapunt:404``
and point ``examples/tk_loader.py --base-url http://127.0.0.1:8082/OData/v4/2.0`` at it.
"""

from __future__ import annotations

import argparse
import random
import re
import uuid
from collections.abc import Hashable, Mapping, Sequence
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

ENTITIES = ("Zaak", "Document", "Vergadering", "Agendapunt", "Activiteit")
_OLDEST = datetime(2024, 1, 1, tzinfo=timezone.utc)
_FILTER = re.compile(r"^\s*GewijzigdOp\s+(ge|gt)\s+(\S+)\s*$")
_SINGLE = re.compile(r"^([A-Za-z]+)\((?:guid')?'?([^')]+)'?\)$")
_WORDS = ("motie", "wet", "begroting", "stikstof", "wonen", "zorg", "onderwijs", "defensie", "klimaat", "asiel")


def iso(instant: datetime) -> str:
    return instant.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_iso(value: str) -> datetime:
    parsed = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def make_record(entity: str, n: int, rng: random.Random, when: datetime) -> dict[str, Any]:
    words = [_WORDS[rng.randrange(len(_WORDS))] for _ in range(3)]
    record: dict[str, Any] = {
        "Id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "GewijzigdOp": iso(when),
        "ApiGewijzigdOp": iso(when),
        "Verwijderd": False,
    }
    if entity == "Zaak":
        record.update(Nummer=f"2024Z{n:05d}", Onderwerp=" ".join(words), Soort="Motie")
    elif entity == "Document":
        record.update(DocumentNummer=f"2024D{n:05d}", Titel=" ".join(words), Soort="Brief regering")
    elif entity == "Vergadering":
        record.update(Titel=f"{n}e vergadering", Soort="Plenair", Datum=iso(when)[:10])
    elif entity == "Agendapunt":
        record.update(Nummer=str(n), Onderwerp=" ".join(words))
    else:
        record.update(Nummer=f"2024A{n:05d}", Onderwerp=" ".join(words), Soort="Commissiedebat")
    return record


def generate(entity: str, count: int, seed: int = 0) -> list[dict[str, Any]]:
    """``count`` records in served order; a few share a timestamp."""
    rng = random.Random(f"{seed}:{entity}")
    when = _OLDEST
    records = []
    for n in range(count):
        if rng.random() > 0.2:
            when += timedelta(seconds=rng.randint(1, 7200))
        records.append(make_record(entity, n + 1, rng, when))
    return records


def _order(record: Mapping[str, Any]) -> tuple[str, str]:
    return str(record["GewijzigdOp"]), str(record["Id"])


class ODataServer(LocalServer):
    """The five TK entities under ``/OData/v4/2.0``, ``count`` records each (a mapping gives per-entity counts)."""

    base_path = "/OData/v4/2.0"

    def __init__(
        self,
        count: int | Mapping[str, int] = 200,
        *,
        seed: int = 0,
        page_size: int = 50,
        faults: FaultPlan | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host=host, port=port, faults=faults)
        self.page_size = page_size
        counts = count if isinstance(count, Mapping) else dict.fromkeys(ENTITIES, count)
        self.records: dict[str, list[dict[str, Any]]] = {
            e: sorted(generate(e, counts.get(e, 0), seed), key=_order) for e in ENTITIES
        }
        self.malformed: dict[str, set[str]] = {e: set() for e in ENTITIES}
        self.failing: dict[str, int] = {}

    # --- what tests read and change ---

    def expected(self, entity: str, since: str | None = None) -> dict[str, dict[str, Any]]:
        """The well-formed records a full load should hold, by Id."""
        with self.lock:
            return {r["Id"]: dict(r) for r in self._matching(entity, since) if r["Id"] not in self.malformed[entity]}

    def malform(self, entity: str, ids: Sequence[str]) -> None:
        """Serve these records with a ``GewijzigdOp`` no loader can parse."""
        with self.lock:
            self.malformed[entity].update(ids)

    def fix(self, entity: str, ids: Sequence[str] | None = None) -> None:
        with self.lock:
            if ids is None:
                self.malformed[entity].clear()
            else:
                self.malformed[entity].difference_update(ids)

    def fail_entity(self, entity: str, status: int | None) -> None:
        """Answer every request for ``entity`` with ``status`` (``None``: answer normally again)."""
        with self.lock:
            if status is None:
                self.failing.pop(entity, None)
            else:
                self.failing[entity] = status

    # --- the protocol ---

    def stats_key(self, request: Request) -> Hashable:
        rest = request.path[len(self.base_path) + 1 :] if request.path.startswith(self.base_path + "/") else ""
        name = rest.split("(")[0]
        return name if name in ENTITIES else request.path

    def handle(self, request: Request) -> Reply:
        if not request.path.startswith(self.base_path + "/"):
            return error_reply(404, f"no such path {request.path}")
        rest = request.path[len(self.base_path) + 1 :]
        single = _SINGLE.match(rest)
        entity = single.group(1) if single else rest
        if entity not in ENTITIES:
            return error_reply(404, f"Resource not found for the segment '{rest}'")
        if entity in self.failing:
            status = self.failing[entity]
            return error_reply(status, f"{entity} unavailable ({status})")
        if single:
            return self._single(entity, single.group(2))
        try:
            return self._list(entity, request.query)
        except ValueError as exc:
            return error_reply(400, f"bad query: {exc}")

    def _serve_record(self, entity: str, record: Mapping[str, Any]) -> dict[str, Any]:
        served = dict(record)
        if record["Id"] in self.malformed[entity]:
            served["GewijzigdOp"] = "gisteren"
        return served

    def _single(self, entity: str, record_id: str) -> Reply:
        for record in self.records[entity]:
            if record["Id"] == record_id:
                self.stats.page_served(entity, [record_id])
                return Reply(200, self._serve_record(entity, record))
        return error_reply(404, f"{entity}({record_id}) not found")

    def _matching(self, entity: str, since: str | None, strict: bool = False) -> list[dict[str, Any]]:
        records = self.records[entity]
        if since is None:
            return records
        bound = parse_iso(since)
        return [r for r in records if (parse_iso(r["GewijzigdOp"]) > bound if strict
                                       else parse_iso(r["GewijzigdOp"]) >= bound)]

    def _list(self, entity: str, query: Mapping[str, str]) -> Reply:
        since, strict = None, False
        if query.get("$filter"):
            found = _FILTER.match(query["$filter"])
            if not found:
                raise ValueError(f"unsupported $filter {query['$filter']!r} (only 'GewijzigdOp ge|gt <datetime>')")
            strict, since = found.group(1) == "gt", found.group(2)
        top = min(int(query.get("$top", self.page_size)), self.page_size)
        skip = int(query.get("$skip", 0))
        if top <= 0 or skip < 0:
            raise ValueError("$top must be positive and $skip not negative")
        matching = self._matching(entity, since, strict)
        page = [self._serve_record(entity, r) for r in matching[skip : skip + top]]
        body: dict[str, Any] = {"@odata.context": f"{self.url}/$metadata#{entity}", "value": page}
        if query.get("$count") == "true":
            body["@odata.count"] = len(matching)
        if skip + top < len(matching):
            params = {k: v for k, v in query.items() if k not in ("$skip", "$top")}
            params.update({"$top": str(top), "$skip": str(skip + top)})
            body["@odata.nextLink"] = f"{self.url}/{entity}?{urlencode(params)}"
        self.stats.page_served(entity, [r["Id"] for r in page])
        return Reply(200, body)


def _pair(value: str, what: str) -> tuple[str, int]:
    name, sep, number = value.rpartition(":")
    if not sep or not number.isdigit():
        raise argparse.ArgumentTypeError(f"expected {what}, got {value!r}")
    return name, int(number)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A local Tweede Kamer OData API for trying the TK loader offline.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    parser.add_argument("--count", type=int, default=200, help="records per entity")
    parser.add_argument("--page-size", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--malform", action="append", default=[], metavar="ENTITY:N",
                        type=lambda v: _pair(v, "ENTITY:N"), help="serve N records of ENTITY malformed (repeatable)")
    parser.add_argument("--fail-entity", action="append", default=[], metavar="ENTITY:STATUS",
                        type=lambda v: _pair(v, "ENTITY:STATUS"), help="answer every ENTITY request STATUS")
    fault_arguments(parser)
    args = parser.parse_args(argv)
    server = ODataServer(args.count, seed=args.seed, page_size=args.page_size, faults=fault_plan(args),
                         host=args.host, port=args.port)
    for entity, _ in args.malform + args.fail_entity:
        if entity not in ENTITIES:
            parser.error(f"unknown entity {entity!r}; choose from {', '.join(ENTITIES)}")
    for entity, count in args.malform:
        server.malform(entity, [r["Id"] for r in server.records[entity][:count]])
    for entity, status in args.fail_entity:
        server.fail_entity(entity, status)
    return serve_until_signal(server, f"(entities: {', '.join(ENTITIES)})")


if __name__ == "__main__":
    raise SystemExit(main())

"""What every handler needs: the store, the templates, the options the server was started with."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse

from syncpoint import codec
from syncpoint.model import RunRecord, utcnow
from syncpoint.report import clock
from syncpoint.stores.base import Store
from syncpoint.web.cache import TtlCache
from syncpoint.web.security import new_secret


@dataclass
class Dashboard:
    store: Store
    allow_actions: bool = False
    poll_seconds: float = 1.0
    csrf: str = field(default_factory=new_secret)
    templates: jinja2.Environment = field(init=False)
    #: a run's view (data.run_view + its samples) read at most every half second, however many pages poll it
    runs: TtlCache[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=lambda: TtlCache(0.5))
    #: /metrics computed at most once a second, however many scrapers ask
    metrics: TtlCache[bytes] = field(default_factory=lambda: TtlCache(1.0, size=1))

    def run_data(self, run: RunRecord) -> tuple[dict[str, Any], dict[str, Any]]:
        """(``run_view``, ``history``) of a run, sharing one read of its samples."""
        from syncpoint.web import data

        def read() -> tuple[dict[str, Any], dict[str, Any]]:
            samples = self.store.get_samples(run.run_id)
            return data.run_view(self.store, run, samples), data.history(self.store, run, samples)

        return self.runs.get(run.run_id, read)

    def __post_init__(self) -> None:
        env = jinja2.Environment(
            loader=jinja2.PackageLoader("syncpoint.web", "templates"),
            autoescape=True,  # every value shown is escaped: job names, errors, item IDs, config values
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.filters.update(clock=_clock, ago=_ago, num=_num, pretty=_pretty, short=_short, when=_when)
        self.templates = env

    def page(self, request: Request, name: str, status: int = 200, **values: Any) -> HTMLResponse:
        html = self.templates.get_template(name).render(
            request=request, actions=self.allow_actions, csrf=self.csrf, location=self._location(), **values
        )
        return HTMLResponse(html, status_code=status)

    def _location(self) -> str:
        from syncpoint.stores import mask_url

        return mask_url(self.store.location)


def json_response(value: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(value, status_code=status)


def _parse(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value
    return codec.parse_ts(str(value))


DASH = "\u2013"  # shown for "no value"


def _clock(seconds: float | None) -> str:
    return DASH if seconds is None else clock(seconds)


def _ago(value: Any) -> str:
    moment = _parse(value)
    if moment is None:
        return "never"
    seconds = (utcnow() - moment).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{max(seconds, 0):.0f} s ago"


def _when(value: Any) -> str:
    moment = _parse(value)
    return "" if moment is None else moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _num(value: float | int | None) -> str:
    if value is None:
        return DASH
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}"
    return f"{int(value):,}"


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def _short(value: Any, width: int = 80) -> str:
    text = codec.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= width else text[: width - 1] + "…"

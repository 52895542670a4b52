"""The dashboard: ``syncpoint serve`` — jobs, runs, history, ``/api/...`` and Prometheus ``/metrics``.

Needs the web extra (``pip install 'syncpoint[web]'``: Starlette, uvicorn, Jinja2, prometheus-client);
``import syncpoint`` and the rest of the CLI never import this package. Modules, one job each:

    data       what is shown, as JSON-ready dicts (pages and API share them)
    charts     inline SVG geometry
    context    the store, templates and options handlers share
    api        /api/... and /metrics handlers
    views      the HTML pages and the confirmed actions
    metrics    the Prometheus collector that reads the store at each scrape
    exporter   ``--metrics-port``: a job's own process serves its metrics
    security   where it may listen, the token, security headers
    app        routes → ``create_app(store)``
    server     ``serve(...)``: uvicorn on a socket bound by us
"""

from __future__ import annotations

import importlib.util

from syncpoint.errors import SyncpointError

REQUIRED = ("starlette", "uvicorn", "jinja2", "prometheus_client")


class MissingExtra(SyncpointError):
    """The web extra is not installed (exit 1)."""


def require() -> None:
    """Raise ``MissingExtra`` (one line naming the fix) unless the web extra's packages are importable."""
    missing = [name for name in REQUIRED if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingExtra(
            f"the dashboard needs {', '.join(missing)}: pip install 'syncpoint[web]'"
        )

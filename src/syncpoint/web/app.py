"""The dashboard as an ASGI app: routes, error pages, the guard. ``create_app(store)`` and serve it.

    /                       jobs                  /api/jobs
    /jobs/{job}             one job's runs        /api/jobs/{job}/runs, /api/jobs/{job}/state
    /runs/{run_id}          one run               /api/runs/{run_id}, .../failed, .../history
    /metrics                Prometheus text format
    /static/...             the page's CSS and its one small script

With ``allow_actions``: GET /runs/{id}/delete and /jobs/{job}/reset show a confirmation page whose form
POSTs to the same URL (see ``syncpoint.web.security``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib import resources
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from syncpoint.errors import SyncpointError
from syncpoint.stores.base import Store
from syncpoint.web.api import Api, NotFound, api_error
from syncpoint.web.context import Dashboard
from syncpoint.web.security import Guard
from syncpoint.web.views import ReadOnly, Views, page_error

Handler = Callable[[Request], Response]
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".png": "image/png"}


def create_app(
    store: Store, *, token: str | None = None, allow_actions: bool = False, poll_seconds: float = 1.0
) -> Guard:
    """The dashboard over ``store``; with ``token``, every request must carry it."""
    dash = Dashboard(store, allow_actions=allow_actions, poll_seconds=poll_seconds)
    api, views = Api(dash), Views(dash)

    def html(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        return _endpoint(handler, lambda request, exc: page_error(dash, request, exc))

    def as_json(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        return _endpoint(handler, api_error)

    routes = [
        Route("/", html(views.jobs)),
        Route("/jobs/{job}", html(views.job)),
        Route("/jobs/{job}/reset", html(views.confirm_reset), methods=["GET"]),
        Route("/jobs/{job}/reset", html(views.reset), methods=["POST"]),
        Route("/runs/{run_id}", html(views.run)),
        Route("/runs/{run_id}/delete", html(views.confirm_delete), methods=["GET"]),
        Route("/runs/{run_id}/delete", html(views.delete), methods=["POST"]),
        Route("/api/jobs", as_json(api.jobs)),
        Route("/api/jobs/{job}/runs", as_json(api.job_runs)),
        Route("/api/jobs/{job}/state", as_json(api.job_state)),
        Route("/api/runs/{run_id}", as_json(api.run)),
        Route("/api/runs/{run_id}/failed", as_json(api.failed)),
        Route("/api/runs/{run_id}/history", as_json(api.history)),
        Route("/metrics", as_json(api.metrics)),
        Route("/static/{name}", static),
    ]
    return Guard(Starlette(routes=routes), token)


def _endpoint(
    handler: Handler, on_error: Callable[[Request, Exception], Response]
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        if request.method == "POST":
            body = (await request.body())[:65536].decode("utf-8", "replace")
            request.state.form = dict(parse_qsl(body, keep_blank_values=True))
        try:
            return await run_in_threadpool(handler, request)
        except (NotFound, ReadOnly, SyncpointError) as exc:
            return await run_in_threadpool(on_error, request, exc)

    return endpoint


async def static(request: Request) -> Response:
    name = request.path_params["name"]
    kind = next((t for ext, t in STATIC_TYPES.items() if name.endswith(ext)), None)
    folder = resources.files("syncpoint.web") / "static"
    if kind is None or "/" in name or name.startswith(".") or not (folder / name).is_file():
        return Response("not found\n", status_code=404, media_type="text/plain")
    return Response((folder / name).read_bytes(), media_type=kind,
                    headers={"cache-control": "max-age=300"})

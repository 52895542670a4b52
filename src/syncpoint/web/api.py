"""``/api/...``: the dashboard's data as JSON (shapes in docs/DASHBOARD.md), and ``/metrics``.

Every handler is a plain function: Starlette runs it in its thread pool, so a slow store read never
blocks the event loop, and the store's own lock orders the reads.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from syncpoint import codec
from syncpoint.errors import InvalidName, SyncpointError
from syncpoint.model import RunRecord
from syncpoint.names import check_job_name
from syncpoint.web import data
from syncpoint.web.context import Dashboard, json_response
from syncpoint.web.metrics import StoreCollector

MAX_LIMIT = 500


class NotFound(Exception):
    """An unknown run or job: 404 with one line saying which."""


def find_run(dash: Dashboard, run_id: str) -> RunRecord:
    run = dash.store.get_run(run_id)
    if run is None:
        raise NotFound(f"no run {run_id!r} in this store")
    return run


def find_job(dash: Dashboard, job: str) -> str:
    try:
        check_job_name(job)
    except InvalidName as exc:
        raise NotFound(str(exc)) from None
    if job not in dash.store.list_jobs():
        raise NotFound(f"no job {job!r} in this store")
    return job


def int_param(request: Request, name: str, default: int, low: int = 0, high: int = MAX_LIMIT) -> int:
    raw = request.query_params.get(name)
    try:
        value = default if raw is None or raw == "" else int(raw)
    except ValueError:
        return default
    return max(low, min(high, value))


def failed_query(dash: Dashboard, request: Request, run: RunRecord) -> dict[str, Any]:
    tasks = dash.store.get_tasks(run.run_id)
    task = request.query_params.get("task") or None
    return data.failed_page(
        dash.store, run.run_id, tasks, task=task, query=request.query_params.get("q", "")[:200],
        offset=int_param(request, "offset", 0, high=10**9), limit=int_param(request, "limit", data.FAILED_PAGE, 1),
    )


class Api:
    def __init__(self, dash: Dashboard) -> None:
        self.dash = dash
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(StoreCollector(dash.store))

    def jobs(self, request: Request) -> JSONResponse:
        limit = request.query_params.get("limit")
        return json_response(data.jobs_overview(
            self.dash.store, offset=int_param(request, "offset", 0, high=10**9),
            limit=None if not limit else int_param(request, "limit", data.JOBS_PAGE, 1, 10**6),
            query=request.query_params.get("q", "")[:200],
        ))

    def job_runs(self, request: Request) -> JSONResponse:
        job = find_job(self.dash, request.path_params["job"])
        return json_response(data.job_runs(self.dash.store, job, int_param(request, "limit", 50, 1)))

    def job_state(self, request: Request) -> JSONResponse:
        job = find_job(self.dash, request.path_params["job"])
        return json_response({"job": job, "state": [codec.state_to_dict(s) for s in self.dash.store.get_state(job)]})

    def run(self, request: Request) -> JSONResponse:
        return json_response(self.dash.run_data(find_run(self.dash, request.path_params["run_id"]))[0])

    def failed(self, request: Request) -> JSONResponse:
        run = find_run(self.dash, request.path_params["run_id"])
        return json_response(failed_query(self.dash, request, run))

    def history(self, request: Request) -> JSONResponse:
        return json_response(self.dash.run_data(find_run(self.dash, request.path_params["run_id"]))[1])

    def metrics(self, request: Request) -> Response:
        body = self.dash.metrics.get("metrics", lambda: generate_latest(self.registry))
        return Response(body, media_type=CONTENT_TYPE_LATEST)


def api_error(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, NotFound):
        return json_response({"error": str(exc)}, 404)
    if isinstance(exc, SyncpointError):
        return json_response({"error": str(exc)}, 503)
    raise exc

"""The HTML pages: jobs, one job's history, one run, and the confirmation pages of the actions.

Each page renders the same dicts as its ``/api/...`` twin (``syncpoint.web.data``) through a Jinja2
template with autoescaping on; charts are inline SVG computed by ``syncpoint.web.charts``.
"""

from __future__ import annotations

import hmac
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from syncpoint.liveness import working_on
from syncpoint.model import RunStatus
from syncpoint.stores.base import ChangeSet, StateDelete
from syncpoint.web import charts, data
from syncpoint.web.api import NotFound, failed_query, find_job, find_run, int_param
from syncpoint.web.context import Dashboard

STATUS_CLASSES = {s.value: f"st-{s.value}" for s in RunStatus}


class Views:
    def __init__(self, dash: Dashboard) -> None:
        self.dash = dash

    def jobs(self, request: Request) -> HTMLResponse:
        overview = data.jobs_overview(
            self.dash.store, offset=int_param(request, "offset", 0, high=10**9), limit=data.JOBS_PAGE,
            query=request.query_params.get("q", "")[:200],
        )
        trends = {job["job"]: charts.trend_svg(job["durations"]) for job in overview["jobs"]}
        live = any(job["live"] for job in overview["jobs"])
        return self.dash.page(request, "jobs.html", overview=overview, trends=trends, refresh=5 if live else 0)

    def job(self, request: Request) -> HTMLResponse:
        job = find_job(self.dash, request.path_params["job"])
        found = data.job_runs(self.dash.store, job, int_param(request, "limit", 50, 1))
        runs = list(reversed(found["runs"]))  # oldest first, for the chart
        chart = charts.bars(
            [r["duration_seconds"] for r in runs], [STATUS_CLASSES.get(r["status"], "") for r in runs],
            width=720, height=140, gap=2.0,
        )
        state = self.dash.store.get_state(job)
        return self.dash.page(request, "job.html", job=job, found=found, chart=chart, state=state)

    def run(self, request: Request) -> HTMLResponse:
        run = find_run(self.dash, request.path_params["run_id"])
        view, hist = self.dash.run_data(run)
        rates = hist["rates"]
        chart = charts.line([r["seconds"] for r in rates], [r["per_second"] for r in rates], width=720, height=160)
        failed = failed_query(self.dash, request, run) if view["failed"]["total"] else None
        return self.dash.page(
            request, "run.html", view=view, chart=chart, failed=failed, poll=self.dash.poll_seconds,
            q=request.query_params.get("q", "")[:200], task_filter=request.query_params.get("task", ""),
        )

    # -- actions (only with --allow-actions) ---------------------------------------------------------------
    def confirm_delete(self, request: Request) -> Response:
        self._require_actions()
        run = find_run(self.dash, request.path_params["run_id"])
        return self.dash.page(request, "confirm.html", what="delete", run=run, job=run.job,
                              target=f"/runs/{quote(run.run_id)}/delete")

    def delete(self, request: Request) -> Response:
        self._require_actions()
        run = find_run(self.dash, request.path_params["run_id"])
        form = _form(request)
        self._check_form(form, run.run_id)
        working = working_on(self.dash.store, run)
        if working:
            return self.dash.page(request, "message.html", status=409, title="Not deleted",
                                  message=f"run {run.run_id} is being worked on by {working.describe()}; "
                                          f"stop {'them' if working.workers else 'it'} first")
        self.dash.store.apply(ChangeSet(run_deletes=[run.run_id]))
        self.dash.runs.clear()
        return RedirectResponse(f"/jobs/{quote(run.job)}", status_code=303)

    def confirm_reset(self, request: Request) -> Response:
        self._require_actions()
        job = find_job(self.dash, request.path_params["job"])
        return self.dash.page(request, "confirm.html", what="reset", run=None, job=job,
                              target=f"/jobs/{quote(job)}/reset")

    def reset(self, request: Request) -> Response:
        self._require_actions()
        job = find_job(self.dash, request.path_params["job"])
        self._check_form(_form(request), job)
        self.dash.store.apply(ChangeSet(state_deletes=[StateDelete(job)]))
        return RedirectResponse(f"/jobs/{quote(job)}", status_code=303)

    def _require_actions(self) -> None:
        if not self.dash.allow_actions:
            raise ReadOnly()

    def _check_form(self, form: dict[str, str], name: str) -> None:
        if not hmac.compare_digest(form.get("csrf", ""), self.dash.csrf) or form.get("confirm") != name:
            raise ReadOnly("the confirmation did not match; start again from the page")


class ReadOnly(Exception):
    def __init__(self, message: str = "this dashboard is read-only; start it with --allow-actions to act") -> None:
        super().__init__(message)


def _form(request: Request) -> dict[str, str]:
    raw = request.state.form if hasattr(request.state, "form") else {}
    return {str(k): str(v) for k, v in raw.items()}


def page_error(dash: Dashboard, request: Request, exc: Exception) -> Response:
    if isinstance(exc, NotFound):
        return dash.page(request, "message.html", status=404, title="Not found", message=str(exc))
    if isinstance(exc, ReadOnly):
        return dash.page(request, "message.html", status=403, title="Not allowed", message=str(exc))
    return dash.page(request, "message.html", status=503, title="Store error", message=str(exc))

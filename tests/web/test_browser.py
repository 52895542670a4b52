"""The dashboard as a person uses it: a real server, a real job in a subprocess, real headless Chromium."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT, require_pg, with_query
from web_support import Servers, run_job, start_job

XSS = "<script>window.__pwned = 1</script><img src=x onerror=window.__pwned=2>"
SCREENSHOT = ROOT / "docs" / "dashboard.png"


@pytest.mark.bypass_csp
def test_follow_a_live_run_from_the_jobs_page_to_its_failed_items(servers: Servers, page: Any,
                                                                   tmp_path: Path) -> None:
    store = f"sqlite:{tmp_path / 'cp' / 'syncpoint.db'}"
    run_job(store, "--items", "20", "--delay", "0", "--label", "v0")  # an earlier run: trend and config diff
    server = servers.start(store)
    job = start_job(store, "--items", "120", "--delay", "0.05", "--fail-every", "9", "--error", XSS)
    run_id = job.expect("READY").split()[1]

    page.goto(server.url + "/")
    row = page.locator("tr[data-job='dash']")
    assert "pid" in row.locator("a.live").inner_text()  # live now: the lock holder's pid and host
    row.locator("a.live").click()
    page.wait_for_url(re.compile(f"/runs/{run_id}$"))
    assert page.locator("#run-status").inner_text() == "running"

    first = _done(page)
    page.wait_for_function(f"parseInt(document.getElementById('run-done').textContent.replace(/,/g, '')) > {first}")
    assert _done(page) > first  # the page follows the run without a reload
    bar = page.locator("tr[data-task='1'] progress")
    moved = float(bar.evaluate("b => b.value"))
    assert 0 < moved < 1
    target = SCREENSHOT if os.environ.get("SYNCPOINT_UPDATE_SCREENSHOT") == "1" else tmp_path / "dashboard.png"
    page.screenshot(path=str(target), full_page=False)  # the README's picture: a run in progress
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and target.stat().st_size > 10_000

    code, err = job.finish(timeout=120)
    assert code == 1, err  # retryable item failures fail the run: --resume retries them (issue 11.1)
    page.wait_for_function("document.getElementById('run-status').textContent === 'failed'")
    page.wait_for_load_state()

    assert page.locator("#run-status").inner_text() == "failed"
    heading = page.locator("#failed").inner_text()
    assert "13 in all" in heading and "retryable" in heading and "permanent" in heading
    cells = page.locator("#failed-items td.error")
    assert cells.count() == 13
    assert XSS in cells.first.inner_text()  # shown as text...
    assert page.evaluate("window.__pwned") is None  # ...and never run
    assert page.locator("#failed-items script, #failed-items img").count() == 0
    assert "label" in page.locator("#config-changes").inner_text()  # v0 -> v1 since the previous run
    assert page.locator("#rate-chart polyline").count() == 1

    page.locator("form.search input[name=q]").fill("#44")
    page.locator("form.search button").click()
    page.wait_for_url(re.compile(r"q=%2344"))
    assert page.locator("#failed-items td.mono").all_inner_texts() == ["item-0044"]

    page.goto(server.url + "/")
    assert page.locator("tr[data-job='dash'] .status").inner_text() == "failed"
    assert page.locator("tr[data-job='dash'] svg.trend rect").count() == 2


@pytest.mark.parametrize("backend", ["json", "postgres"])
def test_serve_on_the_json_and_postgresql_stores(servers: Servers, page: Any, tmp_path: Path, backend: str,
                                                pg_schema: str) -> None:
    if backend == "json":
        store = f"json:{tmp_path / 'cp'}"
    else:
        store = with_query(require_pg().replace("postgres@", "postgres:s3cret-pw@"), schema=pg_schema)
    run_job(store, "--items", "12", "--delay", "0", "--fail-every", "5")
    server = servers.start(store)
    page.goto(server.url + "/")
    assert page.locator("tr[data-job='dash'] .status").inner_text() == "failed"  # a retryable item failed
    assert "s3cret" not in page.content()
    page.locator("tr[data-job='dash'] a.mono").click()
    page.wait_for_url(re.compile(r"/runs/"))
    assert page.locator("#tasks tbody tr").count() == 2
    assert "2 in all" in page.locator("#failed").inner_text()
    assert "s3cret" not in page.content()


def _done(page: Any) -> int:
    return int(page.locator("#run-done").inner_text().replace(",", ""))

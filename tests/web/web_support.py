"""The dashboard tests' support (a real ``syncpoint serve``, real jobs, real Chromium); conftest.py holds the fixtures.

The browser is Debian's ``chromium`` driven by Playwright (``executable_path``; no browser download). Where
it or the web extra is missing the browser tests skip, unless ``CI`` or ``SYNCPOINT_REQUIRE_POSTGRES=1`` is
set (``.ci/run``), which fails them: CI must run them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import ROOT, Child

DASH_JOB = ROOT / "tests" / "jobs" / "dash_job.py"
REQUIRE = os.environ.get("SYNCPOINT_REQUIRE_POSTGRES") == "1" or bool(os.environ.get("CI"))
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def missing(reason: str) -> None:
    if REQUIRE:
        pytest.fail(f"{reason} (required here: CI / SYNCPOINT_REQUIRE_POSTGRES=1)")
    pytest.skip(reason)


def env() -> dict[str, str]:
    found = {k: v for k, v in os.environ.items() if k not in ("SYNCPOINT_STORE", "SYNCPOINT_WEB_TOKEN")}
    found["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), found.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return found


@pytest.fixture(autouse=True)
def _web_extra() -> None:
    try:
        import prometheus_client  # noqa: F401
        import starlette  # noqa: F401
    except ImportError:
        missing("the web extra is not installed: pip install -e '.[web]'")


@dataclass
class Server:
    child: Child
    url: str

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, trust_env=False, timeout=10, **kw)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        with self.client() as c:
            return c.get(path, **kw)


class Servers:
    def __init__(self) -> None:
        self.children: list[Child] = []

    def start(self, store: str, *args: str) -> Server:
        child = Child(["-m", "syncpoint", "--store", store, "serve", "--port", "0", *args], stdin=False, env=env())
        self.children.append(child)
        line = child.expect("dashboard: ", timeout=30)
        return Server(child, line.split()[1].rstrip("/"))

    def stop(self) -> None:
        for child in self.children:
            if child.proc.poll() is None:
                child.proc.terminate()
            try:
                child.proc.communicate(timeout=10)
            except Exception:
                child.proc.kill()


@pytest.fixture
def servers() -> Iterator[Servers]:
    found = Servers()
    yield found
    found.stop()


def start_job(store: str, *args: str) -> Child:
    return Child([str(DASH_JOB), "--store", store, "--no-progress", *args], stdin=False, env=env())


def run_job(store: str, *args: str) -> None:
    child = start_job(store, *args)
    code, err = child.finish(timeout=120)
    assert code in (0, 1, 2), err


@pytest.fixture(scope="module")  # not the session: playwright's sync API keeps an event loop running in the
def browser() -> Iterator[Any]:  # main thread while it is open, and a later test's asyncio.run() would fail
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright is not installed: pip install playwright")
    if not Path(CHROMIUM).exists():
        missing(f"no Chromium at {CHROMIUM}: apt-get install -y chromium")
    with sync_playwright() as p:
        found = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield found
        finally:
            found.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A page; ``@pytest.mark.bypass_csp`` turns the page's Content-Security-Policy off, so a test can wait on
    JavaScript conditions and test escaping on its own (the policy would also stop an injected script)."""
    bypass = request.node.get_closest_marker("bypass_csp") is not None
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=bypass)
    found = context.new_page()
    found.set_default_timeout(30_000)
    errors: list[str] = []
    found.on("pageerror", lambda exc: errors.append(str(exc)))
    yield found
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A unique PostgreSQL schema name, dropped afterwards (only used by the PostgreSQL cases)."""
    import uuid

    from helpers import PG_URL, drop_pg_schema, pg_problem

    name = f"sp_web_{uuid.uuid4().hex}"
    yield name
    if PG_URL and pg_problem() is None:
        drop_pg_schema(name)

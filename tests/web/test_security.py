"""Safe by default: loopback only without a token, the token, read-only unless --allow-actions, confirmed
actions, escaped values, masked store URLs, and a clear line when the web extra is missing."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT
from web_support import Servers, env, run_job

TOKEN = "a-long-enough-test-token-123"


def sp(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "syncpoint", *args], capture_output=True, text=True, env=env(),
                          cwd=ROOT, timeout=60, stdin=subprocess.DEVNULL, **kw)  # type: ignore[call-overload]


@pytest.fixture
def store(tmp_path: Path) -> str:
    url = f"sqlite:{tmp_path / 'cp' / 'syncpoint.db'}"
    run_job(url, "--items", "12", "--delay", "0", "--fail-every", "4", "--error", "<script>alert('x')</script>")
    return url


def test_any_address_but_loopback_needs_a_token(store: str) -> None:
    done = sp("--store", store, "serve", "--host", "0.0.0.0", "--port", "0")
    assert done.returncode == 64
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "refusing to serve the dashboard on 0.0.0.0 without a token" in lines[0]
    assert "--token" in lines[0]
    short = sp("--store", store, "serve", "--token", "short", "--port", "0")
    assert short.returncode == 64 and "at least 16 characters" in short.stderr


def test_a_token_guards_every_page_and_api(servers: Servers, store: str) -> None:
    server = servers.start(store, "--token", TOKEN)
    for path in ("/", "/api/jobs", "/metrics"):
        assert server.get(path).status_code == 401
    assert server.get("/api/jobs", headers={"Authorization": "Bearer wrong-token-wrong-token"}).status_code == 401
    assert server.get("/api/jobs", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    with server.client() as browser:
        first = browser.get(f"/?token={TOKEN}")
        assert first.status_code == 303 and first.headers["location"] == "/"
        assert "HttpOnly" in first.headers["set-cookie"] and "SameSite=Strict" in first.headers["set-cookie"]
        assert browser.get("/").status_code == 200  # the cookie carries it from now on


def test_read_only_unless_actions_are_allowed(servers: Servers, store: str) -> None:
    server = servers.start(store)
    run_id = server.get("/api/jobs").json()["jobs"][0]["last_run"]["run_id"]
    page = server.get(f"/runs/{run_id}").text
    assert "/delete" not in page and "read-only" in page
    assert server.get(f"/runs/{run_id}/delete").status_code == 403
    with server.client() as c:
        assert c.post(f"/runs/{run_id}/delete", data={"confirm": run_id}).status_code == 403
        assert c.post("/jobs/dash/reset", data={"confirm": "dash"}).status_code == 403
    assert server.get(f"/api/runs/{run_id}").status_code == 200  # still there


def test_actions_ask_for_confirmation_and_check_it(servers: Servers, store: str) -> None:
    server = servers.start(store, "--allow-actions")
    run_id = server.get("/api/jobs").json()["jobs"][0]["last_run"]["run_id"]
    with server.client() as c:
        assert "/delete" in c.get(f"/runs/{run_id}").text
        confirm = c.get(f"/runs/{run_id}/delete")
        assert confirm.status_code == 200 and "cannot be undone" in confirm.text
        csrf = re.search(r'name="csrf" value="([^"]+)"', confirm.text)
        assert csrf is not None
        forged = c.post(f"/runs/{run_id}/delete", data={"csrf": "guess", "confirm": run_id})
        assert forged.status_code == 403
        assert c.get(f"/api/runs/{run_id}").status_code == 200
        done = c.post(f"/runs/{run_id}/delete", data={"csrf": csrf[1], "confirm": run_id})
        assert done.status_code == 303
        assert c.get(f"/api/runs/{run_id}").status_code == 404
        assert c.get(f"/api/runs/{run_id}/history").status_code == 404


def test_values_are_escaped_and_headers_forbid_inline_script(servers: Servers, store: str) -> None:
    server = servers.start(store)
    run_id = server.get("/api/jobs").json()["jobs"][0]["last_run"]["run_id"]
    response = server.get(f"/runs/{run_id}")
    assert "<script>alert" not in response.text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in response.text
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"
    searched = server.get(f"/runs/{run_id}", params={"q": '"><script>alert(1)</script>'})
    assert '"><script>alert(1)' not in searched.text


def test_store_passwords_are_never_shown(servers: Servers, pg_schema: str) -> None:
    from helpers import require_pg, with_query

    url = with_query(require_pg().replace("postgres@", "postgres:hunter2-secret@"), schema=pg_schema)
    run_job(url, "--items", "3", "--delay", "0")
    server = servers.start(url)
    assert "hunter2" not in server.child.lines[0]
    for path in ("/", "/api/jobs", "/jobs/dash", "/metrics"):
        assert "hunter2" not in server.get(path).text
    run_id = server.get("/api/jobs").json()["jobs"][0]["last_run"]["run_id"]
    assert "hunter2" not in server.get(f"/runs/{run_id}").text
    assert "hunter2" not in server.get(f"/api/runs/{run_id}").text


def test_without_the_web_extra_serve_says_what_to_install(store: str) -> None:
    code = ("import sys; sys.modules['starlette'] = None; from syncpoint.cli.main import main; "
            f"main(['--store', {store!r}, 'serve'])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env(), timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "syncpoint: error: the dashboard needs starlette: pip install 'syncpoint[web]'"
    ]


def test_syncpoint_and_its_cli_do_not_import_the_web_stack() -> None:
    code = ("import sys, syncpoint, syncpoint.cli.main; "
            "print(sorted(m for m in ('starlette', 'uvicorn', 'jinja2', 'prometheus_client') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env(), timeout=60)
    assert done.stdout.strip() == "[]", done.stderr

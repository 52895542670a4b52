"""``syncpoint.logs``: text or JSON lines, set up once, never over a program's own logging."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cli_helpers import ROOT, app, clean_env

from syncpoint.errors import UsageError
from syncpoint.logs import JsonFormatter, configure_logging, ensure_logging


@contextmanager
def bare_root() -> Iterator[logging.Logger]:
    """The root logger without any handler (pytest's own included) for the duration of the block."""
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    root.handlers[:] = []
    try:
        yield root
    finally:
        root.handlers[:] = saved
        root.setLevel(level)




def test_json_lines_carry_time_level_logger_message_and_extras() -> None:
    with bare_root():
        _json_lines()


def _json_lines() -> None:
    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)
    log = logging.getLogger("syncpoint.test")
    log.info("hello %s", "world", extra={"run_id": "r1", "done": 3})
    log.debug("hidden")
    try:
        raise ValueError("bad")
    except ValueError:
        log.exception("it broke")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["level"] == "INFO" and first["logger"] == "syncpoint.test" and first["message"] == "hello world"
    assert first["run_id"] == "r1" and first["done"] == 3 and first["time"].endswith("+00:00")
    assert second["level"] == "ERROR" and "ValueError: bad" in second["exception"]


def test_configure_replaces_only_its_own_handler() -> None:
    with bare_root() as root:
        mine = logging.StreamHandler(io.StringIO())
        root.addHandler(mine)
        configure_logging("INFO", "text", stream=io.StringIO())
        configure_logging("INFO", "json", stream=io.StringIO())
        assert mine in root.handlers and len(root.handlers) == 2
        assert isinstance(root.handlers[-1].formatter, JsonFormatter)


def test_ensure_leaves_a_configured_program_alone() -> None:
    with bare_root() as root:
        mine = logging.StreamHandler(io.StringIO())
        root.addHandler(mine)
        ensure_logging("json")
        assert root.handlers == [mine]
        root.removeHandler(mine)
        ensure_logging("json")
        assert len(root.handlers) == 1 and isinstance(root.handlers[0].formatter, JsonFormatter)


def test_bad_format() -> None:
    with pytest.raises(UsageError):
        configure_logging("INFO", "xml")


def test_a_jobs_http_requests_are_not_logged(tmp_path: Path) -> None:
    """``Job.execute`` sets INFO for syncpoint's and the program's loggers only: httpx's per-request INFO
    lines stay quiet, the program's own INFO line and syncpoint's do not."""
    proc = subprocess.run(
        [sys.executable, app("http_job.py"), "--requests", "20", "--store", f"sqlite:{tmp_path / 'cp.db'}",
         "--no-progress"],
        capture_output=True, text=True, env=clean_env(), cwd=ROOT, timeout=120, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    assert "httpx" not in proc.stderr and "HTTP Request" not in proc.stderr, proc.stderr
    assert "__main__: fetched 20 pages" in proc.stderr, proc.stderr  # the program's own INFO lines
    assert "http_job: named after the script" in proc.stderr, proc.stderr
    assert "started run" in proc.stderr  # syncpoint's INFO lines

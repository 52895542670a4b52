"""One error format for every program that ends with an error: ``PROG: error: message`` once on stderr
(PROG the program's own name), or with ``--log-format json`` one JSON object carrying ``exit_code``.

Driven through a user's program (``tests/jobs/counting_job.py``, a ``syncpoint.Command``) and the
``syncpoint`` command, in real processes.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import ROOT, Holder, clean_env, need, populate, sp
from helpers import PG_URL, with_query

JOB = ROOT / "tests" / "jobs" / "counting_job.py"
PROG = "counting_job.py"
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


def job(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(JOB), "--dest", str(tmp_path / "out.txt"), "--no-progress", *args],
        capture_output=True, text=True, env=clean_env(), cwd=ROOT, timeout=120, stdin=subprocess.DEVNULL,
    )


def the_error(proc: subprocess.CompletedProcess[str], code: int, prog: str = PROG) -> str:
    """The one error line; nothing else on stderr looks like an error, nothing is said twice."""
    assert proc.returncode == code, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, proc.stderr
    [line] = errors
    assert line.startswith(f"{prog}: error: "), proc.stderr
    assert not TIMESTAMP.search(line) and "ERROR" not in line and "Traceback" not in proc.stderr
    return line


def the_json_error(proc: subprocess.CompletedProcess[str], code: int) -> dict[str, object]:
    assert proc.returncode == code, proc.stderr
    objects = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    errors = [o for o in objects if o["level"] == "ERROR"]
    assert len(errors) == 1, proc.stderr
    assert all(line.startswith("{") for line in proc.stderr.splitlines()), proc.stderr  # nothing but JSON
    [error] = errors
    assert error["exit_code"] == code and error["program"] == PROG, error
    return error


def test_a_bad_flag(tmp_path: Path) -> None:
    assert "--total" in the_error(job(tmp_path, "--total", "many"), 64)
    assert "--total" in str(the_json_error(job(tmp_path, "--total", "many", "--log-format", "json"), 64)["message"])


def test_an_unknown_run(tmp_path: Path) -> None:
    store = f"sqlite:{tmp_path / 'cp.db'}"
    assert job(tmp_path, "--store", store, "--total", "20").returncode == 0
    args = ("--store", store, "--total", "20", "--resume-run", "20200101-000000-abcdef")
    assert "no run 20200101-000000-abcdef" in the_error(job(tmp_path, *args), 64)
    assert "no run" in str(the_json_error(job(tmp_path, *args, "--log-format", "json"), 64)["message"])


def test_a_changed_config(tmp_path: Path) -> None:
    store = f"sqlite:{tmp_path / 'cp.db'}"
    assert job(tmp_path, "--store", store, "--total", "50", "--max-items", "5", "--mode", "items").returncode == 2
    line = the_error(job(tmp_path, "--store", store, "--total", "60", "--resume", "--mode", "items"), 64)
    assert "config changed" in line and "total" in line and "--force" in line


@pytest.mark.parametrize("kind", ["sqlite", "json"])
def test_a_locked_job_is_the_same_line_on_every_store(tmp_path: Path, kind: str) -> None:
    url = f"sqlite:{tmp_path / 'cp.db'}" if kind == "sqlite" else f"json:{tmp_path / 'cp'}"
    holder = Holder(url, "counting")
    try:
        line = the_error(job(tmp_path, "--store", url, "--total", "20"), 75)
        assert "job 'counting' is locked by pid" in line
        error = the_json_error(job(tmp_path, "--store", url, "--total", "20", "--log-format", "json"), 75)
        assert "is locked" in str(error["message"])
    finally:
        holder.kill()


def test_a_store_that_does_not_open(tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not a database" * 100)
    line = the_error(job(tmp_path, "--store", f"sqlite:{bad}", "--total", "20"), 1)
    assert str(bad) in line


def test_an_unknown_postgres_role_is_named_as_such(tmp_path: Path) -> None:
    need("postgres")
    pytest.importorskip("psycopg")
    url = with_query(PG_URL.replace("postgres@", "no_such_role_x@"), schema="cli_role")
    line = the_error(job(tmp_path, "--store", url, "--total", "20"), 1)
    assert "no_such_role_x" in line and "user name" in line and "database name" not in line
    proc = sp("runs", "list", "--store", url)
    assert proc.returncode == 1 and "user name" in proc.stderr and "database name" not in proc.stderr


def test_the_syncpoint_command_uses_the_same_format(tmp_path: Path) -> None:
    url = f"sqlite:{tmp_path / 'cp' / 'syncpoint.db'}"
    populate(url)
    proc = sp("--store", url, "runs", "show", "20200101-000000-abcdef")
    assert proc.returncode == 64 and proc.stderr.startswith("syncpoint: error: no run")
    bad_flag = sp("--log-format", "json", "--store", url, "runs", "list", "--bogus")
    assert bad_flag.returncode == 64
    record = json.loads(bad_flag.stderr)
    assert record["exit_code"] == 64 and record["program"] == "syncpoint" and "--bogus" in record["message"]

"""Many processes started at once for the same job: exactly one runs, the others exit 75 with one line
naming the holder; readers (``runs list``, ``status``) work while the run writes. All three backends."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from crashloop import HOOKED_JOB, ROOT, new_pg_schema, source_ids, store_url
from helpers import drop_pg_schema

BACKENDS = ["sqlite", "json", pytest.param("postgres", marks=pytest.mark.postgres)]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}


def _cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "syncpoint", "--store", url, *args], capture_output=True,
                          text=True, timeout=60, env=ENV, stdin=subprocess.DEVNULL)


def stampede(url: str, workdir: Path, job: str, tag: str, n: int = 8) -> None:
    dest = workdir / f"{job}-{tag}.dest"
    args = [sys.executable, str(HOOKED_JOB), "--mode", "page", "--total", "100", "--job", job, "--store", url,
            "--dest", str(dest), "--gate", "--resume", "--no-progress"]
    procs = [subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=ENV, cwd=workdir) for _ in range(n)]
    try:
        deadline = time.monotonic() + 90
        while sum(p.poll() is not None for p in procs) < n - 1 and time.monotonic() < deadline:
            for p in procs:
                if p.poll() is None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        p.wait(timeout=0.2)
        running = [p for p in procs if p.poll() is None]
        assert len(running) == 1, f"{len(running)} processes still running (expected exactly one)"
        winner = running[0]
        for p in procs:
            if p is winner:
                continue
            _, err = p.communicate(timeout=10)
            assert p.returncode == 75, (p.returncode, err)
            assert len(err.strip().splitlines()) == 1 and "locked by pid" in err and "Traceback" not in err, err
            assert str(winner.pid) in err, err
        # Readers while the run is live and writing (it waits before each page for a line on stdin).
        assert winner.stdin is not None
        for page in range(4):
            winner.stdin.write("go\n")
            winner.stdin.flush()
            listing = _cli(url, "runs", "list", "--job", job, "--json")
            assert listing.returncode == 0, listing.stderr
            assert json.loads(listing.stdout)[0]["status"] == "running"
            status = _cli(url, "status", job, "--json")
            assert status.returncode == 0, status.stderr
            live = json.loads(status.stdout)["runs"]
            assert live and live[0]["live"] is True and live[0]["lock"]["pid"] == winner.pid, (page, live)
        out, err = winner.communicate(input="", timeout=120)  # end of input: the gate stops waiting
        assert winner.returncode == 0, err
        assert "DONE" in out
        lines = dest.read_text().split()
        assert sorted(lines) == sorted(source_ids(100))  # one writer: no record twice
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()


@pytest.mark.parametrize("backend", BACKENDS)
def test_eight_processes_one_runs_seven_exit_75(backend: str, tmp_path: Path,
                                                request: pytest.FixtureRequest) -> None:
    schema = None
    if backend == "postgres":
        request.getfixturevalue("pg_ready")
        schema = new_pg_schema()
    try:
        url = store_url(backend, tmp_path, schema)
        stampede(url, tmp_path, "herd", "first")
    finally:
        if schema:
            drop_pg_schema(schema)

"""Progress while a sync runs: log lines through a pipe (spaced by the interval), a live display on a
terminal (a real pseudo-terminal), nothing with --no-progress; and the numbers behind both."""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import re
import select
import struct
import subprocess
import sys
import termios
from datetime import datetime
from pathlib import Path

import pytest
from cli_helpers import ROOT, app, clean_env

from syncpoint.model import TaskRecord, TaskStatus
from syncpoint.progress import Rate, Totals, describe

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def run_slow(tmp_path: Path, *flags: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, app("slow_job.py"), "--store", f"sqlite:{tmp_path / 'cp.db'}", *flags],
        capture_output=True, text=True, env=env or clean_env(), cwd=ROOT, timeout=120, stdin=subprocess.DEVNULL,
    )


def progress_records(stderr: str) -> list[dict[str, object]]:
    records = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    return [r for r in records if r["logger"] == "syncpoint.progress"]


def test_piped_output_gets_log_lines_spaced_by_the_interval(tmp_path: Path) -> None:
    interval = 0.5
    proc = run_slow(tmp_path, "--items", "60", "--delay", "0.04", "--fail-every", "20",
                    "--progress-interval", str(interval), "--log-format", "json")
    assert proc.returncode == 0, proc.stderr
    records = progress_records(proc.stderr)
    periodic = [r for r in records if not r["final"]]
    final = [r for r in records if r["final"]]
    assert len(final) == 1 and records[-1] is final[0]
    assert 3 <= len(periodic) <= 2.4 / interval + 1, [r["message"] for r in records]
    times = [datetime.fromisoformat(str(r["time"])) for r in periodic]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    assert min(gaps) >= interval - 0.01, gaps  # at most one line per interval
    line = re.compile(r"progress slow: \d+/60 \(\d+\.\d%\) · \d+\.\d rec/s · ETA \d+:\d\d:\d\d")
    assert all(line.match(str(r["message"])) for r in periodic), [r["message"] for r in periodic]
    assert final[0]["done"] == 60 and final[0]["total"] == 60 and final[0]["failed"] == 3
    assert "elapsed" in str(final[0]["message"]) and "3 failed" in str(final[0]["message"])
    rates = [float(r["rate"]) for r in periodic]  # type: ignore[arg-type]
    assert all(5 < rate < 40 for rate in rates), rates  # ~25 items/s at 0.04 s each


def test_default_interval_is_seconds_not_samples(tmp_path: Path) -> None:
    """With the default 10 s interval a 1.5 s run logs only its final line."""
    proc = run_slow(tmp_path, "--items", "30", "--delay", "0.05", "--log-format", "json")
    assert proc.returncode == 0, proc.stderr
    records = progress_records(proc.stderr)
    assert [r["final"] for r in records] == [True]


def test_interval_from_the_environment_and_text_format(tmp_path: Path) -> None:
    proc = run_slow(tmp_path, "--items", "30", "--delay", "0.04",
                    env=clean_env(SYNCPOINT_PROGRESS_INTERVAL="0.3"))
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "syncpoint.progress" in line]
    assert len(lines) >= 3 and "INFO" in lines[0] and "rec/s" in lines[0]


def test_no_progress(tmp_path: Path) -> None:
    proc = run_slow(tmp_path, "--items", "20", "--delay", "0.02", "--no-progress", "--progress-interval", "0.1")
    assert proc.returncode == 0 and "syncpoint.progress" not in proc.stderr and "rec/s" not in proc.stderr


def read_pty(master: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> str:
    chunks: list[bytes] = []
    while True:
        ready, _, _ = select.select([master], [], [], timeout)
        if not ready:
            proc.kill()
            pytest.fail("the job wrote nothing to the terminal for a minute")
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=60)
    return b"".join(chunks).decode("utf-8", "replace")


def test_terminal_gets_the_live_display(tmp_path: Path) -> None:
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 140, 0, 0))
    env = clean_env(TERM="xterm-256color", COLUMNS="140", LINES="40")
    for name in ("NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "FORCE_COLOR", "CI"):
        env.pop(name, None)
    proc = subprocess.Popen(
        [sys.executable, app("slow_job.py"), "--store", f"sqlite:{tmp_path / 'cp.db'}", "--items", "60",
         "--delay", "0.04", "--fail-every", "30", "--progress-interval", "0.2"],
        stdin=slave, stdout=slave, stderr=slave, env=env, cwd=ROOT, close_fds=True,
    )
    os.close(slave)
    try:
        screen = ANSI.sub("", read_pty(master, proc))
    finally:
        os.close(master)
    assert proc.returncode == 0, screen[-3000:]
    assert re.search(r"\d+\.\d rec/s", screen), screen[-3000:]
    assert re.search(r"ETA \d+:\d\d:\d\d", screen), screen[-3000:]
    assert re.search(r"records\s+running", screen) and "━" in screen  # a task row with its bar
    assert re.search(r"slow \(final\)|elapsed \d+:\d\d:\d\d", screen)
    assert "2 failed" in screen
    assert "syncpoint.progress" not in screen  # a display, not log lines
    assert "started run" in screen  # log lines still reach the terminal


# -- the numbers ----------------------------------------------------------------------------------------------
def rec(name: str, status: TaskStatus, *, records: int = 0, ok: int = 0, failed: int = 0,
        total: int | None = None) -> TaskRecord:
    return TaskRecord("20240101-000000-aaaaaa", name, 0, status, records=records, ok=ok, failed=failed, total=total)


def test_totals() -> None:
    known = Totals.of([rec("a", TaskStatus.COMPLETED, records=100, total=100),
                       rec("b", TaskStatus.IN_PROGRESS, ok=40, failed=2, total=200)])
    assert (known.done, known.total, known.failed, known.tasks_done, known.tasks) == (142, 300, 2, 1, 2)
    unknown = Totals.of([rec("a", TaskStatus.IN_PROGRESS, records=5), rec("b", TaskStatus.PENDING, total=9)])
    assert unknown.total is None and unknown.done == 5
    finished = Totals.of([rec("a", TaskStatus.COMPLETED, records=7), rec("b", TaskStatus.PENDING, total=9)])
    assert finished.total == 16  # a complete task without a total counts what it did
    assert Totals.of([]).total is None


def test_describe_matches_the_documented_line() -> None:
    totals = Totals(done=750, total=1000, failed=5, tasks_done=0, tasks=1, tasks_failed=0)
    assert describe("drucksachen", totals, 120.5) == (
        "drucksachen: 750/1000 (75.0%) · 120.5 rec/s · ETA 0:00:03 · 5 failed"
    )
    slow = Totals(done=750, total=1000, failed=0, tasks_done=1, tasks=3, tasks_failed=1)
    assert describe("x", slow, 2.0) == "x: 750/1000 (75.0%) · 2.0 rec/s · ETA 0:02:05 · tasks 1/3 · 1 task failed"
    stalled = Totals(done=10, total=None, failed=0, tasks_done=0, tasks=1, tasks_failed=0)
    assert describe("y", stalled, 0.0) == "y: 10 done · 0.0 rec/s"


def test_rate_uses_a_sliding_window() -> None:
    rate = Rate(window=10)
    for second in range(0, 30):
        rate.add(float(second), 100 * second if second < 20 else 2000)  # 100/s, then stalled
    assert rate.per_second < 20
    fresh = Rate(window=10)
    fresh.add(0.0, 0)
    fresh.add(2.0, 50)
    assert fresh.per_second == 25.0


def test_standard_flags_in_argparse_and_click() -> None:
    import argparse

    import click
    from click.testing import CliRunner

    import syncpoint

    parser = argparse.ArgumentParser()
    syncpoint.add_arguments(parser)
    for argv, expected in (([], None), (["--progress"], True), (["--no-progress"], False)):
        options = syncpoint.options_from_namespace(parser.parse_args(argv))
        assert options.progress is expected
    options = syncpoint.options_from_namespace(
        parser.parse_args(["--progress-interval", "2.5", "--log-format", "json"])
    )
    assert options.progress_interval == 2.5 and options.log_format == "json"

    seen: list[syncpoint.RunOptions] = []

    @click.command(cls=syncpoint.Command)
    @syncpoint.click_options
    def main(sync: syncpoint.RunOptions) -> None:
        seen.append(sync)

    assert CliRunner().invoke(main, ["--no-progress", "--log-format", "json"]).exit_code == 0
    assert seen[-1].progress is False and seen[-1].log_format == "json"
    assert CliRunner().invoke(main, ["--log-format", "xml"]).exit_code == 64
    assert CliRunner().invoke(main, ["--progress-interval", "0"]).exit_code == 64


def test_sampling_never_disturbs_the_run(tmp_path: Path) -> None:
    """A reporter sampling as fast as it can while the run works: every status and counter is committed
    exactly as the run set it (the sampler only reads)."""
    import syncpoint
    from syncpoint.progress import ProgressReporter

    job = syncpoint.Job("busy", store=f"sqlite:{tmp_path / 'cp.db'}",
                        save_policy=syncpoint.SavePolicy(every_items=500, every_pages=1, every_seconds=60))
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible, to provoke any race
    with job.run() as run:
        reporter = ProgressReporter(run, "log", interval=3600, sample_every=0.0001).start()
        try:
            for n in range(30):
                with run.task(f"t{n}") as task:
                    task.set_total(400)
                    for i in range(400):
                        if i % 50 == 0:
                            task.item_failed(str(i), "x", retryable=False)
                        else:
                            task.item_done(str(i))
                    task.set_cursor({"last": i}, records=400)
        finally:
            reporter.stop()
            sys.setswitchinterval(switch)
    tasks = job.store.get_tasks(run.run_id)
    assert len(tasks) == 30
    for record in tasks:
        assert record.status is TaskStatus.COMPLETED
        assert (record.ok, record.failed, record.records, record.cursor) == (392, 8, 400, {"last": 399})
    job.close()

"""Real subprocesses, real signals: a job stopped by SIGINT, SIGTERM, a second signal or SIGKILL resumes
from the right page, item or watermark, and the exit codes are the documented ones."""

from __future__ import annotations

import os
import random
import signal
from collections import Counter
from pathlib import Path

import pytest
from helpers import COUNTING_JOB, EMBEDDED_STORES, Child, run_job, store_url
from jobs.counting_job import source

MODES = ["page", "items", "watermark"]


def job_args(kind: str, tmp_path: Path, mode: str, *extra: str, total: int = 200) -> list[str]:
    return [str(COUNTING_JOB), "--mode", mode, "--total", str(total), "--dest", str(tmp_path / "dest.txt"),
            "--store", store_url(kind, tmp_path), *extra]


def written(tmp_path: Path) -> list[str]:
    path = tmp_path / "dest.txt"
    return path.read_text().split() if path.exists() else []


def all_ids(total: int) -> set[str]:
    return {r[0] for r in source(total, 7)}


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_second_signal_while_the_program_winds_down_exits_at_once_without_a_traceback(
    sig: int, code: int, tmp_path: Path
) -> None:
    """Regression (signal soak): the run had stopped on the first SIGINT and restored the previous handlers;
    a second SIGINT while Python waited for threads at exit ended in a KeyboardInterrupt traceback (and a
    second SIGTERM killed the process by its default action instead of exiting 143)."""
    child = Child(job_args("sqlite", tmp_path, "page", "--gate", "--linger"))
    child.expect("READY")
    child.send()
    child.expect("PAGE 0")
    child.proc.send_signal(sig)
    child.send()  # to the next safe point, where the run stops
    assert child.expect("EXITING") == f"EXITING {code}"
    child.proc.send_signal(sig)
    returncode, stderr = child.finish()
    assert returncode == code, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr


@pytest.mark.parametrize("kind", EMBEDDED_STORES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_first_signal_stops_at_safe_point_and_resume_continues(
    kind: str, mode: str, sig: int, code: int, tmp_path: Path
) -> None:
    child = Child([*job_args(kind, tmp_path, mode, "--gate")])
    child.expect("READY")
    for page in range(3):
        child.send()
        assert child.expect("PAGE") == f"PAGE {page}"
    child.proc.send_signal(sig)
    child.send()  # let it reach the next safe point
    returncode, stderr = child.finish()
    assert returncode == code, stderr
    assert "checkpoint committed" in stderr
    assert len(written(tmp_path)) == 30  # it stopped before writing the fourth page

    returncode, _, stderr = run_job(job_args(kind, tmp_path, mode, "--resume"))
    assert returncode == 0, stderr
    lines = written(tmp_path)
    assert Counter(lines).most_common(1)[0][1] == 1, "a record was written twice"
    assert set(lines) == all_ids(200)


@pytest.mark.parametrize("kind", EMBEDDED_STORES)
def test_second_signal_exits_at_once_with_last_committed_state(kind: str, tmp_path: Path) -> None:
    child = Child(job_args(kind, tmp_path, "page", "--gate"))
    child.expect("READY")
    child.send()
    child.expect("PAGE 0")
    child.proc.send_signal(signal.SIGINT)
    child.expect_stderr("SIGINT received")
    child.proc.send_signal(signal.SIGINT)  # blocked on stdin: only the handler can end it
    returncode, stderr = child.finish()
    assert returncode == 130
    assert "second signal" in stderr
    returncode, _, stderr = run_job(job_args(kind, tmp_path, "page", "--resume"))
    assert returncode == 0, stderr
    assert sorted(written(tmp_path)) == sorted(all_ids(200))


@pytest.mark.parametrize("kind", EMBEDDED_STORES)
@pytest.mark.parametrize("mode", MODES)
def test_sigkill_at_random_moments_loses_nothing(kind: str, mode: str, tmp_path: Path) -> None:
    """Kill -9 after a random number of pages, resume, repeat: every record arrives; re-writes stay inside
    the redo window (one page of 10 per kill, as the save policy commits every page or 10 items)."""
    total, rng, kills = 1500, random.Random(f"{kind}{mode}"), 0
    progress: list[tuple[int, int, list[str]]] = []
    for _attempt in range(40):
        child = Child(job_args(kind, tmp_path, mode, "--resume", "--commit-items", "10", total=total), stdin=False)
        child.expect("READY")
        target = rng.randint(0, 12)
        finished = False
        for _ in range(target):
            line = child.expect("")
            if line == "DONE":
                finished = True
                break
        if finished or child.proc.poll() is not None:
            assert child.finish()[0] == 0
            break
        os.kill(child.proc.pid, signal.SIGKILL)
        child.finish()
        if "DONE" in child.lines:  # it finished between our last read and the kill: nothing was killed
            break
        kills += 1
        progress.append((target, len(written(tmp_path)), child.lines[:1]))
    else:
        pytest.fail(f"the job never completed: (pages asked, records written, first line) {progress}")
    lines = written(tmp_path)
    assert set(lines) == all_ids(total)
    duplicates = len(lines) - len(set(lines))
    assert duplicates <= kills * 10, f"{duplicates} re-written records for {kills} kills"
    assert kills >= 3


@pytest.mark.parametrize("kind", EMBEDDED_STORES)
def test_second_start_is_refused_with_75_naming_the_holder_and_kill_9_frees_the_lock(
    kind: str, tmp_path: Path
) -> None:
    holder = Child(job_args(kind, tmp_path, "page", "--gate"))
    ready = holder.expect("READY")
    holder_pid = ready.split()[2]
    returncode, _, stderr = run_job(job_args(kind, tmp_path, "page"))
    assert returncode == 75
    assert f"pid {holder_pid}" in stderr and "locked" in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    os.kill(holder.proc.pid, signal.SIGKILL)
    holder.finish()
    returncode, _, stderr = run_job(job_args(kind, tmp_path, "page", "--resume"))
    assert returncode == 0, stderr


@pytest.mark.parametrize("kind", EMBEDDED_STORES)
def test_exit_codes_failed_partial_usage(kind: str, tmp_path: Path) -> None:
    code, _, err = run_job(job_args(kind, tmp_path, "items", "--fail-at", "50"))
    assert code == 1 and "record 0000050 is broken" in err
    code, _, err = run_job(job_args(kind, tmp_path, "items", "--resume"))
    assert code == 0, err  # the record is fixed: the failed run resumes and completes
    assert sorted(written(tmp_path)) == sorted(all_ids(200))
    code, _, err = run_job(job_args(kind, tmp_path, "page", "--max-items", "30", "--job", "other"))
    assert code == 2 and "item budget of 30 reached" in err, err  # a page cursor's records count too
    code, _, err = run_job(job_args(kind, tmp_path, "page", "--resume", "--job", "other"))
    assert code == 0, err
    code, _, err = run_job(job_args(kind, tmp_path, "items", "--new-run", "--max-items", "30", "--job", "b"))
    assert code == 2, err
    assert "item budget of 30 reached" in err
    code, _, err = run_job(job_args(kind, tmp_path, "items", "--resume", "--job", "b"))
    assert code == 0, err
    code, _, err = run_job(job_args(kind, tmp_path, "items", "--end", "2024-02-30"))
    assert code == 64 and "2024-02-30" in err and "Traceback" not in err


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_second_signal_after_the_run_ended_while_the_program_closes_exits_at_once(
    sig: int, code: int, tmp_path: Path
) -> None:
    """Issue 11.5: from the first signal until the process exits, a second one always ends it with 130/143
    and no traceback — also after the run's ``with`` block, while the program closes its destination (the
    run used to restore the previous handlers there, so the second Ctrl+C died by the signal or traced back)."""
    job = Path(__file__).resolve().parents[1] / "jobs" / "winddown_job.py"
    child = Child([str(job), f"sqlite:{tmp_path / 'cp.db'}"])
    child.expect("READY")
    child.send()
    child.expect("PAGE 0")
    child.proc.send_signal(sig)
    child.send()  # to the next safe point, where the run stops
    child.expect("CLOSING")
    child.proc.send_signal(sig)
    returncode, stderr = child.finish()
    assert returncode == code, stderr
    assert "CLOSED" not in child.lines
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr

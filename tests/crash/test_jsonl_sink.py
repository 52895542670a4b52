"""``syncpoint.JsonlSink`` under ``kill -9``: a real subprocess writes a JSON Lines file page by page (the file's
length in the token cursor's extra fields), is killed at chosen and at random moments, and is resumed until
done. The file must hold every record exactly once, in order: nothing lost, nothing twice."""

from __future__ import annotations

import json
import random
import signal
from pathlib import Path

import pytest
from helpers import EMBEDDED_STORES, ROOT, Child, run_job, store_url
from jobs.jsonl_job import records

JSONL_JOB = ROOT / "tests" / "jobs" / "jsonl_job.py"
PAGES, PER_PAGE = 40, 20


def args(kind: str, tmp_path: Path, *extra: str) -> list[str]:
    return [str(JSONL_JOB), "--out", str(tmp_path / "out" / "records.jsonl"), "--pages", str(PAGES),
            "--per-page", str(PER_PAGE), "--store", store_url(kind, tmp_path), "--no-progress", *extra]


def lines(tmp_path: Path) -> list[dict[str, object]]:
    path = tmp_path / "out" / "records.jsonl"
    return [json.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []


def expected() -> list[dict[str, object]]:
    return [record for page in range(1, PAGES + 1) for record in records(page, PER_PAGE)]


def finish(kind: str, tmp_path: Path) -> None:
    code, _out, err = run_job(args(kind, tmp_path, "--resume"))
    assert code == 0, err


@pytest.mark.parametrize("kind", EMBEDDED_STORES)
def test_a_page_appended_but_not_committed_is_dropped_on_resume_and_written_once(kind: str, tmp_path: Path) -> None:
    child = Child(args(kind, tmp_path, "--hold", "7"))
    child.expect("APPENDED 7")  # page 7 is in the file, fsynced; the checkpoint still says "after page 6"
    child.proc.send_signal(signal.SIGKILL)
    child.finish()
    assert child.proc.returncode == -signal.SIGKILL
    assert lines(tmp_path) == expected()[: 7 * PER_PAGE]  # the uncommitted page is there, for now

    finish(kind, tmp_path)
    assert lines(tmp_path) == expected()  # page 7 cut off, fetched and written again: once


@pytest.mark.parametrize("kind", EMBEDDED_STORES)
def test_kill_9_at_random_moments_then_resume_until_done(kind: str, tmp_path: Path) -> None:
    rng = random.Random(f"jsonl-{kind}")
    kills = 0
    for _ in range(8):
        child = Child(args(kind, tmp_path, "--resume"))
        wait_for = rng.choice(["APPENDED", "RECORDED"])
        for _ in range(rng.randint(1, 4)):
            line = child.read_line()
            while line is not None and not line.startswith(wait_for):
                line = child.read_line()
            if line is None:
                break
        if child.proc.poll() is None:
            child.proc.send_signal(signal.SIGKILL)  # at once after the line: before or during the page's commit
            kills += 1
        child.finish()
        written = lines(tmp_path)
        assert written == expected()[: len(written)]  # a prefix, whatever the moment: no page twice, no gap
    assert kills >= 6
    finish(kind, tmp_path)
    assert lines(tmp_path) == expected()


def test_a_file_shorter_than_its_checkpoint_stops_the_resume_and_is_left_as_it_is(tmp_path: Path) -> None:
    child = Child(args("sqlite", tmp_path, "--hold", "3"))
    child.expect("APPENDED 3")
    child.proc.send_signal(signal.SIGKILL)
    child.finish()
    path = tmp_path / "out" / "records.jsonl"
    path.write_bytes(path.read_bytes()[:100])  # someone cut the file: committed records are gone
    code, _out, err = run_job(args("sqlite", tmp_path, "--resume"))
    assert code == 1 and "has 100 bytes but the checkpoint recorded" in err, err
    assert path.stat().st_size == 100

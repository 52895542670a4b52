"""``syncpoint demo``: finishes on its own, prints how to interrupt and resume, and resumes after SIGINT; the
sync it runs is the one docs/DEMO.md shows, written with the public API only."""

from __future__ import annotations

import ast
import signal
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

from ex_support import ROOT, Program

SYNC = ROOT / "src" / "syncpoint" / "demo" / "sync.py"


def syncpoint_demo(*args: str) -> list[str]:
    """``syncpoint demo ARGS`` as ``Program``/``subprocess`` arguments (without the interpreter)."""
    return ["-m", "syncpoint", "demo", *args]


def rows(db: Path) -> int:
    with closing(sqlite3.connect(db)) as conn:
        return int(conn.execute("SELECT count(*) FROM documents").fetchone()[0])


def test_demo_finishes_on_its_own_and_says_how_to_interrupt_and_resume(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, *syncpoint_demo("--count", "300", "--delay", "0.01")], cwd=tmp_path,
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Press Ctrl+C to interrupt it, then run `syncpoint demo --resume --count 300`" in proc.stdout
    assert "Done: 300 of 300 documents" in proc.stdout
    assert "syncpoint serve" in proc.stdout  # a newcomer learns where the dashboard is
    assert "completed" in proc.stderr  # the run's own log lines are shown
    assert rows(tmp_path / ".checkpoints" / "demo.db") == 300
    assert (tmp_path / ".checkpoints" / "syncpoint.db").exists()  # the SQLite default store


def test_demo_interrupted_by_sigint_resumes_with_the_command_it_printed(tmp_path: Path) -> None:
    checkpoints = str(tmp_path / "cp")
    child = Program([sys.executable, *syncpoint_demo("--count", "2000", "--delay", "0.05", "--progress-interval",
                                                     "0.1", "--checkpoint-dir", checkpoints)], cwd=tmp_path)
    child.wait_for("Press Ctrl+C", stream="stdout")
    child.wait_for("/2000 (")  # a progress line after the first page: the run is under way
    child.proc.send_signal(signal.SIGINT)
    assert child.finish() == 130, child.stderr
    out = child.stdout
    resume = f"syncpoint demo --resume --count 2000 --checkpoint-dir {checkpoints}"
    assert "Interrupted (exit 130); nothing is lost" in out and resume in out
    done = rows(Path(checkpoints) / "demo.db")
    assert 0 < done < 2000

    args = resume.split()[2:]
    proc = subprocess.run([sys.executable, *syncpoint_demo(*args, "--delay", "0")], cwd=tmp_path,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "resuming run" in proc.stderr and "Done: 2,000 of 2,000 documents" in proc.stdout
    assert rows(Path(checkpoints) / "demo.db") == 2000
    # resumed, not restarted: it stopped at a page boundary, so it fetched exactly the pages it had not written
    assert f"the server served {(2000 - done) // 100} page(s) this time" in proc.stdout, proc.stdout


def test_demo_resumed_with_another_count_says_what_the_demo_can_do(tmp_path: Path) -> None:
    """The general "--force or --new-run" advice does not apply to the demo, which has neither flag; nor
    may the demo say "399 of 300 documents" when an earlier, larger demo left rows behind."""
    def demo(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, *syncpoint_demo("--delay", "0", "--no-progress", *args)],
                              cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)

    assert demo("--count", "500", "--max-items", "400").returncode == 2
    other = demo("--resume", "--count", "300")
    assert other.returncode == 64, other.stderr
    [line] = other.stderr.splitlines()
    assert line.startswith("syncpoint: error: ") and "--force" not in line and "--new-run" not in line
    assert "'syncpoint demo --resume --count 500'" in line and "'syncpoint demo --count 300'" in line
    assert rows(tmp_path / ".checkpoints" / "demo.db") == 400  # nothing ran
    fresh = demo("--count", "300")
    assert fresh.returncode == 0, fresh.stderr
    assert rows(tmp_path / ".checkpoints" / "demo.db") == 400 and " of 300 documents" not in fresh.stdout
    assert "holds 400 documents: more than the 300 this API serves" in fresh.stdout


def test_the_demo_sync_uses_the_public_api_only() -> None:
    """What the demo runs is the code a user may copy: it imports ``syncpoint`` and the public module
    ``syncpoint.http`` (docs/API.md) besides the standard library, nothing internal. (That it is what runs:
    the tests above find its table; that docs/DEMO.md shows it as it is: tests/docs/test_file_blocks.py.)"""
    source = SYNC.read_text(encoding="utf-8")
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
    ours = {name for name in imported if name.split(".")[0] == "syncpoint"}
    assert ours == {"syncpoint", "syncpoint.http"}, ours
    assert not {name for name in imported - ours if name.split(".")[0] not in sys.stdlib_module_names}


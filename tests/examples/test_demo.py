"""``syncpoint demo``: finishes on its own, prints how to interrupt and resume, and resumes after SIGINT."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from ex_support import Program

from syncpoint.cli.main import cli

# Until ``syncpoint demo`` is registered in the CLI group, run it under the group the same way.
REGISTER_AND_RUN = (
    "import sys; from syncpoint.cli.main import main, register; from syncpoint.demo import demo; "
    "register(demo); sys.argv[0] = 'syncpoint'; main()"
)


def syncpoint_demo(*args: str) -> list[str]:
    """``syncpoint demo ARGS`` as ``Child``/``subprocess`` arguments (without the interpreter)."""
    if "demo" in cli.commands:
        return ["-m", "syncpoint", "demo", *args]
    return ["-c", REGISTER_AND_RUN, "demo", *args]


def rows(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM drucksache").fetchone()[0])


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
    assert rows(tmp_path / ".checkpoints" / "demo-dip.db") == 300
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
    done = rows(Path(checkpoints) / "demo-dip.db")
    assert 0 < done < 2000

    args = resume.split()[2:]
    proc = subprocess.run([sys.executable, *syncpoint_demo(*args, "--delay", "0")], cwd=tmp_path,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "resuming run" in proc.stderr and "Done: 2,000 of 2,000 documents" in proc.stdout
    assert rows(Path(checkpoints) / "demo-dip.db") == 2000


def test_demo_resumed_with_another_count_says_what_the_demo_can_do(tmp_path: Path) -> None:
    """The general "--force or --new-run" advice does not apply to the demo, which has neither flag; nor
    may the demo say "399 of 300 documents" when an earlier, larger demo left rows behind."""
    def demo(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, *syncpoint_demo("--delay", "0", "--no-progress", *args)],
                              cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)

    assert demo("--count", "500", "--max-items", "100").returncode == 2
    other = demo("--resume", "--count", "300")
    assert other.returncode == 64, other.stderr
    [line] = other.stderr.splitlines()
    assert line.startswith("syncpoint: error: ") and "--force" not in line and "--new-run" not in line
    assert "'syncpoint demo --resume --count 500'" in line and "'syncpoint demo --count 300'" in line
    assert rows(tmp_path / ".checkpoints" / "demo-dip.db") == 100  # nothing ran
    fresh = demo("--count", "300")
    assert fresh.returncode == 0, fresh.stderr
    held = rows(tmp_path / ".checkpoints" / "demo-dip.db")
    assert held > 300 and " of 300 documents" not in fresh.stdout
    assert f"holds {held:,} documents: more than the 300 this API serves" in fresh.stdout


def test_the_sqlite_destination_takes_writes_from_several_threads(tmp_path: Path) -> None:
    """One SqliteDestination shared by 8 writer threads (and one per thread on the same file): every row."""
    import threading

    from syncpoint.demo import SqliteDestination

    shared = SqliteDestination(tmp_path / "dip.db")
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        own = SqliteDestination(tmp_path / "dip.db")
        try:
            for page in range(10):
                docs = [{"id": f"{n}-{page}-{i}", "aktualisiert": "2024-01-01T00:00:00+01:00"} for i in range(20)]
                (shared if page % 2 else own).write(f"endpoint-{n % 3}", docs)
        except BaseException as exc:
            errors.append(exc)
        finally:
            own.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert sum(shared.count(f"endpoint-{k}") for k in range(3)) == 8 * 10 * 20
    shared.close()

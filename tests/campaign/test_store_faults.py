"""Store faults on the embedded stores: disk full, a read-only checkpoint directory, files truncated or
filled with garbage between runs, the SQLite file locked by another program. Each: one clear error line
(no traceback), exit 1, and the last committed state intact (compared before/after); then, with the
fault gone, a resume completes with every record."""

from __future__ import annotations

import os
import resource
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from crashloop import HOOKED_JOB, ROOT, source_ids, store_url
from helpers import mount, read_only_directory

from syncpoint.stores import open_store

KINDS = ["sqlite", "json"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "SP_JOURNAL_LIMIT": "25"}
TOTAL = 200


def job(url: str, dest: Path, *extra: str) -> list[str]:
    return [sys.executable, str(HOOKED_JOB), "--mode", "items", "--total", str(TOTAL), "--page-size", "10",
            "--commit-items", "10", "--store", url, "--dest", str(dest), "--no-progress", *extra]


def run(args: list[str], preexec: Callable[[], None] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, env=ENV, stdin=subprocess.DEVNULL,
                          preexec_fn=preexec, cwd=ROOT)


def snapshot(url: str) -> tuple[object, ...]:
    """What a store holds for the job, comparable before/after a fault."""
    store = open_store(url)
    try:
        runs = store.list_runs("counting")
        tasks = [(t.name, t.status, t.ok, t.cursor) for r in runs for t in store.get_tasks(r.run_id)]
        ledger = sorted(e.item_id for r in runs for e in store.iter_ledger(r.run_id, "items"))
        return tuple((r.run_id, r.status, r.attempts, r.updated_at) for r in runs), tuple(tasks), tuple(ledger)
    finally:
        store.close()


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if " ERROR " in line or ": error: " in line]
    # The error is one line; the run's closing summary ("run ... failed: <the same error>") may follow it.
    assert 1 <= len(errors) <= 2, proc.stderr[-2000:]
    assert any(n in errors[0] for n in needles), errors[0]


@pytest.fixture(params=KINDS)
def partial(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str, Path]:
    """A store holding an unfinished run: 60 of the 200 items committed (exit 2, a budget)."""
    kind: str = request.param
    url, dest = store_url(kind, tmp_path), tmp_path / "dest.txt"
    proc = run(job(url, dest, "--max-items", "60"))
    assert proc.returncode == 2, proc.stderr
    return kind, url, dest


def resume_completes(url: str, dest: Path) -> None:
    proc = run(job(url, dest, "--resume"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert set(dest.read_text().split()) == set(source_ids(TOTAL))


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.suffix != ".lock" and "-shm" not in p.name}


# -- disk full ---------------------------------------------------------------------------------------
def test_disk_full_rlimit_fsize(partial: tuple[str, str, Path], tmp_path: Path) -> None:
    """RLIMIT_FSIZE in the child (SIGXFSZ ignored): a write past the limit fails with EFBIG."""
    _kind, url, dest = partial
    before = snapshot(url)
    biggest = max(p.stat().st_size for p in (tmp_path / "cp").rglob("*") if p.is_file())
    limit = max(biggest, dest.stat().st_size + 4096) + 2048

    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = run(job(url, dest, "--resume"), preexec)
    assert_one_line_error(proc, "File too large", "full", "free some space", "too large")
    after = snapshot(url)
    assert set(before[2]) <= set(after[2])  # nothing committed before was lost
    assert set(after[2]) <= set(dest.read_text().split())  # everything marked done was written
    resume_completes(url, dest)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    where = tmp_path / "small"
    where.mkdir()
    if os.geteuid() != 0 or not mount("-t", "tmpfs", "-o", "size=512k", "tmpfs", str(where)):
        pytest.skip("cannot mount a tmpfs here")
    yield where
    subprocess.run(["umount", "-l", str(where)], capture_output=True)


@pytest.mark.parametrize("kind", KINDS)
def test_disk_full_real_enospc_on_tmpfs(kind: str, tmpfs: Path) -> None:
    url, dest = store_url(kind, tmpfs), tmpfs.parent / "dest.txt"
    assert run(job(url, dest, "--max-items", "60")).returncode == 2
    before = snapshot(url)
    filler = tmpfs / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for _ in range(10_000):  # until ENOSPC
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    proc = run(job(url, dest, "--resume"))
    assert_one_line_error(proc, "No space left", "full", "free some space")
    filler.unlink()  # (reading SQLite needs a few bytes for its shared-memory file)
    after = snapshot(url)
    assert set(before[2]) <= set(after[2]) <= set(dest.read_text().split())
    resume_completes(url, dest)


# -- read-only checkpoint directory ------------------------------------------------------------------
def test_checkpoint_dir_read_only_bind_mount(partial: tuple[str, str, Path], tmp_path: Path) -> None:
    _kind, url, dest = partial
    cp = tmp_path / "cp"
    before, raw = snapshot(url), files(cp)
    with read_only_directory(cp):
        proc = run(job(url, dest, "--resume"))
        assert_one_line_error(proc, "read-only", "Read-only", "permissions")
        assert files(cp) == raw
    assert snapshot(url) == before
    resume_completes(url, dest)


@pytest.mark.parametrize("kind", KINDS)
def test_checkpoint_dir_is_a_regular_file(kind: str, tmp_path: Path) -> None:
    (tmp_path / "cp").write_text("not a directory")
    proc = run(job(store_url(kind, tmp_path), tmp_path / "dest.txt"))
    assert_one_line_error(proc, "cp")
    assert (tmp_path / "cp").read_text() == "not a directory"


# -- damaged files -----------------------------------------------------------------------------------
def _damage_targets(kind: str, cp: Path) -> list[Path]:
    if kind == "sqlite":
        return [cp / "syncpoint.db"]
    targets = sorted((cp / "runs").glob("*.json"))
    targets += sorted(p for p in (cp / "ledger").rglob("*") if p.is_file() and p.name != "meta.json")[:2]
    targets += sorted((cp / "ledger").rglob("meta.json"))[:1]
    return targets


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_damaged_files_are_reported_and_left_untouched(partial: tuple[str, str, Path], tmp_path: Path,
                                                      damage: str) -> None:
    kind, url, dest = partial
    cp = tmp_path / "cp"
    if kind == "sqlite":  # fold the WAL into the file so the damage hits committed pages
        with sqlite3.connect(cp / "syncpoint.db") as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = snapshot(url)
    pristine = files(cp)
    for target in _damage_targets(kind, cp):
        data = pristine[str(target.relative_to(cp))]
        broken = data[: len(data) // 3] if damage == "truncate" else bytes((b * 7 + 13) % 256 for b in data)
        if kind == "sqlite" and damage == "garbage":
            broken = data[:100] + os.urandom(len(data) - 100)  # keep the header: the pages are damaged
        target.write_bytes(broken)
        proc = run(job(url, dest, "--resume"))
        assert_one_line_error(proc, "corrupt", "damaged", "malformed", "not a database")
        cli = run([sys.executable, "-m", "syncpoint", "--store", url, "runs", "list", "--json"])
        # SQLite: the listing reads the damaged file (exit 1); JSON: a listing reads only run documents
        assert cli.returncode in ((1,) if kind == "sqlite" or "runs" in str(target) else (0, 1)), cli.stderr
        assert "Traceback" not in cli.stderr, cli.stderr
        assert len(cli.stderr.strip().splitlines()) == (cli.returncode != 0), cli.stderr
        assert target.read_bytes() == broken, "a damaged checkpoint file was modified"
        target.write_bytes(data)  # restore: the tasks and ledgers are exactly as before (the run document
        # may record the failed attempt: a damaged ledger is found while the run is open)
        assert snapshot(url)[1:] == before[1:]
    resume_completes(url, dest)


# -- SQLite locked by another program ----------------------------------------------------------------
def test_sqlite_file_locked_by_another_program(tmp_path: Path) -> None:
    url, dest = store_url("sqlite", tmp_path), tmp_path / "dest.txt"
    assert run(job(url, dest, "--max-items", "60")).returncode == 2
    before = snapshot(url)
    other = sqlite3.connect(tmp_path / "cp" / "syncpoint.db", isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        proc = run(job(url, dest, "--resume"))  # waits busy_timeout (10 s), then gives up
        assert_one_line_error(proc, "locked by another program")
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert snapshot(url) == before
    resume_completes(url, dest)

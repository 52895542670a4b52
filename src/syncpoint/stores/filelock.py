"""Job locks for the embedded stores: ``flock`` on a dedicated file per job, held open for the run.

``flock`` (unlike ``fcntl``/``lockf`` record locks) is not dropped when the process closes some other
descriptor of the same file, and the kernel releases it when the holder dies — after ``kill -9`` the next
start simply takes it. The holder writes its host, pid and start time into the file so that a second
process can name it; the file itself is never deleted (deleting a lock file races with a new holder).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from syncpoint.errors import JobLocked, LockHolder, StoreUnavailable
from syncpoint.model import utcnow
from syncpoint.names import check_job_name
from syncpoint.stores.base import JobLock


class FileJobLock(JobLock):
    def __init__(self, fd: int, holder: LockHolder) -> None:
        self._fd: int | None = fd
        self._holder = holder
        self._write()

    def _write(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, json.dumps(self._holder.__dict__).encode(), 0)

    def set_run(self, run_id: str) -> None:
        self._holder = LockHolder(self._holder.host, self._holder.pid, self._holder.since, run_id)
        self._write()

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the descriptor drops the flock


class LockDirectory:
    """A directory of per-job lock files."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, job: str) -> Path:
        return self.directory / f"{check_job_name(job)}.lock"

    def _open(self, job: str) -> int:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            return os.open(self._path(job), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StoreUnavailable(
                f"cannot create the lock file in {self.directory}: {exc.strerror}; "
                "check that the checkpoint directory is writable"
            ) from None

    def acquire(self, job: str, run_id: str | None = None) -> FileJobLock:
        fd = self._open(job)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder_soon(fd)
            os.close(fd)
            raise JobLocked(job, holder) from None
        except BaseException:
            os.close(fd)
            raise
        holder = LockHolder(socket.gethostname(), os.getpid(), utcnow().isoformat(timespec="seconds"), run_id)
        return FileJobLock(fd, holder)

    def holder(self, job: str) -> LockHolder | None:
        """A probe; it creates nothing and needs no write access (``flock`` works on a read-only descriptor),
        so a store can be inspected where its files cannot be written (another user's, a read-only mount)."""
        try:
            fd = os.open(self._path(job), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreUnavailable(
                f"cannot read the lock file {self._path(job)}: {exc.strerror}; check its permissions"
            ) from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return _read_holder_soon(fd) or LockHolder("?", 0, "?")
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)


def _read_holder_soon(fd: int, wait: float = 1.0) -> LockHolder | None:
    """The holder's name; a holder that has just taken the lock writes it a moment later, so an unreadable
    file is read again for up to ``wait`` seconds before the lock is reported without a name."""
    deadline = time.monotonic() + wait
    while True:
        holder = _read_holder(fd)
        if holder is not None or time.monotonic() >= deadline:
            return holder
        time.sleep(0.005)


def _read_holder(fd: int) -> LockHolder | None:
    try:
        raw = os.pread(fd, 4096, 0)
        data = json.loads(raw)
        return LockHolder(str(data["host"]), int(data["pid"]), str(data["since"]), data.get("run_id"))
    except (OSError, ValueError, KeyError, TypeError):
        return None

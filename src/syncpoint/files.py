"""Files a sync writes that stay exact across crashes: an append-only JSON Lines file whose length the
checkpoint records (``JsonlSink``), and the directory fsyncs that make a new file's name durable.

Why a sink and not ``open(path, "a")``: a sync appends a page and then moves its cursor past it. A ``kill -9``
between the two leaves the page in the file but not in the checkpoint, so the resumed run fetches it again
and the file would hold it twice. Recording the file's length with the cursor, in the same commit, and
cutting the file back to that length before appending again makes the file hold every record exactly once,
whenever the crash came::

    cursor = task.token_cursor()
    with syncpoint.JsonlSink(path, cursor.extra.get("bytes", 0)) as sink:   # cut back to the checkpoint
        while not cursor.finished:
            page = fetch(cursor.token)
            size = sink.append(page.items)           # written, flushed, fsynced: the file's new length
            cursor.done(page.next, records=len(page.items), extra={"bytes": size})

The order is what makes it exact: the bytes are on disk before the checkpoint that counts them commits, and
whatever lies beyond the committed length was never counted, so dropping it loses nothing. The stores keep
their own files the same way (``syncpoint.stores.journal``); ``fsync_dir`` and ``ensure_dir`` are theirs too.
"""

from __future__ import annotations

import errno
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from syncpoint.errors import CorruptState

__all__ = ["JsonlSink", "ensure_dir", "fsync_dir"]

log = logging.getLogger("syncpoint.files")


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Flush a directory's entries to disk, so that a file created, renamed or removed in it stays so after a
    power loss (fsyncing the file itself makes its bytes durable, not its name)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_dir(path: str | os.PathLike[str]) -> None:
    """Create ``path`` and missing parents, fsyncing each new entry's parent so the new name is durable."""
    path = Path(path)
    if path.is_dir():
        return
    ensure_dir(path.parent)
    try:
        os.mkdir(path, 0o755)
    except FileExistsError:
        if not path.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path)) from None
        return
    fsync_dir(path.parent)


class JsonlSink:
    """An append-only JSON Lines file, cut back on open to the length the last checkpoint recorded.

    ``committed`` is that length: 0 for a file this sync starts (whatever a crashed attempt left in it goes),
    or None to adopt a file as it stands and append after it. A file shorter than ``committed`` has lost
    bytes the checkpoint counts — changed outside the sync — and opening it raises ``CorruptState``, leaving
    it untouched. Each ``append`` writes one JSON line per record, flushes and fsyncs, and returns the file's
    new length: record it in the checkpoint that moves past the page (``cursor.done(..., extra={...})``).

    One writer per file. A writer that may outlive its claim (a worker presumed dead that comes back) writes
    a file of its own per claim, and a reader takes each file's committed prefix (``read``), which bytes a
    fenced writer appends later never reach.
    """

    def __init__(self, path: str | os.PathLike[str], committed: int | None = 0) -> None:
        if committed is not None and (isinstance(committed, bool) or not isinstance(committed, int) or committed < 0):
            raise ValueError(f"committed must be a length in bytes (an int >= 0) or None, not {committed!r}")
        self.path = Path(path)
        self.committed = committed
        self._file: IO[bytes] | None = None
        self._length = committed or 0

    @property
    def length(self) -> int:
        """The file's length: after ``open``, the committed length; after each ``append``, the new one."""
        return self._length

    def open(self) -> int:
        """Create the file if needed, cut it back to ``committed`` and make that durable; its length."""
        if self._file is not None:
            return self._length
        created = not self.path.exists()
        if created and self.committed:  # the checkpoint counts bytes of a file that is gone: touch nothing
            raise self._shorter(0, self.committed)
        ensure_dir(self.path.parent)
        handle = open(self.path, "ab")  # noqa: SIM115 - kept open until close()
        try:
            size = os.fstat(handle.fileno()).st_size
            committed = size if self.committed is None else self.committed
            if size < committed:
                raise self._shorter(size, committed)
            if size > committed:
                log.info("%s: dropping %d byte(s) written after the last checkpoint", self.path, size - committed)
                handle.truncate(committed)
                os.fsync(handle.fileno())
            if created:
                fsync_dir(self.path.parent)
        except BaseException:
            handle.close()
            raise
        self._file, self._length = handle, committed
        return committed

    def append(self, records: Iterable[Any]) -> int:
        """Append one JSON line per record (UTF-8, not ASCII-escaped), flushed and fsynced; the new length.
        With no records nothing is written and the length is returned as it is."""
        if self._file is None:
            raise ValueError(f"{self.path}: append before open (use 'with JsonlSink(...) as sink:')")
        data = b"".join(json.dumps(record, ensure_ascii=False).encode() + b"\n" for record in records)
        if data:
            self._file.write(data)
            self._file.flush()
            os.fsync(self._file.fileno())
            self._length += len(data)
        return self._length

    def read(self) -> bytes:
        """The committed bytes: the first ``committed`` bytes of the file (all of it when ``committed`` is None),
        read without changing the file, so a writer the checkpoint no longer counts cannot add to them.
        ``CorruptState`` if the file is shorter."""
        with open(self.path, "rb") as handle:
            data = handle.read() if self.committed is None else handle.read(self.committed)
        if self.committed is not None and len(data) < self.committed:
            raise self._shorter(len(data), self.committed)
        return data

    def _shorter(self, size: int, committed: int) -> CorruptState:
        return CorruptState(
            f"{self.path} has {size} bytes but the checkpoint recorded {committed}: the file was changed outside "
            "this sync; restore it, or start over with a new run (or another file)"
        )

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> JsonlSink:
        self.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<JsonlSink {str(self.path)!r} length={self._length}>"

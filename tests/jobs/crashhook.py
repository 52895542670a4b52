"""Crash points for the crash-loop campaign: a job imports this and calls ``install()`` before it runs.

``SP_CRASH=POINT:N`` makes the process SIGKILL itself on the Nth time it reaches POINT. Nothing here is
in ``src/``: the points are reached by wrapping the stores' own methods in this process only.

    before_apply   entering Store.apply / apply_in: the destination has the page, the checkpoint does not
    in_commit      inside the store's transaction: SQLite after the writes, before COMMIT; JSON after
                   pending.json (the intent) is written, before any operation; PostgreSQL after BEGIN and
                   the first statements reached the server, before COMMIT (commits with ledger rows: one
                   without them is a single round trip, with no instant in between to kill at)
    mid_execute    JSON only: halfway through the intent's operations (temp files written, not renamed)
    compact_seg    JSON only: compaction wrote the new segment, meta.json not switched yet
    compact_sweep  JSON only: compaction switched meta.json, the old journal/segments not deleted yet

``SP_SIGNAL=POINT:N:SIGNAME:COUNT`` instead sends the process SIGNAME (``SIGINT``/``SIGTERM``) COUNT
times (1 or 2) on the Nth time it reaches POINT: a signal that arrives in the middle of a commit.

``SP_JOURNAL_LIMIT=N`` lowers the JSON store's compaction threshold so small jobs compact often.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

POINTS = ("before_apply", "in_commit", "mid_execute", "compact_seg", "compact_sweep")
_counts: dict[str, int] = {}


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


_signal: tuple[str, int, int, int] | None = None  # point, n, signal number, count


def _reached(point: str, target: tuple[str, int] | None) -> None:
    if _signal is not None and _signal[0] == point:
        key = "signal:" + point
        _counts[key] = _counts.get(key, 0) + 1
        if _counts[key] == _signal[1]:
            for _ in range(_signal[3]):
                os.kill(os.getpid(), _signal[2])
    if target is None or target[0] != point:
        return
    _counts[point] = _counts.get(point, 0) + 1
    if _counts[point] >= target[1]:
        _die()


def _wrap(owner: Any, name: str, point: str, target: tuple[str, int] | None, *, after: bool = False,
          static: bool = False) -> None:
    original: Callable[..., Any] = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not after:
            _reached(point, target)
        result = original(*args, **kwargs)
        if after:
            _reached(point, target)
        return result

    setattr(owner, name, staticmethod(wrapper) if static else wrapper)


def install() -> None:
    spec = os.environ.get("SP_CRASH", "")
    target: tuple[str, int] | None = None
    if spec:
        point, _, n = spec.partition(":")
        if point not in POINTS:
            raise SystemExit(f"crashhook: unknown point {point!r}")
        target = (point, int(n or "1"))
    signal_spec = os.environ.get("SP_SIGNAL", "")
    if signal_spec:
        global _signal
        point, n, name, count = signal_spec.split(":")
        _signal = (point, int(n), int(getattr(signal, name)), int(count))

    from syncpoint.stores import sqlite as sq

    _wrap(sq.SQLiteStore, "apply", "before_apply", target)
    _wrap(sq.SQLiteStore, "_write", "in_commit", target, after=True)
    try:
        from syncpoint.stores import journal
        from syncpoint.stores import jsondir as jd
    except ImportError:
        pass
    else:
        _wrap(jd.JsonDirStore, "apply", "before_apply", target)
        _wrap(jd.JsonDirStore, "_execute", "in_commit", target)
        original_execute = jd.JsonDirStore._execute
        original_write_temp = journal.write_temp
        inside = {"on": False}

        def _execute(self: Any, ops: Any) -> None:
            inside["on"] = True
            try:
                original_execute(self, ops)
            finally:
                inside["on"] = False

        def write_temp(path: Any, data: bytes) -> Any:
            result = original_write_temp(path, data)
            if inside["on"]:  # a temp file of the intent written; its rename (and the rest) still to come
                _reached("mid_execute", target)
            return result

        jd.JsonDirStore._execute = _execute  # type: ignore[method-assign]

        journal.write_temp = write_temp  # type: ignore[assignment]
        _wrap(journal, "write_segment", "compact_seg", target, after=True)
        _wrap(journal.LedgerUnit, "sweep", "compact_sweep", target)
        limit = os.environ.get("SP_JOURNAL_LIMIT")
        if limit:
            init = jd.JsonDirStore.__init__

            def __init__(self: Any, directory: Any, *, journal_limit: int = 0, **options: Any) -> None:
                init(self, directory, journal_limit=int(limit), **options)

            jd.JsonDirStore.__init__ = __init__  # type: ignore[method-assign]
    if not any("postgres" in arg for arg in sys.argv):  # importing psycopg is a third of a short job's start
        return
    from syncpoint.stores import postgres as pg

    _wrap(pg.PostgresStore, "apply", "before_apply", target)
    _wrap(pg.PostgresStore, "apply_in", "before_apply", target)
    _wrap(pg.PostgresStore, "_task_ids", "in_commit", target, static=True)

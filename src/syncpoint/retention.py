"""Which runs clean-up deletes: finished runs by default, resumable runs only when asked, never a live one.

A run is *finished* when nothing will continue it: it completed, or it failed after using every attempt
``--max-attempts`` allowed it. Any other run — ``running`` (a killed process leaves it so), ``interrupted``,
``partial``, ``failed`` with something left to retry — is *resumable*: ``--resume`` would pick it up, and
deleting it throws work away. So ``--cleanup`` and ``syncpoint runs cleanup`` delete resumable runs only
when the user names their status (``--status``) or says ``--include-resumable``.

A run that a live process works on is never deleted. The deletion runs under the job's lock when the lock
is free, so no process can start resuming a run while it is being deleted; when a live process holds the
lock, its run is kept — and every run of the job, if it has not yet said which run it works on. The workers
of a run shared by many machines (``syncpoint.distributed``) take no job lock: a ``running`` run with a task
lease held by a live worker (``syncpoint.liveness``) is kept too. That is checked just before deleting; a
worker that comes to the run after that finds no lease to take, and the commit of one that was silent until
then finds its lease gone and writes nothing.

How "failed after its last attempt" is told from the stored record: the run's error is the line the run
(``run.py``) and the resume logic (``resume.py``) write when the attempts run out, ``used N of M attempts``
with N >= M. The limit is a flag of each invocation, not a stored field, so that line is the only trace;
``tests/cli/test_cli_cleanup.py`` exhausts a real run's attempts to keep the two in step.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta

from syncpoint.errors import JobLocked
from syncpoint.liveness import live_workers
from syncpoint.model import RunRecord, RunStatus
from syncpoint.stores.base import ChangeSet, Store

ATTEMPTS_USED = re.compile(r"used (\d+) of (\d+) attempts\b")


def attempts_exhausted(run: RunRecord) -> bool:
    """A failed run that used all its attempts: ``--resume`` under the same limit refuses it."""
    found = ATTEMPTS_USED.match(run.error or "") if run.status is RunStatus.FAILED else None
    return found is not None and int(found[1]) >= int(found[2])


def finished(run: RunRecord) -> bool:
    """Completed, or failed for good: nothing continues it, so clean-up may delete it by default."""
    return run.status is RunStatus.COMPLETED or attempts_exhausted(run)


def select(
    runs: Sequence[RunRecord],
    *,
    now: datetime,
    keep: int | None = None,
    older_than: timedelta | None = None,
    statuses: Sequence[RunStatus] | None = None,
    include_resumable: bool = False,
) -> list[RunRecord]:
    """Of one job's ``runs`` (newest first): those beyond the ``keep`` newest and/or started more than
    ``older_than`` before ``now``; of those, the ``statuses`` named (any run of them, resumable or not), or
    else the finished ones — every one with ``include_resumable``. Liveness is not looked at here."""
    chosen = list(runs[keep:] if keep is not None else runs)
    if older_than is not None:
        cutoff = now - older_than
        chosen = [r for r in chosen if r.started_at < cutoff]
    if statuses is not None:
        return [r for r in chosen if r.status in statuses]
    return chosen if include_resumable else [r for r in chosen if finished(r)]


def delete(store: Store, job: str, doomed: Sequence[RunRecord], *, dry_run: bool = False) -> list[RunRecord]:
    """Delete ``doomed`` (runs of ``job``) but any a live process or live workers hold; the runs deleted (or,
    with ``dry_run``, that would be)."""
    doomed = [r for r in doomed if not live_workers(store, r)]  # one read for each running run only
    if not doomed:
        return []
    if dry_run:
        return _not_held(store, job, doomed)
    try:
        lock = store.lock(job)
    except JobLocked:  # a live process runs the job: keep what it works on, delete the rest
        gone = _not_held(store, job, doomed)
        if gone:
            store.apply(ChangeSet(run_deletes=[r.run_id for r in gone]))
        return gone
    with lock:  # nobody can start resuming one of them meanwhile
        store.apply(ChangeSet(run_deletes=[r.run_id for r in doomed]))
    return list(doomed)


def _not_held(store: Store, job: str, runs: Sequence[RunRecord]) -> list[RunRecord]:
    holder = store.lock_holder(job)
    if holder is None:
        return list(runs)
    if holder.run_id is None:  # the holder has not said which run it works on yet: it may be any of them
        return []
    return [r for r in runs if r.run_id != holder.run_id]

"""Deciding new-or-resume when a run opens (the caller holds the job's lock).

    --resume-run ID   that run (it must belong to the job; a completed one only with --retry-failed)
    key=K             the incomplete run for that key, else its completed one (reopened: it finds nothing left,
                      or only what is new), else a new one with that key (daily syncs)
    --resume          the latest incomplete run, else a new one ("nothing to resume" is said)
    otherwise         a new run (an incomplete one left behind is named, with how to resume it)

A run that has used its ``--max-attempts`` is marked failed (the one write made here) and refused.

A run found in status ``running`` is resumable at once: we hold the lock, so its holder is dead — unless
it is shared by many workers (``syncpoint.distributed``), which take no job lock: a run with open task leases
(queued or leased) belongs to its workers, and resuming it here is refused (exit 64) before anything is
written; a worker continues it. And while live workers work on any run of the job, no run of it starts or
resumes here at all (``JobLocked``, exit 75): one writer per job, as the lock gives single processes.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from syncpoint import codec
from syncpoint.errors import AttemptsExhausted, ConfigChanged, JobLocked, UsageError
from syncpoint.liveness import describe_workers, live_workers, open_leases
from syncpoint.model import RunRecord, RunStatus, TaskStatus, utcnow
from syncpoint.options import RunOptions
from syncpoint.stores.base import ChangeSet

if TYPE_CHECKING:
    from syncpoint.job import Job

log = logging.getLogger("syncpoint.run")

RESUMABLE = [s for s in RunStatus if s.resumable]
_SHARED_RUNS_CHECKED = 20  # running runs of one job looked at for live workers (a job has one or two)


def config_digest(config: dict[str, Any]) -> str:
    return hashlib.sha256(codec.dumps(config).encode()).hexdigest()[:16]


def changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted paths of the keys whose values differ (added, removed or changed)."""
    if isinstance(old, dict) and isinstance(new, dict):
        keys: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in old or key not in new:
                keys.append(path)
            else:
                keys.extend(changed_keys(old[key], new[key], path))
        return keys
    return [] if codec.dumps(old) == codec.dumps(new) else [prefix or "(whole config)"]


def choose_run(job: Job, options: RunOptions) -> tuple[RunRecord, bool]:
    """The run to work on and whether it is a resume; the caller writes the chosen record.

    One write happens here: a run found to have used its ``max_attempts`` without finishing is marked
    ``failed`` with "used N of M attempts" before ``AttemptsExhausted`` is raised: its last attempt may have
    left it ``running`` (``kill -9``) or ``partial`` (a limit lowered since), and its status must say that it
    ended and why (``syncpoint runs list``, the scheduler's next look). Every other refusal (unknown run,
    changed config, a run shared by workers) writes nothing."""
    _refuse_beside_workers(job)
    store = job.store
    if options.resume_run is not None:
        found = store.get_run(options.resume_run)
        if found is None or found.job != job.name:
            raise UsageError(f"no run {options.resume_run} for job {job.name!r}; see --list-runs")
        if found.status is RunStatus.COMPLETED and not options.retry_failed:
            raise UsageError(
                f"run {found.run_id} is completed; nothing to resume (add --retry-failed to retry its failures)"
            )
        return _resume(job, options, found), True
    if options.key is not None and not options.new_run:
        found = _latest(job, key=options.key)
        if found is None:  # the key's work is done: reopen that run (it finds nothing, or only what is new)
            done = job.store.list_runs(job.name, key=options.key, statuses=[RunStatus.COMPLETED], limit=1)
            found = done[0] if done else None
        if found is not None:
            return _resume(job, options, found), True
        if options.resume:
            log.info("nothing to resume for job %s (key %s); starting a new run", job.name, options.key)
        return _new(job, options), False
    if options.resume:
        found = _latest(job)
        if found is None and options.retry_failed:
            found = _latest_with_failures(job)
        if found is not None:
            return _resume(job, options, found), True
        log.info("nothing to resume for job %s; starting a new run", job.name)
        return _new(job, options), False
    if not options.new_run:
        left = _latest(job)
        if left is not None:
            log.warning(
                "run %s of job %s is %s; starting a new run (resume it with --resume)",
                left.run_id, job.name, left.status.value,
            )
    return _new(job, options), False


def _latest(job: Job, key: str | None = None) -> RunRecord | None:
    runs = job.store.list_runs(job.name, statuses=RESUMABLE, key=key, limit=1)
    return runs[0] if runs else None


def _latest_with_failures(job: Job) -> RunRecord | None:
    """``--resume --retry-failed`` after a run that completed with permanent failures: that run."""
    runs = job.store.list_runs(job.name, limit=1)
    if runs and any(t.status is TaskStatus.FAILED or t.failed for t in job.store.get_tasks(runs[0].run_id)):
        return runs[0]
    return None


def _refuse_beside_workers(job: Job) -> None:
    """Workers take no job lock, so the lock we hold does not keep us from writing beside them: while live
    workers (a fresh lease heartbeat, ``syncpoint.liveness``) work on a run of this job, refuse to start or
    resume one here, as a held lock would (exit 75: try again later). Open leases whose workers are all gone
    do not block a new run; resuming that run is refused by ``_refuse_shared``."""
    for run in job.store.list_runs(job.name, statuses=[RunStatus.RUNNING], limit=_SHARED_RUNS_CHECKED):
        busy = live_workers(job.store, run)
        if busy:
            raise JobLocked(job.name, None, workers=f"the live workers of run {run.run_id} "
                                                    f"({describe_workers(busy)})")


def _refuse_shared(job: Job, found: RunRecord) -> None:
    """A run whose tasks are leased to workers is theirs: a single process resuming it would commit next to
    them without a lease (and the queue would hand its tasks out again)."""
    waiting = open_leases(job.store.leases(found.run_id))
    if waiting:
        raise UsageError(
            f"run {found.run_id} of job {job.name!r} is shared by workers ({len(waiting)} task lease(s) open); "
            "a single process does not resume it: see its workers with 'syncpoint status', start a worker to "
            "continue it, or start over with --new-run"
        )


def _new(job: Job, options: RunOptions) -> RunRecord:
    from syncpoint.run import new_run_id

    now = utcnow()
    return RunRecord(
        run_id=new_run_id(now), job=job.name, key=options.key, status=RunStatus.RUNNING,
        config=job.config, config_digest=config_digest(job.config), params=dict(options.params),
        started_at=now, updated_at=now, attempts=1,
    )


def _resume(job: Job, options: RunOptions, found: RunRecord) -> RunRecord:
    _refuse_shared(job, found)  # first: nothing below may write to a run its workers own
    limit = options.max_attempts
    if limit is not None and found.attempts >= limit and found.status is not RunStatus.COMPLETED:
        if found.status is not RunStatus.FAILED:
            job.store.apply(ChangeSet(runs=[replace(found, status=RunStatus.FAILED, updated_at=utcnow(),
                                                     error=f"used {found.attempts} of {limit} attempts")]))
        raise AttemptsExhausted(
            f"run {found.run_id} of job {job.name!r} has used {found.attempts} of {limit} attempts without "
            "finishing; investigate its errors (syncpoint runs show), then start over with --new-run"
        )
    digest = config_digest(job.config)
    config = found.config
    if digest != found.config_digest:
        changed = changed_keys(found.config, job.config)
        if not options.force:
            raise ConfigChanged(found.run_id, changed)
        log.warning("config changed (keys: %s); resuming run %s anyway (--force)", ", ".join(changed),
                    found.run_id)
        config = job.config
    return replace(
        found, status=RunStatus.RUNNING, config=config, config_digest=config_digest(config),
        params={**found.params, **options.params}, attempts=found.attempts + 1, updated_at=utcnow(),
        ended_at=None, exit_code=None, error=None,
    )

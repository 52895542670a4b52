"""Many workers on one run: the fan-out, the workers, and the keeper that heartbeats and re-queues.

    job = syncpoint.Job("gh", config, store=URL)                # the PostgreSQL store
    fleet = Fleet(job)                                            # its queue: procrastinate, same database

    @fleet.task
    def collect(run: WorkerRun, task: syncpoint.Task) -> None:  # one task, resumed from its checkpoint
        ...

    run_id = fleet.start(["repo-a:issues", "repo-b:issues"])   # run + tasks + queue jobs, one transaction
    sys.exit(fleet.work(concurrency=2))                          # on any number of machines

The queue is procrastinate's (jobs in PostgreSQL, ``SKIP LOCKED`` fetching, LISTEN/NOTIFY). What syncpoint
adds is the lease (``stores/pg_leases.py``): a queue job takes its task's lease with the next epoch, resumes
the task from its checkpoint, and every commit checks that epoch in its own transaction. The keeper thread of
each worker refreshes its leases' heartbeats and hands leases without a heartbeat for ``stall_timeout``
seconds to a new queue job (the holder is fenced from then on). Why a new job, and not procrastinate's
``retry_job``: retrying re-queues the *same* job row, which the presumed-dead worker, coming back, would mark
finished under its successor; a job that is not its lease's current job does nothing here.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, TypeVar

import procrastinate
from procrastinate.worker import Worker

from syncpoint.distributed.worker_run import Attempts, WorkerRun
from syncpoint.errors import (
    EXIT_OK,
    EXIT_SIGINT,
    EXIT_SIGTERM,
    ConfigChanged,
    StoreError,
    SyncpointError,
    UsageError,
)
from syncpoint.job import Job
from syncpoint.model import RunRecord, RunStatus, TaskRecord, TaskStatus, utcnow
from syncpoint.names import check_value_name
from syncpoint.resume import changed_keys, config_digest
from syncpoint.run import new_run_id
from syncpoint.signals import exit_at_once_on_signal
from syncpoint.stores.base import ChangeSet
from syncpoint.stores.pg_leases import Holder, LeaseSql
from syncpoint.stores.postgres import PostgresStore
from syncpoint.task import Task

log = logging.getLogger("syncpoint.distributed")

TaskFn = Callable[[WorkerRun, Task], object]
F = TypeVar("F", bound=TaskFn)

DEFAULT_STALL_TIMEOUT = 30.0


class Fleet:
    """A job whose tasks are worked on by many processes through a procrastinate queue (see the module doc).

    ``stall_timeout``: seconds without a heartbeat after which a task's lease is handed to another worker
    (default 30; heartbeats every third of it). ``max_attempts`` / ``retry_wait``: a task that fails with a
    retryable error is tried again after ``retry_wait`` seconds (doubled each time), up to ``max_attempts``
    attempts in all; then it is failed for good and the run ends ``failed``. A permanent error fails the task
    at once and is counted; the run still completes (the rule of one machine, ``syncpoint.failures``).
    """

    def __init__(
        self,
        job: Job,
        app: procrastinate.App | None = None,
        *,
        queue: str | None = None,
        stall_timeout: float = DEFAULT_STALL_TIMEOUT,
        max_attempts: int = 3,
        retry_wait: float = 5.0,
    ) -> None:
        if not isinstance(job.store, PostgresStore):
            raise UsageError(
                f"job {job.name!r}: many workers on one run need the PostgreSQL store (--store postgresql://...), "
                f"not {type(job.store).__name__}"
            )
        if not stall_timeout > 0 or max_attempts < 1 or retry_wait < 0:
            raise UsageError("stall_timeout must be > 0, max_attempts >= 1 and retry_wait >= 0")
        self.job = job
        self.store: PostgresStore = job.store
        #: The queue's app: yours (its connector on the store's database), or one made on the store's database.
        self.app = app or procrastinate.App(
            connector=procrastinate.PsycopgConnector(conninfo=self.store.target.conninfo))
        self.queue = queue or default_queue(self.store.schema, job.name)
        self.task_name = _bounded(f"syncpoint:{self.store.schema}:{job.name}")
        self.stall_timeout = float(stall_timeout)
        self.heartbeat = self.stall_timeout / 3
        self.attempts = Attempts(max_attempts, retry_wait)
        self._sql = LeaseSql(self.store.schema)
        # defers inside our own transactions (connection=...): a connector that is never opened suffices
        self._deferrer = procrastinate.App(connector=procrastinate.SyncPsycopgConnector())
        self._fn: TaskFn | None = None
        self._active: dict[int, WorkerRun] = {}
        self._active_mu = threading.Lock()
        self._stop: tuple[str, int] | None = None
        host = socket.gethostname()
        self._holder = Holder(host, os.getpid(), f"{host}:{os.getpid()}", self.stall_timeout)
        self.app.task(name=self.task_name, queue=self.queue, pass_context=True)(self._handle)

    @classmethod
    def open(
        cls,
        name: str,
        config: dict[str, Any] | None = None,
        *,
        store: str,
        queue: str | None = None,
        stall_timeout: float = DEFAULT_STALL_TIMEOUT,
        max_attempts: int = 3,
        retry_wait: float = 5.0,
        **job_options: Any,
    ) -> Fleet:
        """A fleet on a job it opens itself (``Job(name, config, store=store, **job_options)``); the job's store
        is closed again when the fleet cannot be made (a store that is not PostgreSQL, a bad setting)."""
        if not store.startswith(("postgresql://", "postgres://")):  # refused before a store is made anywhere
            raise UsageError(f"job {name!r}: many workers on one run need the PostgreSQL store "
                             "(postgresql://HOST/DB?schema=NAME)")
        job = Job(name, config, store=store, **job_options)
        try:
            return cls(job, queue=queue, stall_timeout=stall_timeout, max_attempts=max_attempts,
                       retry_wait=retry_wait)
        except BaseException:
            job.close()
            raise

    # -- the task function ----------------------------------------------------------------------------
    def task(self, fn: F) -> F:
        """Register the function that works on one task: ``fn(run, task)``; returns it unchanged."""
        self._fn = fn
        return fn

    # -- fan-out --------------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Create procrastinate's tables in the store's database if they are missing (safe to call from many
        processes at once: an advisory lock serialises it)."""
        from procrastinate.schema import SchemaManager

        with self.store.transaction() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('syncpoint:procrastinate-schema'))")
            found = conn.execute("SELECT to_regclass('procrastinate_jobs')").fetchone()
            if found is None or found[0] is None:
                conn.execute(SchemaManager.get_schema().encode())

    def start(
        self, tasks: Iterable[str], *, key: str | None = None, params: dict[str, Any] | None = None
    ) -> str:
        """Create a run with ``tasks`` and one queue job per task, in one transaction; its run ID.

        With ``key``, the running run of that key is reused: only tasks it does not have yet are added and
        queued, so starting the same fan-out twice (after a crash, or by mistake) queues nothing twice.
        """
        names = [check_value_name(n, "task name") for n in tasks]
        if key is not None:
            check_value_name(key, "run key")
        self.prepare()
        with self.store.lock(self.job.name):  # one fan-out at a time per job (workers do not take this lock)
            found = [] if key is None else self.store.list_runs(self.job.name, key=key, statuses=[RunStatus.RUNNING],
                                                                 limit=1)
            if found:
                run = self._same_config(found[0])
                return self._fan_out(run, names, new=False)
            now = utcnow()
            run = RunRecord(
                run_id=new_run_id(now), job=self.job.name, key=key, status=RunStatus.RUNNING,
                config=self.job.config, config_digest=config_digest(self.job.config), params=dict(params or {}),
                started_at=now, updated_at=now, attempts=1,
            )
            return self._fan_out(run, names, new=True)

    def enqueue(self, run_id: str, tasks: Iterable[str]) -> list[str]:
        """Add ``tasks`` to a running run and queue them (the ones it has already are left alone); the names
        that were new. For fan-outs that discover their work in stages."""
        names = [check_value_name(n, "task name") for n in tasks]
        with self.store.lock(self.job.name):
            run = self.job.get_run(run_id)
            if run.status is not RunStatus.RUNNING:
                raise UsageError(f"run {run_id} is {run.status.value}; start a new one to add tasks")
            before = {t.name for t in self.store.get_tasks(run_id)}
            self._fan_out(self._same_config(run), names, new=False)
        return [n for n in dict.fromkeys(names) if n not in before]

    def retry(self, run_id: str, *, permanent: bool = False) -> list[str]:
        """Queue the failed tasks of an ended run again; the names queued. The run is running again (one
        attempt more) and each task continues from its checkpoint, with its attempts counted afresh.

        The distributed ``--resume``: a run that ended ``failed`` (a task used up its attempts on retryable
        errors) continues instead of starting over. Tasks failed with a permanent error are retried only with
        ``permanent=True`` (as ``--retry-failed`` on one machine). Refused (``UsageError``, exit 64, nothing
        written) for a run still running, a run not fanned out by a fleet, and a run with nothing to retry.
        """
        self.prepare()
        with self.store.lock(self.job.name):
            run = self._same_config(self.job.get_run(run_id))
            if run.status is RunStatus.RUNNING:
                raise UsageError(f"run {run_id} is still running; its workers retry failed tasks themselves "
                                 "(up to max_attempts); a retry continues it once it has ended")
            if not self.store.leases(run_id):
                raise UsageError(f"run {run_id} was not fanned out by a fleet; resume it with --resume-run {run_id}")
            failed_all = [t for t in self.store.get_tasks(run_id) if t.status is TaskStatus.FAILED]
            failed = [t for t in failed_all if permanent or t.retryable]
            if not failed_all:
                raise UsageError(f"run {run_id} has no task that failed; nothing to retry")
            if not failed:
                raise UsageError(f"run {run_id} has no task that failed with a retryable error; "
                                 f"{len(failed_all)} failed for good ({', '.join(t.name for t in failed_all)}): "
                                 "permanent=True retries the others too")
            now = utcnow()
            reopened = replace(run, status=RunStatus.RUNNING, updated_at=now, ended_at=None, error=None,
                               exit_code=None, attempts=run.attempts + 1)
            again = [replace(t, status=TaskStatus.IN_PROGRESS, error=None, retryable=False, updated_at=now,
                             completed_at=None) for t in failed]
            with self.store.transaction() as conn:
                self.store.apply_in(conn, ChangeSet(runs=[reopened], tasks=again))
                queued = self._sql.reopen(conn, run_id, [t.name for t in failed])
                for name in queued:
                    self._sql.set_queue_job(conn, run_id, name, self._defer(conn, run_id, name, 0.0))
        log.info("run %s of job %s: %d failed task(s) queued again on %s", run_id, self.job.name, len(queued),
                 self.queue)
        return queued

    def _same_config(self, run: RunRecord) -> RunRecord:
        if run.config_digest != config_digest(self.job.config):
            raise ConfigChanged(run.run_id, changed_keys(run.config, self.job.config))
        return run

    def _fan_out(self, run: RunRecord, names: Sequence[str], *, new: bool) -> str:
        existing = {t.name: t for t in ([] if new else self.store.get_tasks(run.run_id))}
        records: list[TaskRecord] = []
        for name in dict.fromkeys(names):
            if name not in existing:
                position = len(existing) + len(records)
                records.append(TaskRecord(run_id=run.run_id, name=name, position=position, updated_at=utcnow()))
        with self.store.transaction() as conn:
            if not new and not self._sql.lock_running(conn, run.run_id):
                raise UsageError(f"run {run.run_id} ended while tasks were being added to it; nothing was added: "
                                 "start a new run for them")
            self.store.apply_in(conn, ChangeSet(runs=[run] if new else [], tasks=records))
            queued = self._sql.add(conn, run.run_id, self.job.name, [r.name for r in records])
            for name in queued:
                self._sql.set_queue_job(conn, run.run_id, name, self._defer(conn, run.run_id, name, 0.0))
            conn.execute(self.store.queries.finish_run, (run.run_id,))  # a run with no tasks is done at once
        log.info("run %s of job %s: %d task(s) queued on %s", run.run_id, self.job.name, len(queued), self.queue)
        return run.run_id

    def _defer(self, conn: Any, run_id: str, task: str, delay: float) -> int:
        options: dict[str, Any] = {"queue": self.queue, "connection": conn}
        if delay > 0:
            options["schedule_in"] = {"seconds": delay}
        return int(self._deferrer.configure_task(self.task_name, **options).defer(run_id=run_id, task=task))

    # -- one queue job --------------------------------------------------------------------------------
    def _handle(self, context: procrastinate.JobContext, run_id: str, task: str) -> None:
        if self._fn is None:
            raise UsageError(f"fleet of job {self.job.name!r} has no task function; decorate one with @fleet.task")
        job_id = context.job.id
        assert job_id is not None
        with self.store.connection() as conn:
            grant = self._sql.take(conn, run_id, task, job_id, self._holder)
        if grant is None:
            log.info("queue job %s for task %s of run %s is stale (the task moved on); nothing to do",
                     job_id, task, run_id)
            return

        def continue_task(conn: Any, delay: float) -> None:
            self._sql.set_queue_job(conn, run_id, task, self._defer(conn, run_id, task, delay))

        run = WorkerRun(self.job, run_id, task, grant.epoch, failures=grant.failures, attempts=self.attempts,
                        continue_task=continue_task)
        with self._active_mu:
            self._active[id(run)] = run
            if self._stop is not None:
                run.request_stop(*self._stop)
        try:
            ending = run.execute(self._fn)
        finally:
            with self._active_mu:
                del self._active[id(run)]
        log.info("task %s of run %s (epoch %d): %s", task, run_id, grant.epoch, ending.value)

    # -- a worker process -----------------------------------------------------------------------------
    def work(self, *, concurrency: int = 1, until_done: bool = False, name: str | None = None,
             log_format: str | None = None) -> int:
        """Work on this job's queue until a signal (or, with ``until_done``, until no task is left); the exit code.

        ``until_done`` on a store where no task of the job was ever queued is a usage error (exit 64): it is
        most likely the wrong store or job name, and must not pass for a finished collection.

        A first SIGINT/SIGTERM hands every task in progress back (commit, lease queued for another worker at
        once) and exits 130/143; a second exits at once (the leases then wait for ``stall_timeout``). Logging is
        set up as ``Job.execute`` does unless the program did (``log_format``: "text" or "json", the standard
        ``--log-format``; one line per task taken over, handed back, failed or done); an error a user can
        cause (the database away, a missing task function) ends in one line and its exit code.
        """
        from syncpoint.fail import report_error
        from syncpoint.logs import ensure_logging

        ensure_logging(log_format)
        try:
            return self._work_until(concurrency, until_done, name)
        except SyncpointError as err:
            return report_error(err)

    def _work_until(self, concurrency: int, until_done: bool, name: str | None) -> int:
        if self._fn is None:
            raise UsageError(f"fleet of job {self.job.name!r} has no task function; decorate one with @fleet.task")
        if concurrency < 1:
            raise UsageError(f"concurrency must be at least 1, got {concurrency}")
        if name is not None:
            self._holder = replace(self._holder, worker=name)
        for signum in (signal.SIGINT, signal.SIGTERM):  # until the worker's own handlers: nothing held yet
            signal.signal(signum, _exit_on_signal)
        self.prepare()
        if until_done:
            with self.store.connection() as conn:
                if not self._sql.ever_queued(conn, self.job.name):
                    raise UsageError(
                        f"no task of job {self.job.name!r} was ever queued in {self.store.location}; start the "
                        "fan-out first (fleet.start), or check the store URL")
        self._stop = None
        return asyncio.run(self._work(concurrency, until_done))

    async def _work(self, concurrency: int, until_done: bool) -> int:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(max_workers=concurrency + 2, thread_name_prefix="syncpoint"))
        worker = Worker(
            self.app, queues=[self.queue], concurrency=concurrency, name=self._holder.worker,
            install_signal_handlers=False, update_heartbeat_interval=self.heartbeat,
            stalled_worker_timeout=self.stall_timeout,
            delete_jobs="successful",  # the run's history is syncpoint's; a finished queue job is plumbing
        )
        exit_code = EXIT_OK

        def on_signal(signum: int) -> None:
            nonlocal exit_code
            code = EXIT_SIGINT if signum == signal.SIGINT else EXIT_SIGTERM
            if self._stop is not None:
                os._exit(code)  # the second signal: at once; the last commits stand
            exit_code = code
            log.info("%s: tasks in progress are handed back at their next safe point; a second signal exits at once",
                     signal.Signals(signum).name)
            self.request_stop(f"stopped by {signal.Signals(signum).name}", code)
            worker.stop()  # type: ignore[no-untyped-call]

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, on_signal, signum)
        keeper = Keeper(self, worker, until_done)
        keeper.start()
        try:
            async with self.app.open_async():
                await worker.run()  # type: ignore[no-untyped-call]
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
            # winding down (the keeper, the thread pool, the loop): a signal now exits at once, as a second does
            exit_at_once_on_signal(signal.SIGTERM if exit_code == EXIT_SIGTERM else None)
            keeper.stop()
        return exit_code

    def request_stop(self, reason: str, exit_code: int) -> None:
        """Hand back every task in progress at its next safe point; take no new ones (the worker stops)."""
        with self._active_mu:
            self._stop = (reason, exit_code)
            for run in self._active.values():
                run.request_stop(reason, exit_code)

    def held(self) -> list[WorkerRun]:
        with self._active_mu:
            return list(self._active.values())

    # -- the keeper's two jobs ----------------------------------------------------------------------------
    def beat(self) -> None:
        """Refresh the heartbeat of every lease held here; a lease found lost stops its task (nothing more
        of it is written)."""
        runs = {(r.run_id, r.task_name, r.epoch): r for r in self.held() if not r.ending}
        with self.store.connection() as conn:
            lost = self._sql.heartbeat(conn, list(runs))
            self._sql.touch_runs(conn, [key[0] for key in runs if key not in lost])
        for key in lost:
            log.warning("lost the lease on task %s of run %s (epoch %d): another worker took it over",
                        key[1], key[0], key[2])
            runs[key].lose()

    def reap(self) -> int:
        """Hand every stalled lease of this job to a new queue job; how many."""
        with self.store.transaction() as conn:
            stalled = self._sql.stalled(conn, self.job.name, self.stall_timeout)
            for run_id, task in stalled:
                self._sql.requeue(conn, run_id, task, self._defer(conn, run_id, task, 0.0))
        for run_id, task in stalled:
            log.warning("task %s of run %s: no sign of life for %g s; handed to another worker", task, run_id,
                        self.stall_timeout)
        return len(stalled)

    def open_leases(self) -> int:
        with self.store.connection() as conn:
            return self._sql.open_count(conn, self.job.name)


def default_queue(schema: str, job: str) -> str:
    """The queue of a job's fleet: procrastinate's tables are shared by every schema of the database, so it
    names the schema too; its LISTEN channel (``procrastinate_queue_v1#`` + the queue) must fit PostgreSQL's
    63-byte names, so a long one is shortened to a prefix and a hash."""
    return _bounded(f"syncpoint.{schema}.{job}", 40)


def _bounded(name: str, most: int = 120) -> str:
    """``name``, or a stable short form of it (a prefix and a hash) when it is longer than ``most``."""
    if len(name.encode()) <= most and name.isascii():
        return name
    import hashlib

    prefix = name.encode("ascii", "replace")[: most - 17].decode()
    return f"{prefix}~{hashlib.sha256(name.encode()).hexdigest()[:16]}"


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(EXIT_SIGINT if signum == signal.SIGINT else EXIT_SIGTERM)


class Keeper(threading.Thread):
    """A worker's background duties: heartbeats, re-queueing stalled leases, noticing that all is done."""

    def __init__(self, fleet: Fleet, worker: Worker, until_done: bool) -> None:
        super().__init__(name="syncpoint-keeper", daemon=True)
        self.fleet, self.worker, self.until_done = fleet, worker, until_done
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)

    def run(self) -> None:
        tick = min(self.fleet.heartbeat, 1.0)
        next_beat = time.monotonic() + self.fleet.heartbeat
        while not self._halt.wait(tick):
            try:
                if time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + self.fleet.heartbeat
                    self.fleet.beat()
                    self.fleet.reap()
                if self.until_done and not self.fleet.held() and self.fleet.open_leases() == 0:
                    log.info("every task of job %s is finished; worker stops", self.fleet.job.name)
                    self.worker.stop()  # type: ignore[no-untyped-call]
                    return
            except StoreError as err:  # the database is away for a moment: the next tick tries again
                log.warning("%s", err)
            except Exception as exc:  # never let the keeper die silently: heartbeats would stop
                log.error("keeper: %s: %s", type(exc).__name__, exc)

#!/usr/bin/env python3
"""Collect a year of pull requests and issues for every repository of a GitHub organisation, resumably.

    export GITHUB_TOKEN=...
    python examples/gh_year_end.py --org acme --year 2025          # Ctrl+C at any time, or kill -9
    python examples/gh_year_end.py --org acme --year 2025 --resume # continues at the page it stopped at
    python examples/gh_year_end.py --org acme --year 2025 --resume --retry-failed   # also the 404/451s

Phases ``discovery`` (the org's repositories) → ``pulls`` → ``issues``; one task per repository and endpoint
(``acme/repo1:pulls``) whose cursor is the next page's URL and the byte length of its JSONL file at that
point. ``--concurrency N`` (default 4) fetches N repositories of a phase at once, one thread each; every
task appends only to its own file, so the per-file checkpointed length stays exact. Output under ``--out``
(default ``data``)::

    raw/year=2025/source=github/target=acme/
        repos.json                  the repositories found in discovery (written atomically)
        pulls/acme__repo1.jsonl     one line per record: {"source", "repo", "endpoint", "data"}
        issues/acme__repo1.jsonl
        checkpoints/                the run's checkpoint, a syncpoint JSON directory (unless --store)
        manifest.json               repos, counts, failures, timings; written atomically at the end
        previous/RUN/               an earlier collection, moved aside whole by a new run (--new-run)

A page is appended, flushed and fsynced before the cursor moves past it; a resumed task first cuts its
JSONL file back to the length its cursor recorded, so pages written after the last checkpoint are dropped
and fetched again, never duplicated. See docs/EXAMPLES.md.

Many workers (``pip install 'syncpoint[procrastinate]'``, a PostgreSQL store; ``syncpoint.distributed``)::

    python examples/gh_year_end.py --org acme --year 2025 --store "$PG?schema=gh" --enqueue  # discovery, fan-out
    python examples/gh_year_end.py --store "$PG?schema=gh" --work --until-done             # in N terminals

``--enqueue`` lists the repositories and queues the same ``acme/repo1:pulls`` tasks in one transaction with
the run; each ``--work`` process takes tasks under a lease and collects them as above, into the same files.
One file per task cut back on resume is not enough here: a worker presumed dead (paused, cut off) whose
task was taken over may come back and append a page before its next commit is refused, after the new holder
wrote. So each lease epoch appends to its own part file (``parts/RUN/pulls/acme__repo1.EPOCH.jsonl``), the
cursor records the committed length of every part, and once the last page is committed the task's JSONL
file is written (atomically) from the parts' committed prefixes in epoch order: bytes a fenced worker
appends are never read, and any later epoch builds the same file. ``--work --until-done`` writes the
manifest when the run has ended and removes the parts.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

import syncpoint
from syncpoint.files import fsync_dir
from syncpoint.http import HttpClient, HttpError, RateLimited, paginate_link

if TYPE_CHECKING:
    from syncpoint.distributed import Fleet, WorkerRun

log = logging.getLogger("gh_year_end")

ENDPOINTS = ("pulls", "issues")
DEFAULT_BASE_URL = "https://api.github.com"
Connect = Callable[[syncpoint.Run], HttpClient]


@dataclass(frozen=True)
class Settings:
    org: str
    year: int
    token: str = ""
    endpoints: tuple[str, ...] = ENDPOINTS
    out: Path = Path("data")
    base_url: str = DEFAULT_BASE_URL
    per_page: int = 100
    from_repo: str | None = None
    job: str = "gh-year-end"
    concurrency: int = 4

    @property
    def target(self) -> Path:
        return self.out / "raw" / f"year={self.year}" / "source=github" / f"target={self.org}"

    def config(self) -> dict[str, Any]:
        """The config digest checked on resume: a changed org, year or endpoint list is refused (--force)."""
        return {"org": self.org, "year": self.year, "endpoints": list(self.endpoints)}

    def params(self, endpoint: str) -> dict[str, Any]:
        params: dict[str, Any] = {"state": "all", "per_page": self.per_page}
        if endpoint == "issues":
            params["since"] = f"{self.year}-01-01T00:00:00Z"
        return params

    def jsonl(self, repo: str, endpoint: str) -> Path:
        return self.target / endpoint / f"{repo.replace('/', '__')}.jsonl"

    def client(self, sleep: Callable[[float], None] = time.sleep,
               checkpoint: Callable[[], None] | None = None) -> HttpClient:
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/vnd.github+json",
                   "X-GitHub-Api-Version": "2022-11-28"}
        return HttpClient(self.base_url, headers=headers, sleep=sleep, checkpoint=checkpoint)

    def connect(self) -> Connect:
        return lambda run: self.client(run.sleep, run.checkpoint)

    def for_run(self, config: dict[str, Any]) -> Settings:
        """These settings for the collection a run's config names (a worker takes org, year and endpoints
        from the run that ``--enqueue`` started, not from its own command line)."""
        return replace(self, org=str(config["org"]), year=int(config["year"]),
                       endpoints=tuple(str(e) for e in config["endpoints"]))

    def part(self, run_id: str, repo: str, endpoint: str, epoch: int) -> Path:
        """The file one lease epoch of a distributed task appends to (see ``Parts``)."""
        return self.target / "parts" / run_id / endpoint / f"{repo.replace('/', '__')}.{epoch}.jsonl"


def collect(settings: Settings, options: syncpoint.RunOptions, connect: Connect | None = None) -> int:
    """Run (or resume) the collection as the standard flags say; the exit code."""
    if options.store is None and options.checkpoint_dir is None and not os.environ.get("SYNCPOINT_STORE"):
        options = replace(options, store=f"json:{settings.target / 'checkpoints'}")
    fresh = not (options.resume or options.resume_run or options.new_run or options.force
                 or options.list_runs or options.cleanup)
    job = syncpoint.Job.from_options(settings.job, settings.config(), options)
    try:
        if not (options.list_runs or options.cleanup):
            refuse_distributed_run(job, options)
        previous = Previous(settings.target)
        if fresh and previous.exists():
            raise syncpoint.UsageError(
                f"{settings.target} holds {previous.describe()}; a new run would rewrite it. Continue an unfinished "
                f"run with --resume, start over with --new-run (the old files are moved to "
                f"{settings.target / 'previous'}/), or write elsewhere with --out"
            )
        return job.execute(options, lambda run: Collector(run, settings).execute(connect or settings.connect()))
    finally:
        job.close()


class Collector:
    """One run's body: discovery, then one phase per endpoint, then the manifest."""

    def __init__(self, run: syncpoint.Run, settings: Settings) -> None:
        self.run = run
        self.settings = settings

    def execute(self, connect: Connect) -> None:
        previous = Previous(self.settings.target)
        if not self.run.resumed and previous.exists():
            moved = previous.move_aside()
            log.warning("a new run: the previous collection's files are moved to %s, and a fresh set is written", moved)
        elif previous.manifest.exists():  # a completed run reopened (--retry-failed): its files are about to change
            previous.manifest.unlink()
            log.info("%s removed: this run changes the files it describes; it is written again when the run "
                     "completes", previous.manifest)
        with connect(self.run) as client:
            repos = self.discover(client)
            for endpoint in self.settings.endpoints:
                self.phase(client, endpoint, repos)
        self.write_manifest(repos)

    # -- discovery ---------------------------------------------------------------------------------------
    def discover(self, client: HttpClient) -> list[str]:
        """The org's repositories; all repo:endpoint tasks are registered in the same commit as the phase."""
        if self.run.is_phase_complete("discovery"):
            return sorted({task.name.rsplit(":", 1)[0] for task in self.run.every_task()})
        repos = discover_repos(client, self.settings)
        for endpoint in self.settings.endpoints:
            for repo in repos:
                self.run.task(f"{repo}:{endpoint}")
        self.run.complete_phase("discovery")
        log.info("discovery: %d repositories of %s", len(repos), self.settings.org)
        return repos

    # -- one phase: an endpoint of every repo ------------------------------------------------------------
    def phase(self, client: HttpClient, endpoint: str, repos: list[str]) -> None:
        """Every repository's ``endpoint``, ``--concurrency`` at a time; each task writes only its own file."""
        if self.run.is_phase_complete(endpoint) and not self.run.retry_failed:  # --retry-failed: its 404/451s again
            return
        start_from = None
        if self.settings.from_repo is not None:
            if self.settings.from_repo not in repos:
                raise syncpoint.UsageError(f"--from-repo {self.settings.from_repo}: not a repository of this run")
            start_from = f"{self.settings.from_repo}:{endpoint}"
        suffix = f":{endpoint}"
        names = [t.name for t in self.run.every_task() if t.name.endswith(suffix)]
        # An HttpError fails only its task; anything else ends the map, and the run (see collect_task).
        self.run.map(lambda task: self.collect_task(client, task, endpoint),
                     self.run.pending_tasks(names, start_from=start_from), concurrency=self.settings.concurrency,
                     errors=HttpError)
        mine = [t for t in self.run.every_task() if t.name.endswith(suffix)]
        if all(_finished(t.record) for t in mine):
            self.run.complete_phase(endpoint)

    def collect_task(self, client: HttpClient, task: syncpoint.Task, endpoint: str) -> None:
        """One repository's endpoint, page by page (``run.map`` started the task and completes or fails it).

        An ``HttpError`` fails the task (404/451 for good, exhausted retries retryable) and the others go on
        (``run.map(..., errors=HttpError)``). Anything else — a rate limit, a JSONL file changed behind our
        back, a full disk — ends the run as it did before the tasks ran in parallel: the task stays in
        progress at its cursor (a resume continues there), the other workers stop at their next page, and
        the error is raised once the map is done.
        """
        repo = task.name[: -len(endpoint) - 1]
        cursor = task.token_cursor()  # the next page's URL; "bytes": the JSONL file's committed length
        self.run.checkpoint()  # a stop came while this task was being handed out: not one request more
        try:
            with syncpoint.JsonlSink(self.settings.jsonl(repo, endpoint), cursor.extra.get("bytes", 0)) as out:
                if not cursor.finished:
                    for page in paginate_link(client, f"/repos/{repo}/{endpoint}", self.settings.params(endpoint),
                                              resume=cursor.token):
                        self.run.checkpoint()  # a stop asked for while the page was on its way: drop it
                        size = out.append({"source": "github_rest", "repo": repo, "endpoint": endpoint, "data": item}
                                          for item in page.items)
                        cursor.done(page.next_state, records=len(page.items), extra={"bytes": size})
        except RateLimited as err:  # every later request would wait as long: end the run; a resume continues
            raise RateLimitOutlasted(str(err)) from err
        except HttpError as err:  # 404/451 fail for good, other exhausted retries are retryable; the run goes on
            log.warning("%s failed%s: %s", task.name, " (retryable)" if err.retryable else "", err)
            raise

    # -- the manifest ------------------------------------------------------------------------------------
    def write_manifest(self, repos: list[str]) -> None:
        records = [t.record for t in self.run.every_task()]
        left = [r.name for r in records if not _finished(r)]
        if left:
            log.info("manifest not written: %d task(s) still to do (%s)", len(left), ", ".join(left[:3]))
            return
        document = manifest(self.run.record, self.settings, repos, records, datetime.now(timezone.utc))
        write_json_atomic(self.settings.target / "manifest.json", document)
        log.info("manifest written: %s", self.settings.target / "manifest.json")


def discover_repos(client: HttpClient, settings: Settings) -> list[str]:
    """The org's repositories, sorted; their listing is written to ``repos.json`` (atomically)."""
    found: list[dict[str, Any]] = []
    for page in paginate_link(client, f"/orgs/{settings.org}/repos", {"type": "all", "per_page": settings.per_page}):
        found.extend(page.items)
    write_json_atomic(settings.target / "repos.json", found)
    return sorted(str(repo["full_name"]) for repo in found)


class RateLimitOutlasted(syncpoint.SyncpointError):
    """A rate limit that outlasted the client's waits: it ends the run (not an ``HttpError``, which would fail
    only its task), since every later request would wait as long; a resume continues at the page."""


def _finished(record: syncpoint.TaskRecord) -> bool:
    """Complete, or failed for good (404, 451): nothing a resume would do."""
    return record.status is syncpoint.TaskStatus.COMPLETED or (
        record.status is syncpoint.TaskStatus.FAILED and not record.retryable
    )


def stats(records: list[syncpoint.TaskRecord]) -> dict[str, int]:
    """The original's ``get_stats``: repositories (of one endpoint) by status."""
    status = syncpoint.TaskStatus
    return {
        "total_repos": len(records),
        "repos_complete": sum(r.status is status.COMPLETED for r in records),
        "repos_in_progress": sum(r.status is status.IN_PROGRESS for r in records),
        "repos_pending": sum(r.status is status.PENDING for r in records),
        "repos_failed": sum(r.status is status.FAILED for r in records),
    }


def show_stats(settings: Settings, options: syncpoint.RunOptions) -> int:
    """``--stats``: the latest run's repositories by status, per endpoint, as JSON (also while it runs)."""
    if options.store is None and options.checkpoint_dir is None and not os.environ.get("SYNCPOINT_STORE"):
        options = replace(options, store=f"json:{settings.target / 'checkpoints'}")
    job = syncpoint.Job.from_options(settings.job, settings.config(), options)
    try:
        runs = job.store.list_runs(job.name, limit=1)
        if not runs:
            click.echo(json.dumps({"run_id": None, "status": None}))
            return 0
        records = job.store.get_tasks(runs[0].run_id)
        report = {"run_id": runs[0].run_id, "status": runs[0].status.value,
                  **{e: stats([r for r in records if r.name.endswith(f":{e}")]) for e in settings.endpoints}}
        click.echo(json.dumps(report, indent=2))
        return 0
    finally:
        job.close()


def manifest(run: syncpoint.RunRecord, settings: Settings, repos: list[str], records: list[syncpoint.TaskRecord],
             now: datetime) -> dict[str, Any]:
    """What the collection holds; ``now``: when it completed (a distributed run: when its last task ended)."""
    counts: dict[str, dict[str, int]] = {}
    timings: dict[str, Any] = {}
    for endpoint in settings.endpoints:
        mine = [r for r in records if r.name.endswith(f":{endpoint}")]
        counts[endpoint] = {"records": sum(r.records for r in mine), "pages": sum(r.pages for r in mine),
                            **stats(mine)}
        started = [r.started_at for r in mine if r.started_at is not None]
        ended = [r.completed_at for r in mine if r.completed_at is not None]
        timings[endpoint] = {
            "started_at": min(started).isoformat() if started else None,
            "completed_at": max(ended).isoformat() if ended else None,
        }
    return {
        "org": settings.org, "year": settings.year, "endpoints": list(settings.endpoints),
        "run_id": run.run_id, "attempts": run.attempts, "repos": repos, "counts": counts,
        "failures": [
            {"repo": r.name.rsplit(":", 1)[0], "endpoint": r.name.rsplit(":", 1)[1], "error": r.error,
             "retryable": r.retryable}
            for r in records if r.status is syncpoint.TaskStatus.FAILED
        ],
        "timings": {
            "started_at": run.started_at.isoformat(), "completed_at": now.isoformat(),
            "elapsed_seconds": round((now - run.started_at).total_seconds(), 3), **timings,
        },
    }


# -- files -------------------------------------------------------------------------------------------------
class Previous:
    """What an earlier run left in the target directory: a manifest, ``repos.json``, JSONL files.

    A new run must not silently cut these down (it starts every file from byte 0), and the manifest must
    never describe files that no longer match it: a new run moves them all aside into
    ``previous/<run ID>/``; a reopened run removes the manifest until it completes again.
    """

    def __init__(self, target: Path) -> None:
        self.target = target
        self.manifest = target / "manifest.json"

    def _parts(self) -> list[Path]:
        names = ["manifest.json", "repos.json", *ENDPOINTS, "parts"]
        return [self.target / name for name in names if (self.target / name).exists()]

    def _jsonl(self) -> list[Path]:
        return [p for e in ENDPOINTS if (self.target / e).is_dir() for p in (self.target / e).glob("*.jsonl")]

    def exists(self) -> bool:
        return self.manifest.exists() or any(p.stat().st_size > 0 for p in self._jsonl())

    def _manifest_run(self) -> str | None:
        try:
            data = json.loads(self.manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        run_id = data.get("run_id") if isinstance(data, dict) else None
        return run_id if isinstance(run_id, str) else None

    def describe(self) -> str:
        files = len(self._jsonl())
        if self.manifest.exists():
            return f"the finished collection of run {self._manifest_run() or '?'} (manifest.json, {files} JSONL files)"
        return f"{files} JSONL file(s) of an unfinished run"

    def move_aside(self) -> Path:
        """Move the previous collection into ``previous/<its run ID or the time>/``; where it went."""
        name = self._manifest_run() or f"unfinished-{datetime.now(timezone.utc).strftime('%Y%m%d-%H%M%S')}"
        dest = self.target / "previous" / name
        n = 1
        while dest.exists():
            n += 1
            dest = self.target / "previous" / f"{name}.{n}"
        dest.mkdir(parents=True)
        for part in self._parts():
            os.replace(part, dest / part.name)
        fsync_dir(dest)
        fsync_dir(self.target)
        return dest


def write_json_atomic(path: Path, data: Any) -> None:
    write_atomic(path, [json.dumps(data, indent=2, ensure_ascii=False).encode() + b"\n"])


def write_atomic(path: Path, chunks: Iterable[bytes]) -> None:
    """Write, fsync, rename over the old file, fsync the directory: readers see the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    fsync_dir(path.parent)


# -- many workers: --enqueue and --work (syncpoint.distributed) --------------------------------------------
DISTRIBUTED = "distributed"  # params["mode"] of a run that --enqueue started: its workers continue it


def is_distributed(run: syncpoint.RunRecord) -> bool:
    return run.params.get("mode") == DISTRIBUTED


def refuse_distributed_run(job: syncpoint.Job, options: syncpoint.RunOptions) -> None:
    """A single-process run must not continue (or write beside) a run that workers collect: its cursors
    name part files, not a byte length, and its commits would carry no lease."""
    for run in job.runs(statuses=[syncpoint.RunStatus.RUNNING], limit=50):
        if is_distributed(run) and run.config == job.config:
            raise syncpoint.UsageError(
                f"run {run.run_id} of this collection is being collected by workers (--enqueue, --work); let "
                "them finish it (--stats shows how far they are), or collect elsewhere with --out and --job"
            )
    if options.resume_run is not None:
        named = job.store.get_run(options.resume_run)
        candidate = named if named is not None and named.job == job.name else None
    elif options.resume:
        latest = job.runs(statuses=[s for s in syncpoint.RunStatus if s.resumable], limit=1)
        candidate = latest[0] if latest else None
    else:
        return
    if candidate is not None and is_distributed(candidate):
        raise syncpoint.UsageError(
            f"run {candidate.run_id} was started by --enqueue: only its workers (--work) continue it; start a "
            "single-process collection with --new-run, or the workers' one again with --enqueue --new-run"
        )


def postgres_store(options: syncpoint.RunOptions) -> str:
    """The store of a distributed collection: PostgreSQL (the queue and the leases live there)."""
    url = options.store or os.environ.get("SYNCPOINT_STORE") or ""
    if not url.startswith(("postgresql://", "postgres://")):
        raise click.UsageError(
            f"--enqueue and --work need the PostgreSQL store, where the queue and the leases live: --store "
            f"postgresql://HOST/DB?schema=NAME (got {store_kind(url)})"
        )
    return url


def store_kind(url: str) -> str:
    """The kind of store a URL names, for a message: never the URL itself, which may hold a password."""
    return f"a {url.partition(':')[0]}: store" if url else "none"


def make_fleet(settings: Settings, store: str, config: dict[str, Any], *, stall_timeout: float = 30.0,
               max_attempts: int | None = None) -> Fleet:
    """The job's ``Fleet``: procrastinate's queue and syncpoint's leases in the store's database."""
    try:
        from syncpoint.distributed import Fleet
    except ModuleNotFoundError as exc:  # names the extra: pip install 'syncpoint[procrastinate]'
        raise syncpoint.UsageError(str(exc)) from None
    return Fleet.open(settings.job, config, store=store, stall_timeout=stall_timeout, max_attempts=max_attempts or 3)


def fan_out(settings: Settings, options: syncpoint.RunOptions) -> int:
    """``--enqueue``: discover the org's repositories and queue one task per repository and endpoint.

    The run is keyed by org and year: enqueueing the same collection again (after a crash, or to add the
    repositories created since) reuses its running run and queues only the tasks it lacks.
    """
    fleet = make_fleet(settings, postgres_store(options), settings.config())
    try:
        key = f"{settings.org}-{settings.year}"
        running = fleet.store.list_runs(fleet.job.name, key=key, statuses=[syncpoint.RunStatus.RUNNING], limit=1)
        if running and options.new_run:
            raise syncpoint.UsageError(f"run {running[0].run_id} of this collection is still being worked on; "
                                       "--new-run can start another once it has ended")
        previous = Previous(settings.target)
        if not running and previous.exists():
            if not options.new_run:
                raise syncpoint.UsageError(
                    f"{settings.target} holds {previous.describe()}; start over with --enqueue --new-run (the old "
                    f"files are moved to {settings.target / 'previous'}/), or write elsewhere with --out"
                )
            log.warning("the previous collection's files are moved to %s", previous.move_aside())
        with settings.client() as client:
            repos = discover_repos(client, settings)
        names = [f"{repo}:{endpoint}" for endpoint in settings.endpoints for repo in repos]
        try:
            run_id = fleet.start(names, key=key, params={"mode": DISTRIBUTED})
        except syncpoint.ConfigChanged as err:  # its own advice (--force) is a single-process run's
            changed = ", ".join(err.changed)
            raise syncpoint.UsageError(f"run {err.run_id} of this collection is being worked on with other "
                                       f"settings ({changed}); let its workers finish it first") from None
        click.echo(f"run {run_id}: {len(names)} task(s) queued ({len(repos)} repositories x "
                   f"{len(settings.endpoints)} endpoints); start workers with --work")
        return 0
    finally:
        fleet.job.close()


def run_worker(settings: Settings, options: syncpoint.RunOptions, *, concurrency: int, until_done: bool,
               stall_timeout: float) -> int:
    """``--work``: one worker; collects queued tasks of this job until a signal (or until none is left)."""
    fleet = make_fleet(settings, postgres_store(options), {}, stall_timeout=stall_timeout,
                       max_attempts=options.max_attempts)
    try:
        fleet.task(lambda run, task: collect_part(run, task, settings))
        code: int = fleet.work(concurrency=concurrency, until_done=until_done, log_format=options.log_format)
        if code == 0 and until_done:
            finish_distributed(fleet.job, settings)
        return code
    finally:
        fleet.job.close()


def collect_part(run: WorkerRun, task: syncpoint.Task, base: Settings) -> None:
    """One repository's endpoint, under the task's lease.

    Each lease epoch appends to its own part file (a ``JsonlSink`` of its own), and the cursor records the
    committed length of every part: a token cursor on the next page's URL with the extra field
    ``"parts": [[epoch, bytes], ...]``. Once the last page's cursor
    is committed under the lease, the task's JSONL file is built from the parts' committed prefixes in epoch
    order. Why parts, not one file cut back on takeover: a worker presumed dead that comes back (SIGSTOP,
    SIGCONT) may append a page before its next commit is refused; in its own part those bytes lie beyond
    any committed length, so they are never read.
    """
    from syncpoint.distributed import LeaseLost  # a worker's module: imported where the extra is installed

    settings = base.for_run(run.config)
    repo, endpoint = task.name.rsplit(":", 1)
    cursor = task.token_cursor()
    parts = Parts(lambda epoch: settings.part(run.run_id, repo, endpoint, epoch),
                  [(int(e), int(n)) for e, n in cursor.extra.get("parts", [])])
    log.info("%s: epoch %d, %s", task.name, run.epoch,
             "from the start" if task.cursor is None else f"after {task.record.pages} page(s) of earlier epochs")
    if not cursor.finished:  # this epoch's part is new: whatever is in it was never committed
        with settings.client(run.sleep, run.checkpoint) as client, syncpoint.JsonlSink(parts.path(run.epoch), 0) as out:
            for page in paginate_link(client, f"/repos/{repo}/{endpoint}", settings.params(endpoint),
                                      resume=cursor.token):
                run.checkpoint()  # a stop or a lost lease noticed while the page was on its way: drop it
                size = out.append({"source": "github_rest", "repo": repo, "endpoint": endpoint, "data": item}
                                  for item in page.items)
                try:
                    cursor.done(page.next_state, records=len(page.items), extra={"parts": parts.grown(run.epoch, size)})
                except LeaseLost:
                    log.warning("%s: epoch %d lost its lease; the page it has just appended lies beyond its part's "
                                "committed length and is never read", task.name, run.epoch)
                    raise
                log.info("%s: page %d written (%d record(s), epoch %d)", task.name, task.record.pages,
                         len(page.items), run.epoch)
    run.commit()  # the last cursor, under the lease: from here on every epoch builds the same file
    parts.assemble(settings.jsonl(repo, endpoint))


class Parts:
    """A distributed task's part files, one per lease epoch, and their committed lengths (see ``collect_part``)."""

    def __init__(self, path: Callable[[int], Path], committed: list[tuple[int, int]]) -> None:
        self.path = path
        self.lengths = dict(committed)

    def grown(self, epoch: int, size: int) -> list[list[int]]:
        """The cursor's ``parts`` once ``epoch``'s part is ``size`` bytes long (empty parts are left out)."""
        if size > 0:
            self.lengths[epoch] = size
        return [[e, n] for e, n in sorted(self.lengths.items())]

    def assemble(self, dest: Path) -> None:
        """Write ``dest`` atomically: the committed prefix of each part (``JsonlSink.read``), in epoch order."""
        write_atomic(dest, (syncpoint.JsonlSink(self.path(epoch), length).read()
                            for epoch, length in sorted(self.lengths.items())))


def finish_distributed(job: syncpoint.Job, base: Settings) -> None:
    """After ``--work --until-done``: the manifest of every distributed collection whose run has ended and
    has none yet (the latest run of each org and year), and its part files removed. Any number of workers
    may do this at once: each writes the same manifest, atomically."""
    seen: set[str | None] = set()
    for run in job.store.list_runs(job.name, limit=50):
        if run.key in seen:
            continue
        seen.add(run.key)
        if not is_distributed(run) or run.status is syncpoint.RunStatus.RUNNING:
            continue
        settings = base.for_run(run.config)
        if Previous(settings.target)._manifest_run() == run.run_id:
            continue
        records = job.store.get_tasks(run.run_id)
        repos = sorted({r.name.rsplit(":", 1)[0] for r in records})
        document = manifest(run, settings, repos, records, run.ended_at or datetime.now(timezone.utc))
        write_json_atomic(settings.target / "manifest.json", document)
        shutil.rmtree(settings.target / "parts" / run.run_id, ignore_errors=True)
        with contextlib.suppress(OSError):  # other runs' parts may still be there
            (settings.target / "parts").rmdir()
        log.info("run %s ended %s; manifest written: %s", run.run_id, run.status.value,
                 settings.target / "manifest.json")


# -- the command line --------------------------------------------------------------------------------------
@click.command(cls=syncpoint.Command, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--org", help="The GitHub organisation (required, except with --work).")
@click.option("--year", type=click.IntRange(2008, 2100), help="The year to collect (required, except with --work).")
@click.option("--token", envvar="GITHUB_TOKEN", show_envvar=True, help="A GitHub token.")
@click.option("--endpoints", default=",".join(ENDPOINTS), show_default=True, help="Comma-separated endpoints.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("data"), show_default=True,
              help="Output directory.")
@click.option("--base-url", default=DEFAULT_BASE_URL, show_default=True, help="GitHub REST API base URL.")
@click.option("--per-page", type=click.IntRange(1, 100), default=100, show_default=True, help="Records per page.")
@click.option("--from-repo", metavar="OWNER/REPO", help="Skip the repositories before this one.")
@click.option("--job", "job_name", default="gh-year-end", show_default=True, help="Job name in the store.")
@click.option("--concurrency", type=click.IntRange(1, 64), default=4, show_default=True, metavar="N",
              help="Repositories fetched at once (one thread each, every one writing only its own JSONL file); "
                   "1 fetches them one after the other. With --work: the tasks this worker collects at once.")
@click.option("--stats", "stats_only", is_flag=True,
              help="Print the latest run's repositories by status (complete, in progress, pending, failed) and exit.")
@click.option("--enqueue", is_flag=True,
              help="Many workers, part 1: discover the repositories, queue one task per repository and endpoint "
                   "for --work, and exit. Needs --store postgresql://…")
@click.option("--work", is_flag=True,
              help="Many workers, part 2: be one worker, collecting queued tasks of this --job (each run names its "
                   "org, year and endpoints) until stopped. Needs --store postgresql://…")
@click.option("--until-done", is_flag=True,
              help="With --work: exit 0 once no task is left, writing the manifest of a finished collection.")
@click.option("--stall-timeout", type=click.FloatRange(0.1, 3600), default=30.0, show_default=True, metavar="S",
              help="With --work: seconds without a heartbeat after which another worker takes a task over.")
@syncpoint.click_options
def main(org: str | None, year: int | None, token: str | None, endpoints: str, out: Path, base_url: str,
         per_page: int, from_repo: str | None, job_name: str, concurrency: int, stats_only: bool, enqueue: bool,
         work: bool, until_done: bool, stall_timeout: float, sync: syncpoint.RunOptions) -> None:
    """Collect a year of pull requests and issues of every repository of ORG; resumable at the page."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request is too chatty
    check_modes(enqueue=enqueue, work=work, stats_only=stats_only)
    if work:
        if not token:
            raise click.UsageError("a token is required: --token TOKEN or the GITHUB_TOKEN environment variable")
        settings = Settings("", 0, token, ENDPOINTS, out, base_url.rstrip("/"), per_page, None, job_name, concurrency)
        raise SystemExit(run_worker(settings, sync, concurrency=concurrency, until_done=until_done,
                                    stall_timeout=stall_timeout))
    chosen = tuple(e.strip() for e in endpoints.split(",") if e.strip())
    unknown = sorted(set(chosen) - set(ENDPOINTS))
    if unknown or not chosen:
        raise click.UsageError(f"--endpoints: choose from {', '.join(ENDPOINTS)} (got {endpoints!r})")
    if org is None or year is None:
        raise click.UsageError("--org and --year are required (a worker, --work, takes them from the run)")
    if stats_only:
        raise SystemExit(show_stats(Settings(org, year, "", chosen, out, job=job_name), sync))
    if not token:
        raise click.UsageError("a token is required: --token TOKEN or the GITHUB_TOKEN environment variable")
    settings = Settings(org, year, token, chosen, out, base_url.rstrip("/"), per_page, from_repo, job_name,
                        concurrency)
    raise SystemExit(fan_out(settings, sync) if enqueue else collect(settings, sync))


def check_modes(*, enqueue: bool, work: bool, stats_only: bool) -> None:
    """The flags that go with one mode only: a user who mixes them hears which, before anything runs."""
    ctx = click.get_current_context()

    def given(*names: str) -> list[str]:
        return ["--" + n.replace("_", "-") for n in names
                if ctx.get_parameter_source(n) is click.core.ParameterSource.COMMANDLINE]

    if sum((enqueue, work, stats_only)) > 1:
        raise click.UsageError("--enqueue, --work and --stats are separate commands; give one of them")
    if not work and given("until_done", "stall_timeout"):
        raise click.UsageError(f"{' and '.join(given('until_done', 'stall_timeout'))} go with --work only")
    if work and given("org", "year", "endpoints", "from_repo"):
        raise click.UsageError(f"a worker collects what the run --enqueue started names; leave out "
                               f"{', '.join(given('org', 'year', 'endpoints', 'from_repo'))}")
    if enqueue and given("from_repo"):
        raise click.UsageError("--from-repo does not go with --enqueue: every repository is queued")


if __name__ == "__main__":
    main()

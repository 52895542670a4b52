#!/usr/bin/env python3
"""Crawl each user's bookmarks (newest first, cursor paging) into PostgreSQL or a JSON Lines file, resumably.

    export DATABASE_URL=postgresql://postgres@127.0.0.1:5432/favbook
    python examples/bookmarks_crawler.py --tokens tokens.json --direct-import     # kill -9 at any time
    python examples/bookmarks_crawler.py --tokens tokens.json --direct-import --resume
    python examples/bookmarks_crawler.py --tokens tokens.json --direct-import     # later: only the new ones
    python examples/bookmarks_crawler.py --tokens tokens.json --direct-import --resume --retry-failed

``tokens.json`` maps each user to their bearer token (``{"alice": "…"}``); tokens are never stored. The
checkpoints live in the PostgreSQL schema ``crawler`` (``--store postgresql://…?schema=NAME`` picks another).

One job (``--job``, default ``twitter-bookmarks``); every crawl is a run whose params record
``direct_import``, ``enable_summarization`` and ``output_file_path``; one task per user. A user's task cursor
is ``{"type": "token", "token": <next page's cursor or null>, "newest": <newest ID seen in this crawl>,
"new": <bookmarks taken>, "bytes": <output file length>}``. The per-user bookmarks are job state that
outlives runs: ``<user>.last_tweet_id``, ``<user>.last_crawled_at``, ``<user>.bookmarks_count``. They move
only when that user's crawl has finished, in the same commit that marks the task complete, so an
interrupted crawl never makes the next one skip bookmarks. A crawl stops at the first ID <= last_tweet_id,
comparing IDs as integers.

With a PostgreSQL store, the original's ``crawler.twitter_crawl_checkpoint`` and ``crawler.crawl_session`` exist as
views over syncpoint's tables (same column names and meanings), so SQL written for the original still works.

With ``--direct-import`` each page's rows are upserted into ``bookmark_post`` (unique on user and tweet) on a
connection bound to the run
(``Run.bind``): the rows and the checkpoint that covers them commit in one transaction. Without it, pages are
appended to ``--output-file`` and fsynced; the file is cut back to its committed length on start. See
docs/EXAMPLES.md.

Many workers (``pip install 'syncpoint[procrastinate]'``; ``syncpoint.distributed``), direct import only::

    python examples/bookmarks_crawler.py --tokens tokens.json --direct-import --enqueue  # a task per user
    python examples/bookmarks_crawler.py --tokens tokens.json --work --until-done        # in N terminals

Each worker binds its own connection to the user's task (``with run.bind(conn):``): a page's rows commit in
the transaction that moves the cursor past it, and that transaction first checks the lease's epoch. A worker
killed, or fenced after a takeover, leaves no row without its checkpoint: every bookmark once, and every
``bookmarks_count`` exact.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import click

import syncpoint
from syncpoint.http import HttpClient, HttpError, PermanentHttpError, RetryPolicy, paginate_cursor

if TYPE_CHECKING:
    from syncpoint.distributed import Fleet, WorkerRun

    AnyRun: TypeAlias = syncpoint.Run | WorkerRun  # a crawl of one process, or a worker's task under a lease
    Connect: TypeAlias = Callable[[AnyRun, str], HttpClient]

log = logging.getLogger("bookmarks_crawler")

DEFAULT_JOB = "twitter-bookmarks"
DEFAULT_SCHEMA = "crawler"
DEFAULT_BASE_URL = "http://127.0.0.1:8080"


@dataclass(frozen=True)
class Settings:
    base_url: str
    tokens: dict[str, str] = field(repr=False)
    users: tuple[str, ...]
    direct_import: bool = False
    output_file: Path | None = None
    enable_summarization: bool = False
    page_size: int = 100
    dest_schema: str = "public"
    retry_wait: float = 1.0
    job: str = DEFAULT_JOB

    def config(self) -> dict[str, Any]:
        """Checked on resume: a different API, user set or destination is refused (``--force`` overrides)."""
        return {
            "base_url": self.base_url, "users": list(self.users), "direct_import": self.direct_import,
            "output_file_path": None if self.output_file is None else str(self.output_file),
            "dest_schema": self.dest_schema if self.direct_import else None,
        }

    def params(self) -> dict[str, Any]:
        """What the original's ``crawl_session`` recorded per crawl; kept in the run's params."""
        return {
            "direct_import": self.direct_import, "enable_summarization": self.enable_summarization,
            "output_file_path": None if self.output_file is None else str(self.output_file),
        }

    def for_run(self, config: dict[str, Any], params: dict[str, Any]) -> Settings:
        """These settings for the crawl a run names (a worker takes the API, the users, the destination and
        the summaries from the run that ``--enqueue`` started; tokens, paging and backoff stay its own)."""
        return replace(self, base_url=str(config["base_url"]), users=tuple(str(u) for u in config["users"]),
                       direct_import=True, output_file=None, dest_schema=str(config["dest_schema"]),
                       enable_summarization=bool(params.get("enable_summarization")))

    def connect(self, run: AnyRun, token: str) -> HttpClient:
        policy = RetryPolicy(initial_wait=self.retry_wait, jitter=self.retry_wait, max_wait=max(self.retry_wait, 30))
        return HttpClient(self.base_url, headers={"Authorization": f"Bearer {token}"}, retry=policy, sleep=run.sleep,
                          checkpoint=run.checkpoint)


def store_url(options: syncpoint.RunOptions, database_url: str | None) -> str | None:
    """``--store``, else ``$SYNCPOINT_STORE``, else ``--database-url``; PostgreSQL defaults to ``?schema=crawler``."""
    if options.store is None and options.checkpoint_dir is not None:
        return None
    url = options.store or os.environ.get("SYNCPOINT_STORE") or database_url
    if url is None:
        raise syncpoint.UsageError("no checkpoint store: give --store postgresql://… or set DATABASE_URL")
    if url.startswith(("postgresql://", "postgres://")):
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        if not any(k == "schema" for k, _ in query):
            url = urlunsplit(parts._replace(query=urlencode([*query, ("schema", DEFAULT_SCHEMA)])))
    return url


def crawl(settings: Settings, options: syncpoint.RunOptions, connect: Connect | None = None) -> int:
    """Run (or resume) one crawl of every user as the standard flags say; the exit code."""
    if options.store is not None:
        options = replace(options, store=store_url(options, None))
    options = replace(options, params={**options.params, **settings.params()})
    try:
        job = syncpoint.Job.from_options(settings.job, settings.config(), options)
    except syncpoint.SyncpointError as err:  # an unreachable store, a bad URL: one line and its exit code
        logging.basicConfig(format="%(levelname)s %(message)s")
        log.error("%s", err)
        return err.exit_code
    conn: Any = None
    try:
        try:
            if not (options.list_runs or options.cleanup):
                refuse_distributed_run(job, options)
            create_original_views(job.store, options.store, settings.job)
            if settings.direct_import and not (options.list_runs or options.cleanup):
                conn = open_destination(job.store)
                PostgresDestination(conn, settings.dest_schema).setup()
        except syncpoint.SyncpointError as err:
            logging.basicConfig(format="%(levelname)s %(message)s")
            log.error("%s", err)
            return err.exit_code
        dest: Destination = (PostgresDestination(conn, settings.dest_schema) if conn is not None
                             else JsonlDestination(settings.output_file or Path("bookmarks.jsonl")))
        # The bound connection must outlive the run: the run's last commit (its final status) goes through it.
        return job.execute(options, lambda run: crawl_users(run, settings, dest, connect or settings.connect))
    finally:
        if conn is not None:
            conn.close()
        job.close()


def open_destination(store: syncpoint.Store) -> Any:
    """A connection of its own to the store's database (``Run.bind`` needs the same database)."""
    try:
        return store.connect()
    except syncpoint.UsageError:  # a SQLite or JSON store: no database to share
        raise syncpoint.UsageError("--direct-import needs a PostgreSQL store: --store postgresql://…") from None


# -- the original's tables, as views ---------------------------------------------------------------------------
# What the original's crawler.twitter_crawl_checkpoint and crawler.crawl_session held, with their column names,
# types and meanings, read from syncpoint's tables in the same schema (docs/EXAMPLES.md has the mapping).
# {s} is the store's schema (a quoted identifier), {job} the job name (a literal); timestamps are UTC, as
# TIMESTAMP without time zone like the original's.
_STATE_FIELDS = "last_tweet_id|last_crawled_at|bookmarks_count"
CHECKPOINT_VIEW = """
CREATE OR REPLACE VIEW {s}.twitter_crawl_checkpoint AS
SELECT c.user_id::varchar(255) AS user_id,
       c.last_tweet_id::varchar(255) AS last_tweet_id,
       (c.last_crawled_at::timestamptz AT TIME ZONE 'UTC') AS last_crawled_at,
       c.bookmarks_count::integer AS bookmarks_count,
       (SELECT min(t.started_at) FROM {s}.tasks t JOIN {s}.runs r ON r.run_id = t.run_id
         WHERE r.job = {job} AND t.name = c.user_id) AT TIME ZONE 'UTC' AS created_at,
       (c.updated_at AT TIME ZONE 'UTC') AS updated_at
FROM (
    SELECT regexp_replace(key, '[.][^.]*$', '') AS user_id,
           max(value #>> '{{}}') FILTER (WHERE key LIKE '%.last_tweet_id') AS last_tweet_id,
           max(value #>> '{{}}') FILTER (WHERE key LIKE '%.last_crawled_at') AS last_crawled_at,
           max(value #>> '{{}}') FILTER (WHERE key LIKE '%.bookmarks_count') AS bookmarks_count,
           max(updated_at) AS updated_at
    FROM {s}.state
    WHERE job = {job} AND key ~ '[.]({fields})$'
    GROUP BY 1
) c
"""
SESSION_VIEW = """
CREATE OR REPLACE VIEW {s}.crawl_session AS
SELECT (r.run_id || ':' || t.name)::varchar(255) AS session_id,
       t.name::varchar(255) AS user_id,
       (coalesce(t.started_at, r.started_at) AT TIME ZONE 'UTC') AS started_at,
       (t.completed_at AT TIME ZONE 'UTC') AS completed_at,
       (CASE WHEN t.status = 'complete' THEN 'completed'
             WHEN t.status = 'failed' THEN 'failed'
             WHEN r.status = 'running' THEN 'running'
             WHEN r.status = 'failed' THEN 'failed'
             ELSE 'stopped' END)::varchar(50) AS status,
       t.records::integer AS bookmarks_processed,
       coalesce((r.params ->> 'direct_import')::boolean, false) AS direct_import,
       coalesce((r.params ->> 'enable_summarization')::boolean, false) AS enable_summarization,
       (r.params ->> 'output_file_path') AS output_file_path,
       coalesce(t.error, CASE WHEN r.status = 'failed' AND t.status <> 'complete' THEN r.error END) AS error_message
FROM {s}.runs r JOIN {s}.tasks t ON t.run_id = r.run_id
WHERE r.job = {job}
"""


def create_original_views(store: syncpoint.Store, url: str | None, job: str) -> None:
    """(Re)create the two views in the schema of a PostgreSQL store (``url``, the store's URL, names it);
    other stores have no SQL to keep working."""
    schema = postgres_schema(url)
    if schema is None:
        return
    import psycopg
    from psycopg import sql

    try:
        with store.connect() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('syncpoint bookmarks views'))")  # concurrent crawlers
            for view in (CHECKPOINT_VIEW, SESSION_VIEW):
                conn.execute(sql.SQL(view).format(s=sql.Identifier(schema), job=sql.Literal(job),
                                                  fields=sql.SQL(_STATE_FIELDS)))
    except psycopg.Error as exc:
        raise syncpoint.StoreError(f"could not create the views twitter_crawl_checkpoint and crawl_session in "
                                   f"schema {schema}: {str(exc).strip().splitlines()[0]}") from None


def postgres_schema(url: str | None) -> str | None:
    """The schema of a PostgreSQL store URL (``store_url`` gives each one); None for another store."""
    if url is None or not url.startswith(("postgresql://", "postgres://")):
        return None
    return dict(parse_qsl(urlsplit(url).query)).get("schema", "syncpoint")  # the store's own default


# -- destinations --------------------------------------------------------------------------------------------
class Destination(Protocol):
    def open(self, run: syncpoint.Run) -> None:
        """Prepare before any task; bind to the run if the destination commits with the checkpoint."""

    def write(self, run: AnyRun, user: str, posts: Sequence[dict[str, Any]]) -> tuple[int | None, int]:
        """Write one page's posts (not committed by themselves): the output file's new length, if any, and
        how many of the posts are new (a post stored before is replaced, not added again)."""

    def close(self) -> None: ...


class PostgresDestination:
    """``bookmark_post`` rows written on the run's bound connection: they commit with the checkpoint.

    A bookmark is one row per ``(user_id, tweet_id)`` (a unique key), written as an upsert: a crawl from the
    beginning again (``syncpoint state reset --key alice.last_tweet_id``) replaces rows instead of adding
    them, and counts only the rows it added.
    """

    def __init__(self, conn: Any, schema: str) -> None:
        self.conn = conn
        self.schema = schema

    def setup(self) -> None:
        """Create ``bookmark_post`` or give an old one its unique key; before the run opens."""
        from psycopg import sql

        s = sql.Identifier(self.schema)
        with self.conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(s))
            cur.execute(sql.SQL(
                "CREATE TABLE IF NOT EXISTS {}.bookmark_post (id bigserial PRIMARY KEY, user_id text NOT NULL, "
                "tweet_id text NOT NULL, text text, created_at text, summary text, data jsonb NOT NULL, "
                "imported_at timestamptz NOT NULL DEFAULT now())"
            ).format(s))
            cur.execute(sql.SQL("SELECT 1 FROM {}.bookmark_post GROUP BY user_id, tweet_id HAVING count(*) > 1 "
                                "LIMIT 1").format(s))
            if cur.fetchone() is not None:  # written by an older crawler, before the unique key
                self.conn.rollback()
                table = f"{self.schema}.bookmark_post"
                raise syncpoint.UsageError(
                    f"{table} has duplicate (user_id, tweet_id) rows, so its unique key cannot be added; remove "
                    f"them first: DELETE FROM {table} a USING {table} b WHERE a.user_id = b.user_id AND "
                    "a.tweet_id = b.tweet_id AND a.id > b.id"
                )
            cur.execute(sql.SQL("CREATE UNIQUE INDEX IF NOT EXISTS bookmark_post_user_tweet_key ON {}.bookmark_post "
                                "(user_id, tweet_id)").format(s))
            cur.execute(sql.SQL("DROP INDEX IF EXISTS {}.bookmark_post_user_tweet").format(s))  # the old, not unique
        self.conn.commit()

    def open(self, run: syncpoint.Run) -> None:
        run.bind(self.conn)

    def write(self, run: AnyRun, user: str, posts: Sequence[dict[str, Any]]) -> tuple[int | None, int]:
        from psycopg import sql
        from psycopg.types.json import Jsonb

        if not posts:
            return None, 0
        query = sql.SQL(
            "INSERT INTO {}.bookmark_post (user_id, tweet_id, text, created_at, summary, data) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (user_id, tweet_id) DO UPDATE SET text = EXCLUDED.text, "
            "created_at = EXCLUDED.created_at, summary = EXCLUDED.summary, data = EXCLUDED.data "
            "RETURNING (xmax = 0)"  # true for a row inserted, false for one updated
        ).format(sql.Identifier(self.schema))
        added = 0
        with self.conn.cursor() as cur:
            cur.executemany(query, [(user, p["id"], p.get("text"), p.get("created_at"), p.get("summary"), Jsonb(p))
                                    for p in posts], returning=True)
            while True:
                row = cur.fetchone()
                added += bool(row and row[0])
                if not cur.nextset():
                    break
        return None, added

    def close(self) -> None:
        pass


class JsonlDestination:
    """Lines appended and fsynced per page (a ``syncpoint.JsonlSink``); cut back to the committed length on start
    (no duplicates).

    The committed length is job state (``output_file:<path>``), committed with the cursors, so it holds across
    users and across crawls appending to the same file; each task's cursor records it too (``bytes``).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.key = f"output_file:{path.resolve()}"
        self.sink: syncpoint.JsonlSink | None = None

    def open(self, run: syncpoint.Run) -> None:
        committed = run.state.get(self.key)
        self.sink = syncpoint.JsonlSink(self.path, None if committed is None else int(str(committed)))
        size = self.sink.open()
        if committed is None:  # a file we never wrote: append after what is there (committed before we write)
            run.state.set(self.key, size, commit=True)

    def write(self, run: AnyRun, user: str, posts: Sequence[dict[str, Any]]) -> tuple[int | None, int]:
        assert self.sink is not None
        size = self.sink.append({"user_id": user, **p} for p in posts)
        run.state.set(self.key, size)  # committed with this page's cursor
        return size, len(posts)

    def close(self) -> None:
        if self.sink is not None:
            self.sink.close()
            self.sink = None


# -- the crawl -----------------------------------------------------------------------------------------------
def summarize(text: str) -> str:
    """A stand-in for the original's AI summary: the first sentence, at most 80 characters (no network)."""
    first = text.split(". ")[0].strip()
    return first if len(first) <= 80 else first[:79] + "…"


def tweet_id(post: Any) -> int:
    raw = post.get("id") if isinstance(post, dict) else None
    if not isinstance(raw, str) or not raw.isdigit():
        raise PermanentHttpError("GET", "bookmarks", "unexpected response shape", detail=f"bad tweet id {raw!r}")
    return int(raw)


def crawl_users(run: syncpoint.Run, settings: Settings, dest: Destination, connect: Connect) -> None:
    """One run's body (a single process): one isolated task per user."""
    crawler = Crawler(run, settings, dest, connect)
    dest.open(run)
    try:
        for task in run.tasks(settings.users):
            # Only the API's answers are isolated: a revoked token (401, not retryable) fails this user and
            # the others go on. A failed destination or checkpoint commit must end the run, not fail each
            # user in turn: after a failed bound commit the run keeps only its status.
            with task.isolated(errors=HttpError):
                crawler.crawl_user(task)
    finally:
        dest.close()


class Crawler:
    """One user's crawl, page by page, in a run of one process (``crawl_users``) or a worker (``crawl_part``)."""

    def __init__(self, run: AnyRun, settings: Settings, dest: Destination, connect: Connect,
                 on_page: Callable[[syncpoint.Task, int], None] | None = None) -> None:
        self.run = run
        self.settings = settings
        self.dest = dest
        self.connect = connect
        self.on_page = on_page  # (task, bookmarks added) after each page's commit

    def crawl_user(self, task: syncpoint.Task) -> None:
        self.finish(*self.crawl_pages(task))

    def crawl_pages(self, task: syncpoint.Task) -> tuple[str, int | None, int, int | None]:
        """Every page of the user's new bookmarks, each committed with its cursor; (user, newest ID, bookmarks
        taken, the stored last_tweet_id) for ``finish``."""
        user = task.name
        token = self.settings.tokens.get(user)
        if token is None:
            raise PermanentHttpError("GET", f"/users/{user}/bookmarks", "no token for this user in --tokens")
        state = self.run.state
        last = state.get(f"{user}.last_tweet_id")
        stop_at = int(str(last)) if last is not None else None
        pages = task.token_cursor()  # the next page's token, and what this crawl has taken so far (extra)
        newest: int | None = int(pages.extra["newest"]) if pages.extra.get("newest") is not None else None
        taken = int(pages.extra.get("new", 0))
        if not pages.finished:  # else: every page is in, only the bookkeeping is left
            with self.connect(self.run, token) as client:
                for page in paginate_cursor(
                    client, f"/users/{user}/bookmarks", {"count": self.settings.page_size}, resume=pages.token,
                    next_cursor=lambda d: d.get("next_cursor") if isinstance(d, dict) else None,
                    items=lambda d: d["data"],
                ):
                    self.run.checkpoint()  # a stop asked for while the page was on its way: drop it
                    fresh: list[dict[str, Any]] = []
                    reached = False
                    for post in page.items:
                        if stop_at is not None and tweet_id(post) <= stop_at:  # as integers, never as strings
                            reached = True
                            break
                        fresh.append(self.prepare(post))
                    if fresh:
                        top = max(tweet_id(p) for p in fresh)
                        newest = top if newest is None else max(newest, top)
                    size, added = self.dest.write(self.run, user, fresh)
                    taken += added
                    nxt = None if reached else page.next_state
                    pages.done(nxt, records=len(fresh),
                               extra={"newest": None if newest is None else str(newest), "new": taken, "bytes": size})
                    if self.on_page is not None:
                        self.on_page(task, added)
                    if reached:
                        break
        return user, newest, taken, stop_at

    def prepare(self, post: dict[str, Any]) -> dict[str, Any]:
        post = {"id": post["id"], "text": post.get("text"), "created_at": post.get("created_at")}
        if self.settings.enable_summarization and isinstance(post["text"], str):
            post["summary"] = summarize(post["text"])
        return post

    def finish(self, user: str, newest: int | None, taken: int, stop_at: int | None) -> None:
        """The user's crawl is whole: move their bookmarks (committed with the task's completion)."""
        state = self.run.state
        if newest is not None and (stop_at is None or newest > stop_at):
            state.set(f"{user}.last_tweet_id", str(newest))  # a string: IDs exceed what JSON numbers hold safely
        state.set(f"{user}.last_crawled_at", datetime.now(timezone.utc).isoformat())
        state.set(f"{user}.bookmarks_count", int(str(state.get(f"{user}.bookmarks_count", 0))) + taken)
        log.info("%s: %d new bookmark(s); last_tweet_id %s", user, taken, state.get(f"{user}.last_tweet_id"))
        click.echo(f"crawled {user}: {taken} new")


# -- many workers: --enqueue and --work (syncpoint.distributed) ------------------------------------------------
DISTRIBUTED = "distributed"  # params["mode"] of a run that --enqueue started: its workers continue it
FLEET_KEY = "workers"  # the run key of the workers' crawl: enqueueing again reuses the running one


def is_distributed(run: syncpoint.RunRecord) -> bool:
    return run.params.get("mode") == DISTRIBUTED


def refuse_distributed_run(job: syncpoint.Job, options: syncpoint.RunOptions) -> None:
    """A single-process crawl must not run beside a crawl that workers do (both would move the same users'
    ``last_tweet_id``), nor continue one: its commits would carry no lease."""
    running = job.store.list_runs(job.name, statuses=[syncpoint.RunStatus.RUNNING], key=FLEET_KEY, limit=1)
    if running and is_distributed(running[0]):
        raise syncpoint.UsageError(f"run {running[0].run_id} is being crawled by workers (--enqueue, --work); let "
                                   "them finish it, or crawl under another --job")
    if options.resume_run is not None:
        candidate = job.store.get_run(options.resume_run)
    elif options.resume:
        latest = job.runs(statuses=[s for s in syncpoint.RunStatus if s.resumable], limit=1)
        candidate = latest[0] if latest else None
    else:
        return
    if candidate is not None and candidate.job == job.name and is_distributed(candidate):
        raise syncpoint.UsageError(f"run {candidate.run_id} was started by --enqueue: only its workers (--work) "
                                   "continue it; start a single-process crawl with --new-run")


def postgres_store(options: syncpoint.RunOptions) -> str:
    """The store of a distributed crawl: PostgreSQL (the queue, the leases and bookmark_post live there)."""
    url = options.store or ""
    if not url.startswith(("postgresql://", "postgres://")):
        raise click.UsageError(
            "--enqueue and --work need the PostgreSQL store, where the queue, the leases and bookmark_post live: "
            f"--store postgresql://HOST/DB (or DATABASE_URL; got {store_kind(url)})"
        )
    return url


def retry_crawl(fleet: Fleet, options: syncpoint.RunOptions) -> int:
    """``--enqueue --resume`` (or ``--resume-run ID``): the workers' crawl that ended with failed users goes on.

    Its failed users are queued again and continue from their checkpoints (``fleet.retry``); the users it
    finished are not crawled again. Users that failed for good (a revoked token, fixed since) only with
    ``--retry-failed``, as in the single-process mode.
    """
    if options.resume_run is not None:
        run_id = options.resume_run
    else:
        crawls = [r for r in fleet.job.runs(limit=50) if r.key == FLEET_KEY and is_distributed(r)]
        if not crawls:
            raise syncpoint.UsageError("no crawl of the workers to continue; --enqueue without --resume starts one")
        run_id = crawls[0].run_id
    failed = [t for t in fleet.store.get_tasks(run_id) if t.status is syncpoint.TaskStatus.FAILED]
    if failed and not options.retry_failed and not any(t.retryable for t in failed):
        raise syncpoint.UsageError(f"run {run_id}: {len(failed)} user(s) failed for good "
                                   f"({', '.join(t.name for t in failed)}); add --retry-failed to crawl them again")
    queued = fleet.retry(run_id, permanent=options.retry_failed)
    click.echo(f"run {run_id}: {len(queued)} user(s) queued again ({', '.join(queued)}); start workers with --work")
    return 0


def store_kind(url: str) -> str:
    """The kind of store a URL names, for a message: never the URL itself, which may hold a password."""
    return f"a {url.partition(':')[0]}: store" if url else "none"


def make_fleet(job_name: str, store: str, config: dict[str, Any], *, stall_timeout: float = 30.0,
               max_attempts: int | None = None) -> Fleet:
    """The job's ``Fleet``: procrastinate's queue and syncpoint's leases in the store's database."""
    try:
        from syncpoint.distributed import Fleet
    except ModuleNotFoundError as exc:  # names the extra: pip install 'syncpoint[procrastinate]'
        raise syncpoint.UsageError(str(exc)) from None
    return Fleet.open(job_name, config, store=store, stall_timeout=stall_timeout, max_attempts=max_attempts or 3)


def fan_out(settings: Settings, options: syncpoint.RunOptions) -> int:
    """``--enqueue``: prepare ``bookmark_post`` and the views, then queue one task per user in one transaction
    with the run. Enqueueing again while the workers' crawl runs reuses it and queues nothing twice."""
    fleet = make_fleet(settings.job, postgres_store(options), settings.config())
    try:
        create_original_views(fleet.store, options.store, settings.job)
        conn = open_destination(fleet.store)
        try:
            PostgresDestination(conn, settings.dest_schema).setup()
        finally:
            conn.close()
        if options.resume or options.resume_run is not None:
            return retry_crawl(fleet, options)
        try:
            run_id = fleet.start(settings.users, key=FLEET_KEY, params={**settings.params(), "mode": DISTRIBUTED})
        except syncpoint.ConfigChanged as err:  # its own advice (--force) is a single-process run's
            changed = ", ".join(err.changed)
            raise syncpoint.UsageError(f"run {err.run_id} is being crawled by workers with other settings "
                                       f"({changed}); let them finish it first") from None
        click.echo(f"run {run_id}: {len(settings.users)} user(s) queued; start workers with --work")
        return 0
    finally:
        fleet.job.close()


def run_worker(settings: Settings, options: syncpoint.RunOptions, *, concurrency: int, until_done: bool,
               stall_timeout: float) -> int:
    """``--work``: one worker; crawls queued users of this job until a signal (or until none is left)."""
    fleet = make_fleet(settings.job, postgres_store(options), {}, stall_timeout=stall_timeout,
                       max_attempts=options.max_attempts)
    try:
        store = fleet.store
        fleet.task(lambda run, task: crawl_part(run, task, settings, store, stall_timeout))
        code: int = fleet.work(concurrency=concurrency, until_done=until_done, log_format=options.log_format)
        return code
    finally:
        fleet.job.close()


def crawl_part(run: WorkerRun, task: syncpoint.Task, base: Settings, store: syncpoint.Store,
               stall_timeout: float) -> None:
    """One user's crawl under the task's lease.

    Each page's rows go into ``bookmark_post`` on a connection bound to the run (``run.bind``): they commit in
    the transaction of the checkpoint that covers them, and that transaction first checks the lease's epoch.
    A worker killed before the commit loses the rows with the cursor; a worker fenced (presumed dead, taken
    over) has its commit refused and its rows rolled back. The user's bookmarks (``last_tweet_id`` …) move in
    the commit that completes the task, after this returns. A worker paused inside a transaction would keep
    its rows' locks and stall the worker that takes over: PostgreSQL ends such a session after
    ``stall_timeout`` (``idle_in_transaction_session_timeout``).
    """

    settings = base.for_run(run.config, run.params)

    def page_done(task: syncpoint.Task, added: int) -> None:
        log.info("%s: page %d written (%d new bookmark(s), epoch %d)", task.name, task.record.pages, added, run.epoch)

    log.info("%s: epoch %d, %s", task.name, run.epoch,
             "from the start" if task.cursor is None else f"after {task.record.pages} page(s) of earlier epochs")
    timeout = f"-c idle_in_transaction_session_timeout={max(1, round(stall_timeout * 1000))}"
    with store.connect(options=timeout) as conn, run.bind(conn):
        crawler = Crawler(run, settings, PostgresDestination(conn, settings.dest_schema), settings.connect,
                          on_page=page_done)
        found = crawler.crawl_pages(task)
    crawler.finish(*found)


def read_tokens(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise click.UsageError(f"--tokens {path}: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise click.UsageError(f"--tokens {path}: expected a JSON object of user → token")
    return data


# -- the command line ----------------------------------------------------------------------------------------
@click.command(cls=syncpoint.Command, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--base-url", envvar="BOOKMARKS_API_URL", default=DEFAULT_BASE_URL, show_default=True,
              help="The bookmarks API.")
@click.option("--tokens", "tokens_file", type=click.Path(dir_okay=False, path_type=Path), envvar="BOOKMARKS_TOKENS",
              required=True, help="JSON file mapping each user to their bearer token.")
@click.option("--user", "users", multiple=True, help="Crawl only this user (repeatable; default: all in --tokens).")
@click.option("--direct-import", is_flag=True, help="Insert into bookmark_post, committed with the checkpoint.")
@click.option("--output-file", type=click.Path(dir_okay=False, path_type=Path),
              help="JSON Lines output without --direct-import (default bookmarks.jsonl).")
@click.option("--enable-summarization", is_flag=True, help="Add a short summary to each bookmark.")
@click.option("--page-size", type=click.IntRange(1, 100), default=100, show_default=True, help="Bookmarks per page.")
@click.option("--dest-schema", default="public", show_default=True, help="Schema of the bookmark_post table.")
@click.option("--database-url", envvar="DATABASE_URL", help="PostgreSQL URL; the store when --store is not given.")
@click.option("--retry-wait", type=click.FloatRange(0, 60), default=1.0, show_default=True,
              help="First backoff (seconds) before retrying a failed request.")
@click.option("--job", "job_name", default=DEFAULT_JOB, show_default=True, help="Job name in the store.")
@click.option("--enqueue", is_flag=True,
              help="Many workers, part 1: queue one task per user for --work (with --direct-import, on the "
                   "PostgreSQL store), and exit.")
@click.option("--work", is_flag=True,
              help="Many workers, part 2: be one worker, crawling queued users of this --job (each run names its "
                   "API, users and destination) until stopped.")
@click.option("--until-done", is_flag=True, help="With --work: exit 0 once no user is left to crawl.")
@click.option("--stall-timeout", type=click.FloatRange(0.1, 3600), default=30.0, show_default=True, metavar="S",
              help="With --work: seconds without a heartbeat after which another worker takes a user over.")
@click.option("--concurrency", type=click.IntRange(1, 64), default=1, show_default=True, metavar="N",
              help="With --work: users this worker crawls at once.")
@syncpoint.click_options
def main(base_url: str, tokens_file: Path, users: tuple[str, ...], direct_import: bool, output_file: Path | None,
         enable_summarization: bool, page_size: int, dest_schema: str, database_url: str | None,
         retry_wait: float, job_name: str, enqueue: bool, work: bool, until_done: bool, stall_timeout: float,
         concurrency: int, sync: syncpoint.RunOptions) -> None:
    """Crawl the bookmarks of every user in --tokens; incremental, resumable at the page."""
    logging.getLogger("httpx").setLevel(logging.WARNING)
    check_modes(enqueue=enqueue, work=work, direct_import=direct_import)
    if direct_import and output_file is not None:
        raise click.UsageError("--output-file and --direct-import exclude each other")
    tokens = read_tokens(tokens_file)
    chosen = users or tuple(sorted(tokens))
    if not chosen and not work:
        raise click.UsageError(f"--tokens {tokens_file}: no users")
    try:
        sync = replace(sync, store=store_url(sync, database_url))
    except syncpoint.UsageError as err:
        raise click.UsageError(str(err)) from None
    settings = Settings(
        base_url.rstrip("/"), tokens, chosen, direct_import or enqueue or work,
        None if direct_import or enqueue or work else (output_file or Path("bookmarks.jsonl")),
        enable_summarization, page_size, dest_schema, retry_wait, job_name,
    )
    if work:
        raise SystemExit(run_worker(settings, sync, concurrency=concurrency, until_done=until_done,
                                    stall_timeout=stall_timeout))
    raise SystemExit(fan_out(settings, sync) if enqueue else crawl(settings, sync))


def check_modes(*, enqueue: bool, work: bool, direct_import: bool) -> None:
    """The flags that go with one mode only: a user who mixes them hears which, before anything runs."""
    ctx = click.get_current_context()

    def given(*names: str) -> list[str]:
        return ["--" + n.replace("_", "-") for n in names
                if ctx.get_parameter_source(n) is click.core.ParameterSource.COMMANDLINE]

    if enqueue and work:
        raise click.UsageError("--enqueue and --work are separate commands; give one of them")
    if not work and given("until_done", "stall_timeout", "concurrency"):
        raise click.UsageError(f"{' and '.join(given('until_done', 'stall_timeout', 'concurrency'))} go with --work")
    if enqueue and not direct_import:
        raise click.UsageError("workers write through --direct-import (rows and checkpoint in one transaction): "
                               "add it to --enqueue")
    run_decides = given("users", "base_url", "dest_schema", "output_file", "enable_summarization")
    if work and run_decides:
        raise click.UsageError(f"a worker crawls what the run --enqueue started names; leave out "
                               f"{', '.join(f.replace('--users', '--user') for f in run_decides)}")


if __name__ == "__main__":
    main()

"""What every ``syncpoint`` command shares: the store it works on, JSON output, confirmation, lookups."""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field
from typing import Any

import click
from rich.console import Console

from syncpoint.errors import StoreError, StoreUnavailable, UsageError
from syncpoint.model import RunRecord
from syncpoint.names import check_job_name, check_run_id
from syncpoint.stores import mask_url, open_store, resolve_store_url
from syncpoint.stores.base import Store

log = logging.getLogger("syncpoint.cli")


@dataclass
class CliContext:
    """The global options, and the store opened (once, lazily) from them."""

    store_url: str | None = None
    checkpoint_dir: str | None = None
    log_format: str = "text"
    debug: bool = False
    _stores: dict[tuple[str, bool, bool], Store] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return resolve_store_url(self.store_url, self.checkpoint_dir)

    def store(self, url: str | None = None, *, create: bool = False, read_only: bool = False) -> Store:
        """Open the store (``url`` overrides the global choice). Without ``create`` it must exist already: a
        command that does not create a store where there is none (usually the wrong directory or a typo).
        ``read_only`` (the inspection commands) also migrates and writes nothing (see ``open_store``)."""
        url = url or self.url
        key = (url, create, read_only)
        if key not in self._stores:
            self._stores[key] = connect(url, create=create, read_only=read_only)
        return self._stores[key]

    def close(self) -> None:
        for store in self._stores.values():
            try:
                store.close()
            except Exception:  # closing must not hide the command's own outcome
                log.debug("closing %s failed", mask_url(store.location), exc_info=True)
        self._stores.clear()


def connect(url: str, *, create: bool = True, read_only: bool = False) -> Store:
    """``open_store`` with every way of not reaching the store turned into one line naming it and the fix."""
    shown = mask_url(url)
    try:
        return open_store(url, create=create, read_only=read_only)
    except (UsageError, StoreError):
        raise
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("psycopg"):
            raise StoreUnavailable(
                f"cannot open store {shown}: PostgreSQL support needs psycopg; pip install 'syncpoint[postgres]'"
            ) from None
        raise StoreUnavailable(
            f"cannot open store {shown}: this syncpoint has no backend for it ({exc.name} is missing)"
        ) from None
    except Exception as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        detail = mask_url(detail)
        raise StoreUnavailable(
            f"cannot reach store {shown}: {detail}; check that it is running and reachable, "
            "or choose another with --store URL / SYNCPOINT_STORE"
        ) from None


pass_cli = click.make_pass_decorator(CliContext, ensure=True)


# -- lookups --------------------------------------------------------------------------------------------------
def find_run(store: Store, run_id: str) -> RunRecord:
    check_run_id(run_id)
    found = store.get_run(run_id)
    if found is None:
        raise UsageError(f"no run {run_id} in {mask_url(store.location)}; see 'syncpoint runs list'")
    return found


def check_job(store: Store, job: str) -> str:
    """A job the store knows (has runs or state); unknown names are a usage error listing the known ones."""
    check_job_name(job)
    jobs = store.list_jobs()
    if job not in jobs:
        known = ", ".join(jobs[:20]) + (", …" if len(jobs) > 20 else "") if jobs else "none yet"
        raise UsageError(f"no job {job!r} in {mask_url(store.location)} (known jobs: {known})")
    return job


# -- output ---------------------------------------------------------------------------------------------------
def emit_json(value: Any) -> None:
    """Write ``value`` as JSON to stdout (indented, UTF-8, timestamps already ISO strings)."""
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n")


def console() -> Console:
    """stdout; tables are not squeezed to 80 columns when piped (``| less -S``, ``| grep``)."""
    from syncpoint.report import table_console

    return table_console()


def confirm(question: str, yes: bool) -> bool:
    """True if ``--yes`` was given or the user says yes; a closed stdin counts as no."""
    if yes:
        return True
    try:
        return click.confirm(question, default=False, err=True)
    except click.Abort:
        return False


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts instead of a table.")

"""The standard flags a user's own command line gets, in one call, for click or argparse.

    --resume  --resume-run ID  --new-run  --start DATE  --end DATE  --checkpoint-dir DIR  --store URL
    --retry-failed  --from TASK  --max-items N  --max-seconds S  --max-attempts N  --force
    --list-runs  --cleanup [--keep N]  --progress/--no-progress  --progress-interval S  --log-format text|json
    --metrics-port PORT

Both front ends produce the same ``RunOptions``; ``Job.execute`` acts on it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, TypeVar

import click

from syncpoint.dates import parse_datetime
from syncpoint.errors import SyncpointError, UsageError
from syncpoint.fail import json_requested, program_name, report_error
from syncpoint.names import check_run_id, check_value_name

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class RunOptions:
    """How to open a run. Every field has the meaning of the flag of the same name.

    Frozen, so that every value in use has been validated: change one with
    ``dataclasses.replace(options, max_items=500)``, which builds a new value and checks it again (a bad
    value raises ``UsageError``); assigning a field raises ``dataclasses.FrozenInstanceError``.

    ``params`` (stored with the run) is a read-only copy of the mapping given: a copy, so that the caller's
    dict changing later cannot change it, and read-only (``MappingProxyType``), because a plain dict would
    leave one field of a frozen value changeable in place — by anyone the options were handed to, e.g. every
    member of a ``Pipeline``. Its values are not copied: give JSON values (they are stored as JSON).
    To add one: ``replace(options, params={**options.params, "since": day})``.
    """

    resume: bool = False
    resume_run: str | None = None
    new_run: bool = False
    key: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    retry_failed: bool = False
    start_from: str | None = None
    max_items: int | None = None
    max_seconds: float | None = None
    max_attempts: int | None = None
    force: bool = False
    params: Mapping[str, Any] = field(default_factory=dict)
    store: str | None = None
    checkpoint_dir: str | None = None
    list_runs: bool = False
    cleanup: bool = False
    keep: int = 5
    progress: bool | None = None  # None: live display on a terminal, periodic log lines otherwise
    progress_interval: float | None = None  # seconds between progress log lines (default 10)
    log_format: str | None = None  # "text" or "json"; used when the program configured no logging
    metrics_port: int | None = None  # serve this job's Prometheus metrics while it runs (syncpoint.web.exporter)

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))  # frozen: only here
        chosen = [n for n, v in (("--resume", self.resume), ("--resume-run", self.resume_run),
                                  ("--new-run", self.new_run)) if v]
        if len(chosen) > 1:
            raise UsageError(f"{' and '.join(chosen)} cannot be combined; pick one")
        if self.resume_run is not None:
            check_run_id(self.resume_run)
        if self.key is not None:
            check_value_name(self.key, "run key")
        if self.start_from is not None:
            check_value_name(self.start_from, "--from task")
        for name, value in (("--max-items", self.max_items), ("--max-attempts", self.max_attempts),
                            ("--max-seconds", self.max_seconds)):
            if value is not None and (isinstance(value, bool) or value <= 0):
                raise UsageError(f"{name} must be a positive number, got {value!r}")
        if self.progress_interval is not None and not self.progress_interval > 0:
            raise UsageError(f"--progress-interval must be a positive number, got {self.progress_interval!r}")
        if self.log_format is not None and self.log_format not in ("text", "json"):
            raise UsageError(f"--log-format must be text or json, got {self.log_format!r}")
        if self.metrics_port is not None:
            _check_metrics_port(self.metrics_port)
        if self.keep < 0:
            raise UsageError(f"--keep must be zero or more, got {self.keep}")
        if self.start and self.end and self.start > self.end:
            raise UsageError(f"--start {self.start.isoformat()} is after --end {self.end.isoformat()}")


def _check_metrics_port(port: int) -> None:
    import importlib.util

    if isinstance(port, bool) or not 0 < port < 65536:
        raise UsageError(f"--metrics-port must be a port number (1-65535), got {port!r}")
    if importlib.util.find_spec("prometheus_client") is None:
        raise UsageError("--metrics-port needs the web extra: pip install 'syncpoint[web]'")


def _date(value: str | None, flag: str, *, end: bool = False) -> datetime | None:
    return None if value is None else parse_datetime(value, what=flag, end_of_day=end)


def from_flags(**flags: Any) -> RunOptions:
    """Build ``RunOptions`` from the raw flag values of either front end (dates still as text)."""
    return RunOptions(
        resume=bool(flags.get("resume")),
        resume_run=flags.get("resume_run"),
        new_run=bool(flags.get("new_run")),
        start=_date(flags.get("start"), "--start"),
        end=_date(flags.get("end"), "--end", end=True),
        retry_failed=bool(flags.get("retry_failed")),
        start_from=flags.get("from_task"),
        max_items=flags.get("max_items"),
        max_seconds=flags.get("max_seconds"),
        max_attempts=flags.get("max_attempts"),
        force=bool(flags.get("force")),
        store=flags.get("store"),
        checkpoint_dir=flags.get("checkpoint_dir"),
        list_runs=bool(flags.get("list_runs")),
        cleanup=bool(flags.get("cleanup")),
        keep=5 if flags.get("keep") is None else int(flags["keep"]),
        progress=flags.get("progress"),
        progress_interval=flags.get("progress_interval"),
        log_format=flags.get("log_format"),
        metrics_port=flags.get("metrics_port"),
    )


_FLAGS: list[tuple[str, dict[str, Any]]] = [
    ("--resume", {"is_flag": True, "help": "Resume the latest incomplete run (starts fresh if none)."}),
    ("--resume-run", {"metavar": "ID", "help": "Resume the run with this ID."}),
    ("--new-run", {"is_flag": True, "help": "Start a new run even if one is incomplete."}),
    ("--start", {"metavar": "DATE", "help": "Start of the date range (overrides the checkpoint)."}),
    ("--end", {"metavar": "DATE", "help": "End of the date range (overrides the checkpoint)."}),
    ("--checkpoint-dir", {"metavar": "DIR", "help": "Directory of the SQLite checkpoint store."}),
    ("--store", {"metavar": "URL", "help": "Store URL: sqlite:PATH, json:DIR, postgresql://…"}),
    ("--retry-failed", {"is_flag": True, "help": "Also retry tasks and items that failed for good."}),
    ("--from", {"metavar": "TASK", "dest": "from_task", "help": "Skip the tasks before TASK."}),
    ("--max-items", {"type": int, "metavar": "N", "help": "Stop cleanly (exit 2) after N items."}),
    ("--max-seconds", {"type": float, "metavar": "S", "help": "Stop cleanly (exit 2) after S seconds."}),
    ("--max-attempts", {"type": int, "metavar": "N", "help": "Fail the run after N invocations."}),
    ("--force", {"is_flag": True, "help": "Resume even though the config changed."}),
    ("--list-runs", {"is_flag": True, "help": "List this job's runs and exit."}),
    ("--cleanup", {"is_flag": True, "help": "Delete old finished runs and exit (see --keep)."}),
    ("--keep", {"type": int, "metavar": "N", "help": "With --cleanup: runs to keep (default 5)."}),
    ("--progress/--no-progress", {"dest": "progress", "negatable": True,
                                  "help": "Show progress (default: live on a terminal, log lines otherwise)."}),
    ("--progress-interval", {"type": float, "metavar": "S", "help": "Seconds between progress log lines (10)."}),
    ("--log-format", {"metavar": "text|json", "help": "Log lines as text (default) or one JSON object each."}),
    ("--metrics-port", {"type": int, "metavar": "PORT",
                        "help": "Serve this job's Prometheus metrics on 127.0.0.1:PORT/metrics while it runs."}),
]


def click_options(func: F) -> F:
    """Decorator for a click command: adds the standard flags and passes them as ``sync: RunOptions``."""
    import functools

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        raw = {key: kwargs.pop(key) for key in list(kwargs) if key in _flag_names()}
        try:
            kwargs["sync"] = from_flags(**raw)
        except UsageError as err:
            raise click.UsageError(str(err)) from None
        return func(*args, **kwargs)

    for flag, spec in reversed(_FLAGS):
        spec = dict(spec)
        spec.pop("negatable", None)
        dest = spec.pop("dest", None)
        decls = [flag, dest] if dest else [flag]
        wrapper = click.option(*decls, default=None, show_default=False, **spec)(wrapper)
    return wrapper  # type: ignore[return-value]


def _flag_names() -> set[str]:
    return {spec.get("dest") or flag.lstrip("-").replace("-", "_") for flag, spec in _FLAGS}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the standard flags to an argparse parser; then call ``options_from_namespace``."""
    group = parser.add_argument_group("syncpoint")
    for flag, spec in _FLAGS:
        kwargs: dict[str, Any] = {"help": spec["help"]}
        if spec.get("negatable"):
            yes, no = flag.split("/")
            group.add_argument(yes, dest=spec["dest"], action="store_const", const=True, **kwargs)
            group.add_argument(no, dest=spec["dest"], action="store_const", const=False, help=argparse.SUPPRESS)
            continue
        if spec.get("is_flag"):
            kwargs["action"] = "store_true"
        else:
            kwargs["metavar"] = spec.get("metavar")
            kwargs["type"] = spec.get("type", str)
        if "dest" in spec:
            kwargs["dest"] = spec["dest"]
        group.add_argument(flag, **kwargs)


def options_from_namespace(ns: argparse.Namespace) -> RunOptions:
    return from_flags(**{name: getattr(ns, name, None) for name in _flag_names()})


class Command(click.Command):
    """A click command whose usage errors exit 64 (the documented code) instead of click's 2, and whose
    syncpoint errors raised outside ``Job.execute`` (a store that cannot be opened in ``Job(...)``) end as one
    ``PROG: error: …`` line (``syncpoint.fail``) and their own exit code, not a traceback."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("standalone_mode", True)
        argv = kwargs.get("args") if kwargs.get("args") is not None else (args[0] if args else None)
        fmt = "json" if json_requested(argv) else None
        named = kwargs.get("prog_name") or (args[1] if len(args) > 1 else None)
        try:
            return super().main(*args, **{**kwargs, "standalone_mode": False})
        except click.exceptions.Abort:
            raise SystemExit(report_error("interrupted", named or program_name(), fmt, exit_code=130)) from None
        except click.UsageError as err:
            message = f"{err.format_message()} (see --help)"
            raise SystemExit(report_error(message, named or program_name(err.ctx), fmt, exit_code=64)) from None
        except click.ClickException as err:
            code = err.exit_code
            raise SystemExit(report_error(err.format_message(), named or program_name(), fmt, exit_code=code)) from None
        except SyncpointError as err:  # e.g. the store does not open in Job(...), before Job.execute
            raise SystemExit(report_error(err, named or program_name(), fmt)) from None

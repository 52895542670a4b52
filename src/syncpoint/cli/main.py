"""The ``syncpoint`` command: the group, its global options, and one error policy for every subcommand.

Exit codes: 0 ok · 1 failed (store errors, …) · 64 usage error · 75 job locked · 130 interrupted. Every
``SyncpointError`` ends as its one line (``syncpoint: error: …``) and its own exit code; a usage error
(bad flag, unknown run, bad duration) is one line and 64, never click's multi-line usage text and 2.

Subcommands live in sibling modules and are registered in ``COMMANDS`` below; one that may be absent or
is costly to import (``syncpoint demo``) is listed in ``OPTIONAL_COMMANDS`` and imported only when used; when
it needs an extra that is not installed (the demo needs ``syncpoint[http]``), it says so in one line, exit 64.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import click

from syncpoint import __version__
from syncpoint.cli.common import CliContext
from syncpoint.errors import EXIT_FAILED, EXIT_SIGINT, EXIT_USAGE, SyncpointError, UsageError
from syncpoint.extras import install_hint
from syncpoint.fail import json_logging_active, json_requested, report_error
from syncpoint.logs import FORMATS, configure_logging

log = logging.getLogger("syncpoint.cli")

#: (module, attribute) of every subcommand, in the order ``syncpoint --help`` lists them.
COMMANDS: list[tuple[str, str]] = [
    ("syncpoint.cli.status", "status"),
    ("syncpoint.cli.runs", "runs"),
    ("syncpoint.cli.state", "state"),
    ("syncpoint.cli.transfer", "export_command"),
    ("syncpoint.cli.transfer", "import_command"),
    ("syncpoint.cli.db", "db"),
    ("syncpoint.cli.serve", "serve"),
]
#: Subcommands loaded only when used (or listed), from the first of their modules that exists.
OPTIONAL_COMMANDS: dict[str, list[tuple[str, str]]] = {
    "demo": [("syncpoint.demo.command", "demo")],
}


class Group(click.Group):
    """A click group whose errors follow syncpoint's exit codes and fit on one line."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = list(self.commands)  # the order they were registered in, not alphabetical
        return names + [n for n in OPTIONAL_COMMANDS if n not in names and _optional(n) is not None]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name)
        if found is None and cmd_name in OPTIONAL_COMMANDS:
            where = _optional(cmd_name)
            if where is not None:
                try:
                    found = getattr(importlib.import_module(where[0]), where[1])
                except ModuleNotFoundError as exc:
                    hint = install_hint(exc.name)
                    if hint is None:
                        raise
                    found = _needs_extra(cmd_name, f"syncpoint {cmd_name} needs {exc.name}: {hint}")
                self.add_command(found, cmd_name)
        return found

    def main(  # type: ignore[override]
        self, args: Sequence[str] | None = None, prog_name: str | None = None, **extra: Any
    ) -> NoReturn:
        extra.pop("standalone_mode", None)
        try:
            result = super().main(args, prog_name or "syncpoint", standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as err:
            click.echo(err.ctx.get_help())
            raise SystemExit(0) from None
        except click.UsageError as err:
            _fail(_one_line(err.format_message()), EXIT_USAGE, hint=_help_hint(err.ctx))
        except click.exceptions.Abort:
            _fail("interrupted", EXIT_SIGINT)
        except click.ClickException as err:
            _fail(_one_line(err.format_message()), err.exit_code)
        except SyncpointError as err:
            _fail(str(err), err.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted", EXIT_SIGINT)
        except BrokenPipeError:
            _quiet_broken_pipe()
        except Exception as exc:
            if _debug():
                raise
            _fail(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", EXIT_FAILED)
        raise SystemExit(result if isinstance(result, int) else 0)


def _optional(name: str) -> tuple[str, str] | None:
    for module, attribute in OPTIONAL_COMMANDS[name]:
        try:
            if importlib.util.find_spec(module) is not None:
                return module, attribute
        except ModuleNotFoundError:
            continue
    return None


def _needs_extra(name: str, message: str) -> click.Command:
    """A stand-in for a command whose extra is not installed: listed by ``--help`` with the fix, and when
    run (with any arguments) it says ``message`` in one line and exits 64, instead of a traceback."""

    def say() -> NoReturn:
        raise UsageError(message)

    return click.Command(name, callback=say, help=message, short_help=message, add_help_option=False,
                         context_settings={"ignore_unknown_options": True, "allow_extra_args": True})


def _one_line(text: str) -> str:
    return " ".join(text.split()).rstrip(".")


def _help_hint(ctx: click.Context | None) -> str:
    return f"see '{ctx.command_path} --help'" if ctx is not None else "see 'syncpoint --help'"


def _debug() -> bool:
    ctx = click.get_current_context(silent=True)
    found = ctx.find_object(CliContext) if ctx is not None else None
    return bool(found and found.debug) or "--debug" in sys.argv


def _fail(message: str, code: int, *, hint: str = "") -> NoReturn:
    line = f"{message}; {hint}" if hint else message
    fmt = "json" if json_logging_active() or json_requested() else "text"
    raise SystemExit(report_error(line, "syncpoint", fmt, exit_code=code))


def _quiet_broken_pipe() -> NoReturn:
    """``syncpoint runs list | head``: the reader left; exit without a traceback about stdout."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    raise SystemExit(EXIT_FAILED)


@click.group(name="syncpoint", cls=Group,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--store", "store_url", metavar="URL", envvar="SYNCPOINT_STORE", show_envvar=True,
              help="Checkpoint store: sqlite:PATH, json:DIR or postgresql://user@host/db[?schema=NAME]. "
                   "Default: .checkpoints/syncpoint.db")
@click.option("--checkpoint-dir", metavar="DIR", help="Use the SQLite store DIR/syncpoint.db.")
@click.option("--log-format", type=click.Choice(FORMATS), default="text", show_default=True,
              help="Log lines as text or as one JSON object per line.")
@click.option("--log-level", default="WARNING", show_default=True, metavar="LEVEL",
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
              help="Least severe log level shown.")
@click.option("--debug", is_flag=True, help="Show tracebacks of internal errors.")
@click.version_option(version=__version__, message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context, store_url: str | None, checkpoint_dir: str | None, log_format: str, log_level: str,
        debug: bool) -> None:
    """Inspect and manage syncpoint checkpoints: runs, job state, transfers between stores.

    \b
      syncpoint status [JOB]                      what runs now, how far along, lock holder
      syncpoint runs list [--job J] [--status S] [--limit N]
      syncpoint runs show RUN                     one run: config, tasks, cursors, errors
      syncpoint runs delete RUN [--yes]           never a run a live process works on
      syncpoint runs cleanup [--job J] [--keep N] [--older-than 30d] [--status S] [--dry-run]
      syncpoint state show JOB                    the job's bookmarks
      syncpoint state reset JOB [--key K] [--yes]
      syncpoint export [--job J] > dump.jsonl     everything, streamed as JSON Lines
      syncpoint import dump.jsonl --store URL     into any store (sqlite, json, postgresql)
      syncpoint db migrate | db status            PostgreSQL schema migrations
      syncpoint serve [--host H] [--port P]       web dashboard + /metrics (pip install 'syncpoint[web]')

    \b
    The store: --store URL, else $SYNCPOINT_STORE, else --checkpoint-dir DIR, else
    .checkpoints/syncpoint.db. Every listing takes --json (shapes in docs/CLI.md).
    Exit codes: 0 ok, 1 failed, 64 usage error, 75 job locked, 130 interrupted.
    """
    configure_logging("DEBUG" if debug else log_level, log_format)
    state = ctx.ensure_object(CliContext)
    state.store_url, state.checkpoint_dir, state.log_format, state.debug = (
        store_url, checkpoint_dir, log_format, debug
    )
    ctx.call_on_close(state.close)


def _register() -> None:
    for module, attribute in COMMANDS:
        cli.add_command(getattr(importlib.import_module(module), attribute))
    accept_store_options(cli)


#: The store options every subcommand also accepts after its name: ``syncpoint db migrate --store URL``.
STORE_OPTIONS = (("--store", "store_url", "URL", "The checkpoint store (as the global --store)."),
                 ("--checkpoint-dir", "checkpoint_dir", "DIR", "Use the SQLite store DIR/syncpoint.db."))


def accept_store_options(command: click.Command) -> None:
    """Give every leaf command below ``command`` the global store options, unless it has its own (``import
    --store`` names the target, ``demo`` has both). Given after the subcommand they override the global ones."""
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            accept_store_options(sub)
        return
    taken = {opt for param in command.params for opt in getattr(param, "opts", [])}
    for flag, attribute, metavar, help_text in STORE_OPTIONS:
        if flag not in taken:
            command.params.append(click.Option(
                [flag], metavar=metavar, help=help_text, expose_value=False, is_eager=True,
                callback=_store_setter(attribute),
            ))


def _store_setter(attribute: str) -> Any:
    def callback(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
        if value is not None:
            setattr(ctx.ensure_object(CliContext), attribute, value)

    return callback


def register(command: click.Command) -> None:
    """Add a subcommand from elsewhere (a plugin, ``syncpoint demo``)."""
    cli.add_command(command)


_register()


def main(args: Sequence[str] | None = None) -> NoReturn:
    cli.main(args)

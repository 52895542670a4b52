"""How a program says that it ends with an error: one way, wherever the error is caught.

    mysync.py: error: job 'dip' is locked by pid 4242 on host-a since …; wait for it to finish or stop it

Every place where a syncpoint program ends with an error — ``Job.execute``, a ``syncpoint.Command``'s
usage errors, the ``syncpoint`` command — calls ``report_error``. It writes ``PROG: error: MESSAGE`` once
on stderr, PROG being the program's name as the user typed it (``sys.argv[0]``'s base name, or click's
name for it); with ``--log-format json`` it writes one JSON object instead, shaped like the JSON log lines
(``time``, ``level``, ``logger``, ``message``) plus ``program`` and ``exit_code``. The line is written
directly, not through ``logging``, so that it appears exactly once whatever logging the program set up.

The run's own end-of-run lines ("interrupted …; checkpoint committed") are log lines, not errors: they
report an outcome the program goes on from, and stay in ``logging``.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

import click

from syncpoint.errors import EXIT_FAILED, SyncpointError

LOGGER = "syncpoint"


def program_name(ctx: click.Context | None = None) -> str:
    """The name the user ran the program by: click's name for the root command of ``ctx`` (or of the
    current context), else ``sys.argv[0]``'s base name; ``python -m pkg`` is ``pkg``."""
    ctx = ctx or click.get_current_context(silent=True)
    if ctx is not None and ctx.find_root().info_name:
        return str(ctx.find_root().info_name).removeprefix("python -m ")
    argv0 = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if argv0 in ("", "-c", "-m", "__main__.py"):
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        if spec is not None and spec.name:
            return str(spec.name).removesuffix(".__main__")
        return "python"
    return argv0


def json_requested(args: Sequence[str] | None = None) -> bool:
    """``--log-format json`` (or ``=json``) among ``args`` (default ``sys.argv``): for errors found before
    the options were parsed, such as a bad flag."""
    args = list(sys.argv[1:] if args is None else args)
    for i, arg in enumerate(args):
        if arg == "--log-format=json" or (arg == "--log-format" and args[i + 1 : i + 2] == ["json"]):
            return True
    return False


def json_logging_active() -> bool:
    """Whether syncpoint's own log handler writes JSON (``configure_logging(..., "json")``)."""
    from syncpoint.logs import JsonFormatter

    return any(
        getattr(h, "_syncpoint", False) and isinstance(h.formatter, JsonFormatter) for h in logging.getLogger().handlers
    )


def one_line(text: str) -> str:
    return " ".join(text.split())


def report_error(
    err: BaseException | str, prog: str | None = None, log_format: str | None = None, *,
    exit_code: int | None = None,
) -> int:
    """Say on stderr that the program ends with ``err``; the exit code (``err``'s own, else ``exit_code``,
    else 1). ``log_format`` "json" or "text"; None means JSON when syncpoint's JSON logging is set up."""
    code = exit_code if exit_code is not None else getattr(err, "exit_code", EXIT_FAILED)
    if not isinstance(code, int) or isinstance(code, bool):
        code = EXIT_FAILED
    message = one_line(str(err)) if str(err) else type(err).__name__
    if not isinstance(err, (str, SyncpointError)) and isinstance(err, BaseException):
        message = f"{type(err).__name__}: {message}"
    prog = prog or program_name()
    as_json = log_format == "json" if log_format is not None else json_logging_active()
    if as_json:
        from syncpoint.logs import JsonFormatter

        record = logging.LogRecord(LOGGER, logging.ERROR, __file__, 0, message, None, None)
        record.program = prog
        record.exit_code = code
        line = JsonFormatter().format(record)
    else:
        line = f"{prog}: error: {message}"
    stream = sys.__stderr__ if sys.stderr is None else sys.stderr
    try:
        if stream is not None:
            stream.write(line + "\n")
            stream.flush()
    except (OSError, ValueError):  # stderr closed: the exit code still tells
        pass
    return code

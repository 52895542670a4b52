"""Log setup for syncpoint programs: human-readable text, or one JSON object per line for log aggregators.

    configure_logging("INFO", "json")     # {"time": ..., "level": "INFO", "logger": ..., "message": ..., ...}
    ensure_logging("text")                # the same, but only if the program configured nothing itself

The library itself only logs (``logging.getLogger("syncpoint...")``); it never prints. ``Job.execute`` calls
``ensure_logging`` so that a job's log lines appear without any setup (INFO for syncpoint and the program's
own loggers, WARNING for every other library), and leaves a program's own logging configuration alone.
The handler writes to whatever ``sys.stderr`` is at the time of each record, so that a
live progress display (which swaps ``sys.stderr`` for a proxy) keeps log lines above the display.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import datetime, timezone
from typing import Any, TextIO

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

# The attributes every LogRecord has; anything else on a record came from ``extra=`` and is emitted too.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_") and key not in data:
                data[key] = value
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            data["exception"] = record.exc_text
        if record.stack_info:
            data["stack"] = self.formatStack(record.stack_info)
        return json.dumps(data, default=str, ensure_ascii=False)


class CurrentStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler bound to ``sys.stderr`` as it is when a record is emitted, not when created."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def make_formatter(fmt: str) -> logging.Formatter:
    check_format(fmt)
    return JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT)


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        from syncpoint.errors import UsageError

        raise UsageError(f"--log-format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    return fmt


def configure_logging(level: int | str = "INFO", fmt: str = "text", stream: TextIO | None = None) -> None:
    """Send log records at ``level`` and above to stderr (or ``stream``), as text or JSON lines.

    Replaces the handlers this function installed before, never a program's own handlers.
    """
    handler: logging.Handler = CurrentStderrHandler() if stream is None else logging.StreamHandler(stream)
    handler.setFormatter(make_formatter(fmt))
    handler._syncpoint = True  # type: ignore[attr-defined]
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_syncpoint", False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)


def ensure_logging(fmt: str | None = None, level: int | str = "INFO") -> None:
    """Configure logging unless the program already did (the root logger has handlers).

    ``level`` applies to syncpoint's loggers and the program's own (``own_loggers``); every other library
    (httpx, urllib3, botocore, …) logs at WARNING and above only, so that a sync printing one line per HTTP
    request does not bury its own messages.
    """
    if logging.getLogger().handlers:
        return
    configure_logging("WARNING", fmt or "text")
    for name in own_loggers():
        logging.getLogger(name).setLevel(level.upper() if isinstance(level, str) else level)


def own_loggers() -> list[str]:
    """The loggers of syncpoint and of the program that uses it: ``__main__`` and the script's name
    (``mysync.py`` → ``mysync``), the package run with ``python -m``, and the top package of the first
    caller outside syncpoint and click (a console script's ``mysync.cli`` → ``mysync``)."""
    names = ["syncpoint", "__main__"]
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name:
        names.append(spec.name.split(".")[0])
    script = getattr(main, "__file__", None)
    if script:  # mysync.py logging as getLogger("mysync")
        names.append(os.path.splitext(os.path.basename(script))[0])
    frame = sys._getframe(1)
    for _ in range(50):  # bounded: a deep stack ends the search, not the program
        if frame is None:
            break
        module = str(frame.f_globals.get("__name__", ""))
        top = module.split(".")[0]
        if top and top not in ("syncpoint", "click", "contextlib", "functools", "importlib"):
            names.append(top)
            break
        frame = frame.f_back  # type: ignore[assignment]
    return list(dict.fromkeys(names))

"""Parsing the dates and durations users type, with one clear line when they are wrong."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone

from syncpoint.errors import InvalidDate

_DURATION_RE = re.compile(r"(\d{1,9})\s*([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_datetime(text: str, *, what: str = "date", end_of_day: bool = False) -> datetime:
    """``YYYY-MM-DD`` or an ISO 8601 datetime; naive values are taken as UTC.

    A bare date used as an upper bound (``end_of_day``) means the last microsecond of that day, so that
    ``--end 2024-01-01`` includes records updated during that day, as users of the original tools expect.
    """
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            parsed = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
            return parsed + timedelta(days=1, microseconds=-1) if end_of_day else parsed
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidDate(
            f"invalid {what} {text!r}: expected a real calendar date as YYYY-MM-DD "
            "or an ISO 8601 datetime such as 2024-03-15T14:32:18+01:00"
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)


def parse_duration(text: str, *, what: str = "duration") -> timedelta:
    """``30d``, ``12h``, ``90s``, ``2w``, ``1d12h``."""
    value = text.strip().lower()
    pos, seconds = 0, 0
    for match in _DURATION_RE.finditer(value):
        if match.start() != pos:
            break
        seconds += int(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(value) or not value:
        raise InvalidDate(f"invalid {what} {text!r}: use a number and a unit, e.g. 90s, 45m, 12h, 30d, 2w")
    return timedelta(seconds=seconds)

"""Validation of the names users give us, before they become file names, lock names or SQL values.

Job names are ASCII on purpose (the rule users read is in README.md, "Names"). A job name becomes a file
name (the job's lock file, the JSON store's files), a word in shell commands, crontabs and log queries,
and the identity behind the job's lock. Unicode letters would work as bytes, but two names that look the
same need not be the same string (``Ü`` composed or decomposed — macOS file names are decomposed —, a
Cyrillic ``\u0430`` for a Latin ``a``): one job would silently become two, with two locks that no longer keep
two runs of it apart. So job names are ``[A-Za-z0-9][A-Za-z0-9._-]*``, at most 128 characters.

Task names, keys and state keys are stored as values, never as paths or locks, so they may hold any
Unicode text (``org/repo:pulls``, ``Überweisungen-日本``) — but never control characters, and never
absurd lengths.
"""

from __future__ import annotations

import re

from syncpoint.errors import InvalidName

MAX_JOB_NAME = 128
MAX_VALUE_NAME = 1000
MAX_ITEM_ID = 1000

_JOB_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_RUN_ID_RE = re.compile(r"[0-9]{8}-[0-9]{6}-[0-9a-f]{6}")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_job_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise InvalidName(f"job name must be a non-empty string, got {_shown(name)}")
    if len(name) > MAX_JOB_NAME:
        raise InvalidName(f"job name is {len(name)} characters long; the limit is {MAX_JOB_NAME}")
    if not _JOB_RE.fullmatch(name):
        raise InvalidName(
            f"job name {_shown(name)} is not allowed: job names are ASCII (A-Z, a-z, 0-9, '.', '_', '-', "
            "starting with a letter or digit) because they name files and locks; other text can go in the "
            "job's config or its task names (see 'Names' in the README)"
        )
    return name


def check_value_name(name: object, what: str = "task name") -> str:
    """Task names, run keys, state keys: printable text, no control characters, bounded length."""
    if not isinstance(name, str) or not name:
        raise InvalidName(f"{what} must be a non-empty string, got {_shown(name)}")
    if len(name) > MAX_VALUE_NAME:
        raise InvalidName(f"{what} is {len(name)} characters long; the limit is {MAX_VALUE_NAME}")
    if _CONTROL_RE.search(name):
        raise InvalidName(f"{what} {_shown(name)} contains control characters")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidName(f"{what} {_shown(name)} is not valid UTF-8 text") from None
    return name


def check_run_id(run_id: object) -> str:
    if not isinstance(run_id, str) or not _RUN_ID_RE.fullmatch(run_id):
        raise InvalidName(f"{_shown(run_id)} is not a run ID (they look like 20241201-143022-3fa2c1)")
    return run_id


def check_item_id(item_id: object) -> str:
    """Ledger item IDs: strings or integers (stored as their decimal text), 1..MAX_ITEM_ID characters."""
    if not isinstance(item_id, str):
        if isinstance(item_id, int) and not isinstance(item_id, bool):
            return str(item_id)
        raise InvalidName(f"item IDs must be strings or integers, got {type(item_id).__name__}")
    if not item_id or len(item_id) > MAX_ITEM_ID:
        raise InvalidName(f"item ID must be 1..{MAX_ITEM_ID} characters, got {len(item_id)}")
    return item_id

"""Choosing a store from a URL.

    sqlite:PATH  or  PATH.db          the embedded default (``.checkpoints/syncpoint.db``); ``?sync=full``
                                      fsyncs every commit and survives power loss
    json:DIR                          a human-readable JSON directory
    postgresql://user:pw@host/db      PostgreSQL; ``?schema=NAME`` picks the schema (default ``syncpoint``)

The URL comes from ``--store``, else ``SYNCPOINT_STORE``, else ``--checkpoint-dir`` (a SQLite file inside
it), else the default. Passwords never leave this module unmasked: ``mask_url`` is what logs show.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from syncpoint.errors import UsageError
from syncpoint.stores.base import ChangeSet, ItemOutcome, JobLock, LedgerClear, StateDelete, Store

DEFAULT_DIR = ".checkpoints"
DEFAULT_FILE = "syncpoint.db"
ENV_VAR = "SYNCPOINT_STORE"

__all__ = [
    "ChangeSet",
    "ItemOutcome",
    "JobLock",
    "LedgerClear",
    "StateDelete",
    "Store",
    "mask_url",
    "open_store",
    "resolve_store_url",
]


def mask_url(url: str) -> str:
    """``postgresql://u:secret@h/db`` → ``postgresql://u:***@h/db``; also masks ``password=`` params."""
    masked = re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", url)
    return re.sub(r"(?i)(password=)[^&\s]*", r"\1***", masked)


def resolve_store_url(store: str | None = None, checkpoint_dir: str | os.PathLike[str] | None = None) -> str:
    if store:
        return store
    env = os.environ.get(ENV_VAR)
    if env:
        return env
    directory = Path(checkpoint_dir) if checkpoint_dir is not None else Path(DEFAULT_DIR)
    return f"sqlite:{directory / DEFAULT_FILE}"


def open_store(
    url: str | None = None,
    *,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    read_only: bool = False,
    create: bool = True,
) -> Store:
    """Open the store a URL names (see the module docstring); a bad URL is a usage error (exit 64).

    A job opens its store with the defaults: created (and migrated) if need be. Inspection opens it
    ``read_only``: nothing is created, migrated or written, and it works where the files or the database
    cannot be written. With ``read_only`` or ``create=False`` a store that does not exist — no SQLite file,
    no JSON directory, no PostgreSQL schema, usually a typo or the wrong directory — is a usage error
    naming it, instead of an empty store appearing.
    """
    url = resolve_store_url(url, checkpoint_dir)
    if "\x00" in url:
        raise UsageError("store URL contains a NUL character")
    if url.startswith(("postgresql://", "postgres://")):
        from syncpoint.stores.postgres import PostgresStore

        return PostgresStore(url, read_only=read_only, create=create)
    if url.startswith("json:"):
        from syncpoint.stores.jsondir import JsonDirStore

        directory = url[len("json:") :]
        if not directory:
            raise UsageError("json: store URL needs a directory, e.g. json:.checkpoints")
        return JsonDirStore(directory, read_only=read_only, create=create)
    scheme = re.match(r"([A-Za-z][A-Za-z0-9+.-]+):", url)  # two letters or more: not a Windows drive
    if scheme and scheme.group(1).lower() != "sqlite":
        raise UsageError(  # a typo in the scheme (sqlit:x.db) must not read as a missing file
            f"unknown store scheme {scheme.group(1)!r} in {mask_url(url)!r}; "
            "use sqlite:PATH, json:DIR or postgresql://user@host/db"
        )
    if url.startswith("sqlite:") or url.endswith((".db", ".sqlite", ".sqlite3")):
        from syncpoint.stores.sqlite import SQLiteStore

        path, options = sqlite_target(url)
        return SQLiteStore(path, synchronous=options, read_only=read_only, create=create)
    raise UsageError(
        f"unknown store {mask_url(url)!r}; use sqlite:PATH, json:DIR or postgresql://user@host/db"
    )


def sqlite_target(url: str) -> tuple[str, str]:
    """The file path and query options of a ``sqlite:`` store URL (or a bare path)."""
    if url.startswith("sqlite://"):
        parts = urlsplit(url)
        path = parts.path if not parts.netloc else parts.netloc + parts.path
        query = parts.query
    else:
        body = url[len("sqlite:") :] if url.startswith("sqlite:") else url
        path, _, query = body.partition("?")
    if not path:
        raise UsageError("sqlite: store URL needs a file path, e.g. sqlite:.checkpoints/syncpoint.db")
    params = parse_qs(query)
    unknown = set(params) - {"sync"}
    if unknown:
        raise UsageError(f"unknown sqlite store option(s): {', '.join(sorted(unknown))} (known: sync)")
    sync = params.get("sync", ["normal"])[-1].lower()
    if sync not in ("normal", "full"):
        raise UsageError(f"sqlite sync must be 'normal' or 'full', not {sync!r}")
    return path, sync

"""Fixtures for the store tests: every backend behind one factory, and a fresh PostgreSQL schema per test.

``store_factory`` is parametrised over ``sqlite``, ``jsondir`` and ``postgres``. Calling it opens the same
store again (a new instance on the same file, directory or schema), so a test can close and reopen to check
durability; ``store_factory.fresh()`` gives a factory for another, empty store of the same backend.

PostgreSQL: ``SYNCPOINT_TEST_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``). Each
store gets a schema ``sp_test_<hex>`` dropped after the test. An unreachable server skips those tests,
unless ``SYNCPOINT_REQUIRE_POSTGRES=1``, which fails them.
"""

from __future__ import annotations

import functools
import importlib
import itertools
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import PG_URL, drop_pg_schema, require_pg, with_query

from syncpoint.stores.base import Store

PG_RETRY = 3.0  # seconds a test store retries a lost connection


class SchemaPool:
    """Hands out unique schema names and drops them all at the end."""

    def __init__(self, prefix: str = "sp_test") -> None:
        self.prefix = prefix
        self.names: list[str] = []

    def new(self, prefix: str | None = None) -> str:
        name = f"{prefix or self.prefix}_{uuid.uuid4().hex}"
        self.names.append(name)
        return name

    def drop_all(self) -> None:
        for name in self.names:
            drop_pg_schema(name)


@pytest.fixture
def pg_url() -> str:
    """The base URL of the test server (skips, or fails under SYNCPOINT_REQUIRE_POSTGRES=1, if unreachable)."""
    return require_pg()


@pytest.fixture
def pg_schemas(pg_url: str) -> Iterator[SchemaPool]:
    pool = SchemaPool()
    yield pool
    pool.drop_all()


@pytest.fixture
def pg_schema(pg_schemas: SchemaPool) -> str:
    """A fresh schema name (not created yet), dropped after the test."""
    return pg_schemas.new()


@pytest.fixture
def pg_schema_url(pg_url: str, pg_schema: str) -> str:
    """A store URL for a fresh schema: ``...?schema=sp_test_<hex>``."""
    return with_query(pg_url, schema=pg_schema)


class StoreFactory:
    """Opens (and reopens) one store of one backend; ``fresh()`` makes a factory for another store."""

    def __init__(self, backend: str, opener: Callable[[], Store], new_location: Callable[[], StoreFactory]) -> None:
        self.backend = backend
        self._opener = opener
        self._new_location = new_location
        self.opened: list[Store] = []

    def __call__(self) -> Store:
        store = self._opener()
        self.opened.append(store)
        return store

    def fresh(self) -> StoreFactory:
        return self._new_location()

    def close_all(self) -> None:
        for store in self.opened:
            store.close()


BACKENDS = ["sqlite", "jsondir", pytest.param("postgres", marks=pytest.mark.postgres)]


def _store_class(backend: str) -> Any:
    if backend == "sqlite":
        from syncpoint.stores.sqlite import SQLiteStore

        return SQLiteStore
    if backend == "jsondir":
        try:
            module = importlib.import_module("syncpoint.stores.jsondir")
        except ImportError as exc:
            pytest.skip(f"the JSON-directory store is not importable yet: {exc}")
        return module.JsonDirStore
    from syncpoint.stores.postgres import PostgresStore

    return PostgresStore


@pytest.fixture(params=BACKENDS)
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    backend: str = request.param
    cls = _store_class(backend)
    schemas = SchemaPool()
    counter = itertools.count()
    factories: list[StoreFactory] = []
    if backend == "postgres":
        require_pg()

    def make() -> StoreFactory:
        n = next(counter)
        opener: Callable[[], Store]
        if backend == "sqlite":
            path = tmp_path / f"s{n}.db"
            opener = functools.partial(cls, path)
        elif backend == "jsondir":
            opener = functools.partial(cls, tmp_path / f"j{n}")
        else:
            opener = functools.partial(cls, PG_URL, schema=schemas.new(), retry_for=PG_RETRY)
        factory = StoreFactory(backend, opener, make)
        factories.append(factory)
        return factory

    try:
        yield make()
    finally:
        for factory in factories:
            factory.close_all()
        schemas.drop_all()

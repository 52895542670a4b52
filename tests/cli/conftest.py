"""Fixtures for the ``syncpoint`` command's tests (the helpers they use live in ``cli_helpers``)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cli_helpers import KINDS, Stores, need
from click.testing import CliRunner, Result

from syncpoint.cli.main import cli


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[Stores]:
    made = Stores(tmp_path)
    yield made
    made.cleanup()


@pytest.fixture(params=KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    need(kind)
    return kind


@pytest.fixture
def store_url(store_kind: str, stores: Stores) -> str:
    return stores.url(store_kind)


@pytest.fixture
def invoke(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    """The CLI in-process (click's CliRunner); ``input`` feeds stdin."""
    monkeypatch.delenv("SYNCPOINT_STORE", raising=False)

    def run(*args: str, input: str | None = None) -> Result:
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        try:
            return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)
        finally:  # the command configures logging for its process; do not leak that into other tests
            root.handlers[:] = handlers
            root.setLevel(level)

    return run



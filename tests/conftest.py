"""Makes ``tests/`` importable so test modules can ``import helpers``, puts the example programs' stand-in
servers (``examples/servers/``: ``from dip_server import DipServer``) on the path, and defines ``--run-soak``.

The stand-ins are not part of the package: they belong to the examples, and the tests of the examples (and
of ``syncpoint.http``'s paging) use them too. The option lives here, in the root conftest, because pytest
reads ``pytest_addoption`` only from conftests it loads before collection; ``make soak`` and ``make test``
both start from ``tests/``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "servers"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-soak", action="store_true", default=False,
                     help="run the soak tests of tests/campaign (>= 1,000 SIGKILLs per backend; make soak)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "soak: long reliability campaign; runs only with --run-soak")
    if config.getoption("--run-soak"):
        os.environ["SYNCPOINT_FUZZ_SOAK"] = "1"  # test_fuzz.py: >= 10,000 inputs instead of a few hundred


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-soak"):
        return
    skip = pytest.mark.skip(reason="soak test: give --run-soak (make soak)")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)

"""The reliability campaign (issue #7): crash loops, signals, concurrency, store faults, bad input.

Soak tests (marker ``soak``) run only with ``--run-soak`` (``make soak``, option defined in
``tests/conftest.py``); the default run keeps short versions of the same loops.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture
def pg_ready() -> str:
    from crashloop import PG_URL, REQUIRE_PG, pg_problem

    problem = pg_problem()
    if problem:
        if REQUIRE_PG:
            pytest.fail(f"{problem} (SYNCPOINT_REQUIRE_POSTGRES=1)")
        pytest.skip(problem)
    return PG_URL

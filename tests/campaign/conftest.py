"""The reliability campaign (issue #7): crash loops, signals, concurrency, store faults, bad input.

Soak tests (marker ``soak``) run only with ``--run-soak`` (``make soak``, option defined in
``tests/conftest.py``); the default run keeps short versions of the same loops.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from helpers import require_pg

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "distributed"))  # fleet_support (fleet chaos)


@pytest.fixture
def pg_ready() -> str:
    return require_pg()

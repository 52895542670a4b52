"""Many workers on one run (``syncpoint.distributed``): real procrastinate workers on the real PostgreSQL."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import require_pg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fleet_support import FleetBed, new_bed


@pytest.fixture
def bed(tmp_path: Path) -> Iterator[FleetBed]:
    require_pg()
    made = new_bed(tmp_path)
    yield made
    made.drop()

"""docs/API.md names every public name of ``syncpoint.testing``'s modules, and nothing else: a user reads the
list there, and a name added to a module without a word in the docs (or one left in the docs after it went)
fails here."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

API = Path(__file__).resolve().parents[2] / "docs" / "API.md"


@pytest.mark.parametrize("module", ["syncpoint.testing.server", "syncpoint.testing.crashloop"])
def test_the_public_modules_bullet_lists_exactly_the_modules_names(module: str) -> None:
    text = API.read_text(encoding="utf-8").split("## Public modules", 1)[1]
    bullet = re.search(rf"^- `{re.escape(module)}` — (.*?)(?=^- |^#|\Z)", text, re.M | re.S)  # to the next item
    assert bullet is not None, f"docs/API.md does not list {module}"
    named = set(re.findall(r"`([A-Za-z_]\w*)`", bullet.group(1)))
    assert named == set(importlib.import_module(module).__all__)

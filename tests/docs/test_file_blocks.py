"""A code block in README.md or docs/*.md that shows a file of the repository in full is that file, to the byte.

The marker is an HTML comment on the line before the fence, which GitHub and the docs site do not show:

    <!-- file: src/syncpoint/demo/sync.py -->

It is for code that runs elsewhere (the sync ``syncpoint demo`` runs, a user-style test the suite runs), so
that what a reader copies is what was run: a change to either side without the other fails here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKER = re.compile(r"^<!-- file: (?P<path>\S+) -->$")


@dataclass(frozen=True)
class Shown:
    doc: Path
    line: int  # of the opening fence, 1-based
    path: str
    code: str

    @property
    def id(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


def scan(doc: Path) -> tuple[list[Shown], list[str]]:
    """The blocks of ``doc`` that show a file, and its markers that are wrong (not above a fence, or above a
    block that is never closed)."""
    lines = doc.read_text(encoding="utf-8").splitlines()
    shown: list[Shown] = []
    problems: list[str] = []
    for index, line in enumerate(lines):
        marker = MARKER.match(line.strip())
        if marker is None:
            if line.strip().startswith("<!-- file"):
                problems.append(f"{doc.name}:{index + 1}: malformed marker {line.strip()!r}")
            continue
        fence = lines[index + 1] if index + 1 < len(lines) else ""
        if not fence.startswith("```"):
            problems.append(f"{doc.name}:{index + 1}: a file marker must stand right above a ``` fence")
            continue
        body: list[str] = []
        for code_line in lines[index + 2:]:
            if code_line == "```":
                break
            body.append(code_line)
        else:
            problems.append(f"{doc.name}:{index + 2}: the block is never closed")
            continue
        shown.append(Shown(doc, index + 2, marker["path"], "\n".join(body) + "\n"))
    return shown, problems


SCANS = {doc: scan(doc) for doc in DOCS}
SHOWN = [block for blocks, _ in SCANS.values() for block in blocks]


def test_every_marker_is_well_formed_and_in_use() -> None:
    assert [problem for _, problems in SCANS.values() for problem in problems] == []
    assert {block.path for block in SHOWN} >= {"src/syncpoint/demo/sync.py", "tests/testing/orders_sync.py",
                                               "tests/testing/test_user_example.py"}


@pytest.mark.parametrize("block", SHOWN, ids=lambda b: b.id)
def test_a_block_that_shows_a_file_is_that_file(block: Shown) -> None:
    source = ROOT / block.path
    assert source.is_file(), f"{block.id} shows {block.path}, which does not exist"
    assert block.code == source.read_text(encoding="utf-8"), (
        f"{block.id} differs from {block.path}: copy the file into the doc (or the doc into the file)")


def test_the_scan_reads_the_block_exactly_and_names_a_stray_marker(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text("<!-- file: a.py -->\n```python\nx = 1\n```\n<!-- file: b.py -->\ntext\n")
    [block], problems = scan(doc)
    assert (block.path, block.code, block.line) == ("a.py", "x = 1\n", 2)
    assert len(problems) == 1 and "right above" in problems[0]

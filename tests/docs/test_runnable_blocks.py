"""Every code block in README.md and docs/*.md that is marked runnable runs, as a reader would run it.

The marker is an HTML comment on the line before the fence, which GitHub and the docs site do not show, so
the block stays an ordinary ```` ```python ```` block for both:

    <!-- runnable -->            the block exits 0
    <!-- runnable: exit 2 -->    the block exits 2 (a budget example, say), as the text around it shows

Each block runs in a fresh interpreter (``python block.py``, no arguments) in an empty temporary directory,
with ``PYTHONPATH`` set to the repository's ``src`` and no ``SYNCPOINT_*`` variable that could redirect its
store, under a timeout. A block may use only what it shows: the standard library, syncpoint and its
dependencies, and 127.0.0.1.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKER = re.compile(r"^<!-- runnable(?:: exit (?P<code>\d+))? -->$")
TIMEOUT = 120


@dataclass(frozen=True)
class Block:
    doc: Path
    line: int  # of the opening fence, 1-based, as an editor shows it
    code: str
    exit_code: int

    @property
    def id(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


def scan(doc: Path) -> tuple[list[Block], list[str]]:
    """The runnable blocks of one document, and its markers that are wrong: malformed, not right above a
    ```` ```python ```` fence, or above a block that is never closed."""
    lines = doc.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    problems: list[str] = []
    for index, line in enumerate(lines):
        marker = MARKER.match(line.strip())
        if marker is None:
            if line.strip().startswith("<!-- runnable"):
                problems.append(f"{doc.name}:{index + 1}: malformed marker {line.strip()!r}")
            continue
        fence = lines[index + 1] if index + 1 < len(lines) else ""
        if fence.strip() != "```python":
            problems.append(f"{doc.name}:{index + 1}: a runnable marker must stand right above ```python")
            continue
        indent = fence[: len(fence) - len(fence.lstrip())]
        body = []
        for code_line in lines[index + 2:]:
            if code_line.strip() == "```":
                break
            body.append(code_line[len(indent):] if code_line.startswith(indent) else code_line)
        else:
            problems.append(f"{doc.name}:{index + 2}: the runnable block is never closed")
            continue
        blocks.append(Block(doc, index + 2, "\n".join(body) + "\n", int(marker["code"] or 0)))
    return blocks, problems


SCANS = {doc: scan(doc) for doc in DOCS}
BLOCKS = [block for blocks, _ in SCANS.values() for block in blocks]


def run_block(block: Block, where: Path) -> subprocess.CompletedProcess[str]:
    script = where / "block.py"
    script.write_text(block.code, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCPOINT_")}
    env["PYTHONPATH"] = str(ROOT / "src")
    return subprocess.run([sys.executable, str(script)], cwd=where, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT, stdin=subprocess.DEVNULL)


def test_every_marker_is_well_formed() -> None:
    assert [problem for _, problems in SCANS.values() for problem in problems] == []


def test_the_readme_and_the_guides_have_runnable_blocks() -> None:
    """The marker is in use (a test over no blocks could not fail): the README's first sync, and more."""
    docs = {block.doc.name for block in BLOCKS}
    assert "README.md" in docs and len(docs) >= 3, docs
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.id)
def test_a_marked_block_runs(block: Block, tmp_path: Path) -> None:
    proc = run_block(block, tmp_path)
    assert proc.returncode == block.exit_code, (
        f"{block.id} exited {proc.returncode}, the doc says {block.exit_code}\n{proc.stdout[-2000:]}"
        f"{proc.stderr[-4000:]}"
    )
    assert "Traceback" not in proc.stderr, proc.stderr[-4000:]


def test_a_broken_block_is_caught(tmp_path: Path) -> None:
    """The harness itself: a marked block that raises, or exits otherwise than declared, fails its check."""
    doc = tmp_path / "doc.md"
    doc.write_text("text\n<!-- runnable: exit 2 -->\n```python\nimport syncpoint\n"
                   "raise SystemExit(syncpoint.ExitCode.PARTIAL)\n```\n\n<!-- runnable -->\n```python\n"
                   "import syncpoint\nsyncpoint.no_such_name\n```\n")
    (partial, broken), problems = scan(doc)
    assert problems == []
    assert (partial.line, partial.exit_code, broken.exit_code) == (3, 2, 0)
    assert run_block(partial, tmp_path).returncode == 2
    proc = run_block(broken, tmp_path)
    assert proc.returncode == 1 and "AttributeError" in proc.stderr
    doc.write_text("<!-- runnable -->\n\n```python\npass\n```\n<!-- runnable: exit two -->\n```python\n")
    blocks, problems = scan(doc)
    assert blocks == [] and len(problems) == 2
    assert "right above" in problems[0] and "malformed" in problems[1]

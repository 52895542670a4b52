"""The documentation site builds with warnings as errors (``make docs``): a link to a page or an anchor that
does not exist, or a docstring the reference cannot render, fails here rather than in a reader's browser."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_site_builds_strictly_with_the_readme_as_home_and_the_reference(tmp_path: Path) -> None:
    site = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-4000:]
    home = (site / "index.html").read_text()
    assert "Interruptible, resumable long-running data syncs" in home
    assert 'href="ARCHITECTURE/' in home and 'href="docs/' not in home  # repository links rewritten
    reference = (site / "reference" / "index.html").read_text()
    for rendered in ("execute", "item_done", "ExitCode", "SIGTERM", "paginate_cursor"):
        assert rendered in reference, rendered
    assert (site / "CHANGELOG" / "index.html").is_file() and (site / "API" / "index.html").is_file()

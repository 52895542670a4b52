"""mkdocs hooks: README.md and CHANGELOG.md, which live at the repository's root, become pages of the site.

The site's pages are docs/*.md, but its home page is the README a visitor of the repository reads first, and
the changelog sits beside it. Both are added as generated pages, and the links written for reading the
repository (``docs/CLI.md`` in the README, ``../CHANGELOG.md`` in docs/) are rewritten to the site's layout,
where every page is a sibling. Nothing is copied or edited on disk, so the files stay the single source.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]
#: (file at the repository's root, its page in the site)
ROOT_PAGES = (("README.md", "index.md"), ("CHANGELOG.md", "CHANGELOG.md"))
LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")


def site_link(target: str, from_root: bool) -> str:
    """A repository link as the site needs it: pages in docs/ and the two root pages are siblings."""
    if re.match(r"^[a-z]+:|^#", target):
        return target
    path, _, anchor = target.partition("#")
    if from_root and path.startswith("docs/"):
        path = path[len("docs/"):]
    elif not from_root and path.startswith("../"):
        path = path[len("../"):]
    for source, page in ROOT_PAGES:
        if path == source:
            path = page
    return path + (f"#{anchor}" if anchor else "")


def rewrite(markdown: str, from_root: bool) -> str:
    return LINK.sub(lambda m: f"]({site_link(m['target'], from_root)})", markdown)


def on_files(files: Files, config: Any) -> Files:
    for source, page in ROOT_PAGES:
        text = rewrite((ROOT / source).read_text(encoding="utf-8"), from_root=True)
        files.append(File.generated(config, page, content=text))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    if page.file.generated_by:
        return markdown  # a root page: rewritten when it was added
    return rewrite(markdown, from_root=False)

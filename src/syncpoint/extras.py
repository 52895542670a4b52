"""Optional dependencies: which extra installs a module, so that a missing one is named with its fix.

A plain ``pip install syncpoint`` brings only what every sync needs (click, rich); the HTTP helpers
(``syncpoint.http``: httpx, tenacity) come with ``syncpoint[http]``. Code that needs an extra turns the bare
``No module named 'httpx'`` into one line that names the module and the ``pip install`` that brings it.
(PostgreSQL and the dashboard say the same in their own words: ``syncpoint.cli.common``, ``syncpoint.web``.)
"""

from __future__ import annotations

#: Module (top-level name) → the extra that installs it; pyproject.toml's ``[project.optional-dependencies]``.
EXTRAS: dict[str, str] = {
    "httpx": "http",
    "tenacity": "http",
    "procrastinate": "procrastinate",
}


def install_hint(module: str | None) -> str | None:
    """``pip install 'syncpoint[http]'`` for ``httpx`` (or ``httpx._client``); None when no extra installs it."""
    extra = EXTRAS.get((module or "").partition(".")[0])
    return None if extra is None else f"pip install 'syncpoint[{extra}]'"


def missing(feature: str, error: ModuleNotFoundError) -> ModuleNotFoundError:
    """The error to raise instead of ``error``: ``FEATURE needs httpx: pip install 'syncpoint[http]'``.

    Still a ``ModuleNotFoundError`` with the missing module's ``name``, so code that asks "which module is
    missing?" (the CLI's optional commands) keeps working."""
    hint = install_hint(error.name)
    return ModuleNotFoundError(f"{feature} needs {error.name}" + (f": {hint}" if hint else ""), name=error.name)

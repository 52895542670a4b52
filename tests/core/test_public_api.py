"""The public surface is exactly what docs/API.md lists (as httpx tests its own): ``syncpoint.__all__`` is read
from the code, the documented names from the page, and the two must agree, so neither can drift. The exit
codes are one ``IntEnum``; their old bare ``EXIT_*`` names still answer, with a warning naming the new one."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import syncpoint
from syncpoint import errors

ROOT = Path(__file__).resolve().parents[2]
API = ROOT / "docs" / "API.md"
CODES = {"OK": 0, "FAILED": 1, "PARTIAL": 2, "USAGE": 64, "LOCKED": 75, "SIGINT": 130, "SIGTERM": 143}


def documented_names() -> list[str]:
    """The names listed under docs/API.md's "Names in `syncpoint`", one ``- `Name` — …`` bullet each."""
    text = API.read_text()
    section = text.split("## Names in `syncpoint`", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^- `([A-Za-z_][A-Za-z0-9_]*)` — ", section, re.M)


def test_the_exported_names_are_exactly_the_documented_ones() -> None:
    names = documented_names()
    assert len(names) == len(set(names)), "a name is listed twice in docs/API.md"
    assert len(syncpoint.__all__) == len(set(syncpoint.__all__)), "a name is twice in syncpoint.__all__"
    exported = set(syncpoint.__all__)
    assert exported - set(names) == set(), "exported but not documented in docs/API.md"
    assert set(names) - exported == set(), "documented in docs/API.md but not exported"


def test_the_reference_page_renders_every_documented_name_in_its_group() -> None:
    """docs/reference.md has one ``::: syncpoint.Name`` per documented name, under the same headings."""
    def groups(text: str, pattern: str) -> dict[str, list[str]]:
        return {block.split("\n", 1)[0].strip(): re.findall(pattern, block, re.M)
                for block in text.split("\n## Public modules", 1)[0].split("\n## ")[1:]}

    api = API.read_text().split("## Names in `syncpoint`", 1)[1].split("\n## ", 1)[0].replace("\n### ", "\n## ")
    documented = groups(api, r"^- `([A-Za-z_][A-Za-z0-9_]*)` — ")
    rendered = groups((ROOT / "docs" / "reference.md").read_text(), r"^::: syncpoint\.([A-Za-z_][A-Za-z0-9_]*)$")
    assert rendered == documented


def test_every_exported_name_imports_without_a_warning() -> None:
    """In a fresh interpreter (``AsyncRun`` is loaded lazily), warnings as errors: ``import *`` gives exactly
    ``__all__`` and each name resolves."""
    probe = (
        "import syncpoint\n"
        "namespace = {}\n"
        "exec('from syncpoint import *', namespace)\n"
        "names = sorted(set(namespace) - {'__builtins__'})\n"
        "assert names == sorted(syncpoint.__all__), set(names) ^ set(syncpoint.__all__)\n"
        "assert all(namespace[n] is not None for n in names)\n"
        "print(len(names))\n"
    )
    proc = subprocess.run([sys.executable, "-W", "error", "-c", probe], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) == len(syncpoint.__all__)


def test_exit_codes_are_one_int_enum_and_the_errors_carry_them() -> None:
    assert {code.name: code.value for code in syncpoint.ExitCode} == CODES
    assert syncpoint.ExitCode.PARTIAL == 2 and isinstance(syncpoint.ExitCode.PARTIAL, int)
    assert syncpoint.UsageError("x").exit_code == syncpoint.ExitCode.USAGE
    assert syncpoint.InvalidName("x").exit_code == syncpoint.ExitCode.USAGE
    assert syncpoint.JobLocked("job", None).exit_code == syncpoint.ExitCode.LOCKED
    assert syncpoint.StoreError("x").exit_code == syncpoint.ExitCode.FAILED
    stopped = syncpoint.Stopped("budget", syncpoint.ExitCode.PARTIAL)
    assert stopped.exit_code == 2 and type(stopped.exit_code) is int  # stored as a plain number
    for name, value in CODES.items():  # syncpoint's own modules keep the plain ints
        assert getattr(errors, f"EXIT_{name}") == value and type(getattr(errors, f"EXIT_{name}")) is int


@pytest.mark.parametrize("name", sorted(CODES))
def test_the_old_exit_code_names_warn_and_still_answer(name: str) -> None:
    assert f"EXIT_{name}" not in syncpoint.__all__
    expected = rf"syncpoint\.EXIT_{name} is deprecated; use syncpoint\.ExitCode\.{name}"
    with pytest.warns(DeprecationWarning, match=expected):
        value = getattr(syncpoint, f"EXIT_{name}")
    assert value == CODES[name] and type(value) is int


def test_from_import_of_an_old_name_warns_at_the_importing_line() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from syncpoint import EXIT_USAGE  # noqa: F401
    deprecations = [w for w in caught if issubclass(w.category, DeprecationWarning)]
    assert deprecations  # import looks the name up twice; under the default filters it is shown once
    for warning in deprecations:
        assert "syncpoint.ExitCode.USAGE" in str(warning.message) and warning.filename == __file__


def test_unknown_names_are_still_attribute_errors() -> None:
    with pytest.raises(AttributeError, match="no attribute 'EXIT_MAYBE'"):
        _ = syncpoint.EXIT_MAYBE  # type: ignore[attr-defined]


def test_pipeline_is_exported_and_nothing_of_ours_uses_the_old_names() -> None:
    from syncpoint.pipeline import Pipeline

    assert syncpoint.Pipeline is Pipeline
    users = [p for folder in ("src", "examples", "benchmarks", "tests") for p in (ROOT / folder).rglob("*.py")]
    old = re.compile(r"syncpoint\.EXIT_[A-Z]+\b|from syncpoint import [^\n]*\bEXIT_")
    offenders = [str(p.relative_to(ROOT)) for p in users
                 if p != Path(__file__) and old.search(p.read_text())]
    assert offenders == []


# -- the examples use only the public API ------------------------------------------------------------------
# They are what users copy: an example that imports ``syncpoint.model.utcnow`` teaches an internal name that
# may change without notice. The public modules and their functions come from docs/API.md, like the names.
EXAMPLES = ROOT / "examples"


def documented_modules() -> tuple[set[str], set[tuple[str, str]]]:
    """docs/API.md's "Public modules": the modules public whole (``- `syncpoint.http` — …``) and the single
    functions of otherwise internal modules (``- `syncpoint.logs.configure_logging(level, fmt)` — …``, and a
    second ``status(…)`` of the same module in the same bullet)."""
    section = API.read_text().split("## Public modules", 1)[1].split("\n## ", 1)[0]
    whole: set[str] = set()
    functions: set[tuple[str, str]] = set()
    for bullet in re.findall(r"^- (.*?) — ", section, re.M):
        spans = re.findall(r"`([A-Za-z_][\w.]*)(\(.*?\))?`", bullet)
        first, called = spans[0]
        if not called:
            whole.add(first)
            continue
        module = first.rsplit(".", 1)[0]
        functions.update((module, name.rsplit(".", 1)[-1]) for name, call in spans if call)
    return whole, functions


def public_in(module: str) -> set[str]:
    """The names a public module exports: its ``__all__`` (each public module has one)."""
    return set(importlib.import_module(module).__all__)


def internal_uses(path: Path, whole: set[str], functions: set[tuple[str, str]]) -> list[str]:
    """Each import of, or ``syncpoint.x`` attribute on, something docs/API.md does not make public."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names
                      if a.name.startswith("syncpoint.") and a.name not in whole]
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            module = node.module
            if module == "syncpoint":
                allowed = set(syncpoint.__all__) | {m.split(".")[1] for m in whole}
            elif module in whole:
                allowed = public_in(module)
            elif module.startswith("syncpoint."):
                allowed = {name for mod, name in functions if mod == module}
            else:
                continue
            found += [f"from {module} import {a.name}" for a in node.names if a.name not in allowed]
        elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "syncpoint"
              and node.attr not in syncpoint.__all__ and node.attr != "__version__"
              and not any(m.split(".")[1] == node.attr for m in whole)):
            found.append(f"syncpoint.{node.attr}")
    return [f"{path.relative_to(ROOT)}:{use}" for use in found]


def test_the_documented_public_modules_exist() -> None:
    """The parse above reads docs/API.md right: every module and function it finds is there."""
    whole, functions = documented_modules()
    assert {"syncpoint.http", "syncpoint.distributed", "syncpoint.testing.server"} <= whole
    assert ("syncpoint.logs", "configure_logging") in functions
    assert ("syncpoint.stores.pg_migrations", "status") in functions
    for module in whole:
        assert public_in(module), module
    for module, name in functions:
        assert callable(getattr(importlib.import_module(module), name)), f"{module}.{name}"


def test_the_examples_use_only_the_public_api() -> None:
    whole, functions = documented_modules()
    files = sorted(EXAMPLES.rglob("*.py"))
    assert len(files) >= 10  # the five programs and their five stand-in servers
    offenders = [use for path in files for use in internal_uses(path, whole, functions)]
    assert offenders == [], "names docs/API.md does not make public:\n" + "\n".join(offenders)

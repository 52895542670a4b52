"""What ``pip install syncpoint`` gets: the sdist and the wheel that ``make dist`` builds, built once per session.

The wheel is built from the sdist (``python -m build``'s default), so a file the sdist forgets is missing
from the wheel too. A user relies on: every module and data file of the package being there (the PostgreSQL
migrations, the dashboard's templates and static files, ``py.typed`` for their type checker), nothing of
ours that is not the package (tests), metadata that PyPI accepts, and the installed wheel finding its data
files without the source tree. And what is not theirs stays out: the example programs' domain code (the
Bundestag DIP sync lives in ``examples/dip_sync.py``) and the stand-in servers that only our tests and
examples use (``examples/servers/``); of ``syncpoint.testing`` the wheel ships what users test their own syncs
with.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

import syncpoint

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "syncpoint"
CACHE_PARTS = ("__pycache__",)
CACHE_SUFFIXES = (".pyc", ".pyo")
#: ``syncpoint/testing/`` in the wheel: the generic local API with fault injection and the crash loop
#: (docs/TESTING.md), nothing that serves only our own tests or examples.
TESTING_FILES = {"syncpoint/testing/__init__.py", "syncpoint/testing/server.py", "syncpoint/testing/crashloop.py"}
#: What only the example programs' code holds: their APIs' hosts and fields, their stand-ins' names. (Names
#: such as ``drucksachen`` in a docstring's example are not domain code; the DIP sync's field is.)
DOMAIN = re.compile(r"bundestag|aktualisiert|plenarprotokoll|gegevensmagazijn|GewijzigdOp|"
                    r"dip_server|github_server|odata_server|prices_server|bookmarks_server", re.I)


@dataclass(frozen=True)
class Dist:
    sdist: Path
    wheel: Path


def clean_copy(dest: Path) -> Path:
    """The repository's files as a fresh clone has them (tracked and not ignored, as they are on disk now).

    Built in place, a left-over ``src/syncpoint.egg-info`` from an editable install would add every file
    its ``SOURCES.txt`` names to the sdist, and hide a data file that ``pyproject.toml`` forgets."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True, timeout=60).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    out = tmp_path_factory.mktemp("dist")
    tree = clean_copy(tmp_path_factory.mktemp("tree"))
    proc = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(tree)],
                          capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    [sdist] = out.glob("*.tar.gz")
    [wheel] = out.glob("*.whl")
    return Dist(sdist, wheel)


def wheel_names(dist: Dist) -> list[str]:
    with zipfile.ZipFile(dist.wheel) as archive:
        return archive.namelist()


def package_files() -> set[str]:
    """Every file in ``src/syncpoint`` as the wheel would name it, less interpreter caches."""
    return {
        path.relative_to(PACKAGE.parent).as_posix()
        for path in PACKAGE.rglob("*")
        if path.is_file() and not set(CACHE_PARTS) & set(path.parts) and path.suffix not in CACHE_SUFFIXES
    }


def test_the_wheel_holds_the_package_its_data_files_and_nothing_else(dist: Dist) -> None:
    names = wheel_names(dist)
    assert dist.wheel.name == f"syncpoint-{syncpoint.__version__}-py3-none-any.whl"
    shipped = {n for n in names if not n.startswith(f"syncpoint-{syncpoint.__version__}.dist-info/")}
    assert shipped == package_files(), "the wheel and src/syncpoint differ"
    assert "syncpoint/py.typed" in names
    migrations = {p.name for p in (PACKAGE / "stores" / "migrations").glob("*.sql")}
    assert migrations and {n.rsplit("/", 1)[1] for n in names if n.startswith("syncpoint/stores/migrations/")
                           and n.endswith(".sql")} == migrations
    for folder, pattern in (("templates", "*.html"), ("static", "*")):
        expected = {p.name for p in (PACKAGE / "web" / folder).glob(pattern)}
        assert expected and {n.rsplit("/", 1)[1] for n in names if n.startswith(f"syncpoint/web/{folder}/")} \
            == expected
    assert not [n for n in names if n.startswith("tests/") or "/tests/" in n or n.startswith(("examples/",
                                                                                                   "benchmarks/"))]
    assert not [n for n in names if "__pycache__" in n or n.endswith(CACHE_SUFFIXES)]


def test_the_wheel_holds_no_domain_code_and_no_test_only_fixture(dist: Dist) -> None:
    """What a user installs is the library: the testing helpers they use on their own syncs, and the demo,
    which is written with the public API against the generic local server, but no example's API or data."""
    names = wheel_names(dist)
    assert {n for n in names if n.startswith("syncpoint/testing/")} == TESTING_FILES
    with zipfile.ZipFile(dist.wheel) as archive:
        mentions = {name: sorted({m.group(0).lower() for m in DOMAIN.finditer(archive.read(name).decode())})
                    for name in names if name.endswith((".py", ".html", ".js", ".css", ".sql"))}
    assert {name: found for name, found in mentions.items() if found} == {}


def test_the_wheel_metadata_carries_the_one_version_and_the_command(dist: Dist) -> None:
    info = f"syncpoint-{syncpoint.__version__}.dist-info"
    with zipfile.ZipFile(dist.wheel) as archive:
        metadata = archive.read(f"{info}/METADATA").decode()
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
    assert re.search(rf"^Version: {re.escape(syncpoint.__version__)}$", metadata, re.M)
    assert re.search(r"^License-Expression: MIT$", metadata, re.M)
    assert re.search(r"^License-File: LICENSE$", metadata, re.M)
    with zipfile.ZipFile(dist.wheel) as archive:
        assert archive.read(f"{info}/licenses/LICENSE").decode().startswith("MIT License")
    assert "syncpoint = syncpoint.cli.main:main" in entry_points
    for extra in ("http", "postgres", "procrastinate", "web", "docs", "dev"):
        assert re.search(rf"^Provides-Extra: {extra}$", metadata, re.M), extra
    core = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert sorted(line.split()[1].split(">")[0] for line in core) == ["click", "rich"]  # what every sync needs
    assert re.search(r'^Requires-Dist: httpx>=[\d.]+; extra == "http"$', metadata, re.M)


def test_the_version_is_written_in_one_place() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and 'version = {attr = "syncpoint.__version__"}' in pyproject
    assert not re.search(r"^version\s*=\s*\"", pyproject, re.M)
    quoted = f'"{syncpoint.__version__}"'
    elsewhere = [p for p in PACKAGE.rglob("*.py") if quoted in p.read_text() and p != PACKAGE / "__init__.py"]
    assert not elsewhere


def test_the_sdist_holds_sources_and_docs_but_no_junk(dist: Dist) -> None:
    with tarfile.open(dist.sdist) as archive:
        members = [m.split("/", 1)[1] for m in archive.getnames() if "/" in m]
    for needed in ("pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md", "MANIFEST.in", "src/syncpoint/__init__.py",
                   "src/syncpoint/py.typed", "docs/ARCHITECTURE.md"):
        assert needed in members, needed
    junk = re.compile(r"(^|/)(\.venv|\.git|__pycache__|\.pytest_cache|\.mypy_cache|\.ruff_cache|\.hypothesis|"
                      r"\.checkpoints|dist|build|site|tests|examples|benchmarks)(/|$)|\.py[co]$|soak-report|\.db$")
    assert not [m for m in members if junk.search(m)]


def test_twine_accepts_both(dist: Dist) -> None:
    proc = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", str(dist.sdist), str(dist.wheel)],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("PASSED") == 2, proc.stdout


def test_the_installed_wheel_finds_its_data_files_without_the_source_tree(dist: Dist, tmp_path: Path) -> None:
    """Installed on its own (``pip install --target``, dependencies from this environment), the package
    is imported from the wheel's files, lists its migrations, and loads the dashboard's templates."""
    target = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                           "--target", str(target), str(dist.wheel)],
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    probe = (
        "import syncpoint, jinja2\n"
        "from importlib import resources\n"
        "from syncpoint.stores import pg_migrations\n"
        "print(syncpoint.__file__)\n"
        "print(','.join(m.name for m in pg_migrations.available()))\n"
        "print(','.join(jinja2.PackageLoader('syncpoint.web', 'templates').list_templates()))\n"
        "print((resources.files('syncpoint.web') / 'static' / 'style.css').is_file())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, env=env,
                         timeout=120, stdin=subprocess.DEVNULL)
    assert run.returncode == 0, run.stderr
    where, migrations, templates, static = run.stdout.splitlines()
    assert Path(where).is_relative_to(target)
    assert migrations.split(",") == sorted(p.stem for p in (PACKAGE / "stores" / "migrations").glob("*.sql"))
    assert set(templates.split(",")) == {p.name for p in (PACKAGE / "web" / "templates").glob("*.html")}
    assert static == "True"

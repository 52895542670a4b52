"""Bad input, fuzzed with hypothesis: names with ../, NUL, newlines, 10,000 characters, lone surrogates;
impossible and far dates; malformed store URLs; cursors that are not JSON; hand-edited checkpoint JSON.
Nothing ends in a traceback, the CLI exits with a documented code, nothing is written outside the
checkpoint directory, and PostgreSQL takes names as values (quotes and semicolons round-trip).

Default: a few hundred inputs. ``--run-soak``: ``SYNCPOINT_SOAK_FUZZ`` (default 10,000) inputs in all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from crashloop import ROOT, new_pg_schema
from helpers import PG_URL, drop_pg_schema, with_query
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import syncpoint
from syncpoint.cli.main import cli
from syncpoint.errors import SyncpointError
from syncpoint.options import from_flags
from syncpoint.stores import open_store

pytestmark = pytest.mark.fuzz  # make soak selects it: -m "soak or fuzz"
SOAK = os.environ.get("SYNCPOINT_FUZZ_SOAK") == "1"
CLI_CODES = {0, 1, 2, 64, 75, 130, 143}
NASTY = ["../x", "../../etc/passwd", "a/../../b", "/abs/path", "a\x00b", "line\nbreak", "tab\tx", "x" * 10_000,
         "\ud800", "bad\udcffutf8", "", " ", ".", "..", "~", "-flag", "--store", "a'; DROP TABLE runs; --",
         'q"uote', "semi;colon", "ünïcödé", "😀", "CON", "a%00b", "$(touch pwned)", "`id`"]
DATES = ["2024-02-30", "tomorrow", "99999-01-01", "2024-13-01", "0000-00-00", "2024-02-29T25:00", "yesterday",
         "-1", "1e9", "2024-01-01T00:00:00+99:00", "now", ""]
names = st.one_of(st.sampled_from(NASTY), st.text(max_size=40), st.text(min_size=200, max_size=2000))
URLS = ["postgresql://127.0.0.1:1/x", "postgresql://", "postgresql://u:pw@[::1/x", "sqlite:", "json:",
        "sqlite:/proc/nope/x.db", "json:/proc/self/nope", "mysql://x", "sqlite:x.db?sync=maybe",
        "sqlite:x.db?evil=1", "postgresql://127.0.0.1:1/x?schema=a;b", "postgresql://h/x?retry=-1",
        "postgresql://h/x?migrate=perhaps", "\x00", "json:\x00", "sqlite:a\nb.db"]


TRIED: Counter[str] = Counter()  # inputs tried per test, printed (and written to the soak report) at the end


@pytest.fixture(scope="module", autouse=True)
def _report_inputs_tried() -> Iterator[None]:
    yield
    total = sum(TRIED.values())
    print(f"\nfuzz: {total:,} inputs tried ({', '.join(f'{k} {v:,}' for k, v in sorted(TRIED.items()))})")
    if SOAK:
        path = Path(os.environ.get("SYNCPOINT_SOAK_REPORT", "soak-report.json")).with_suffix(".fuzz.json")
        path.write_text(json.dumps({"kind": "fuzz", "inputs": total, "by_test": dict(TRIED)}, indent=2) + "\n")


def _examples(default: int, soak: int) -> settings:
    return settings(max_examples=soak if SOAK else default, deadline=None, derandomize=not SOAK,
                    suppress_health_check=list(HealthCheck))


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A temp cwd with a SQLite store holding one finished run."""
    cwd = tmp_path_factory.mktemp("fuzzcwd")
    url = f"sqlite:{cwd / 'cp' / 'syncpoint.db'}"
    job = syncpoint.Job("known", {"a": 1}, store=url)
    with job.run() as run:
        run.task("t").item_done("1")
    job.close()
    return cwd, url


def _invoke(args: list[str], cwd: Path) -> tuple[int, str]:
    runner = CliRunner()
    old = os.getcwd()
    os.chdir(cwd)
    try:
        result = runner.invoke(cli, args, catch_exceptions=True)
    finally:
        os.chdir(old)
    out = result.output + (result.stderr if hasattr(result, "stderr") else "")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"{args!r} raised {result.exception!r}")
    return result.exit_code, out


COMMANDS = [
    lambda n: ["runs", "show", n], lambda n: ["runs", "list", "--job", n], lambda n: ["state", "show", n],
    lambda n: ["status", n], lambda n: ["runs", "list", "--key", n], lambda n: ["runs", "delete", n, "--yes"],
    lambda n: ["state", "reset", "known", "--key", n, "--yes"], lambda n: ["runs", "cleanup", "--older-than", n],
    lambda n: ["runs", "list", "--status", n], lambda n: ["runs", "list", "--limit", n],
]


@pytest.mark.timeout(30 * 60)
@given(name=names, which=st.integers(0, len(COMMANDS) - 1))
@_examples(150, 6500)
def test_cli_names(workspace: tuple[Path, str], name: str, which: int) -> None:
    TRIED["cli_names"] += 1
    cwd, url = workspace
    before = _tree(cwd)
    code, out = _invoke(["--store", url, *COMMANDS[which](name)], cwd)
    assert code in CLI_CODES, (code, out)
    assert "Traceback" not in out, out
    assert _tree(cwd) == before, "the CLI wrote outside the checkpoint directory"


@given(url=st.one_of(st.sampled_from(URLS), st.text(max_size=60).map(lambda t: "postgresql://" + t),
                     st.text(max_size=60)))
@_examples(60, 2000)
def test_cli_store_urls(workspace: tuple[Path, str], url: str) -> None:
    TRIED["cli_store_urls"] += 1
    cwd, _ = workspace
    before = _tree(cwd)
    code, out = _invoke(["--store", url, "runs", "list"], cwd)
    assert code in CLI_CODES and "Traceback" not in out, (url, code, out)
    new = _tree(cwd) - before
    assert not new, f"{url!r} created {sorted(new)[:5]} (a read-only command must not create a store)"


@given(job=names, task=names, key=names)
@_examples(80, 1500)
def test_api_names(tmp_path_factory: pytest.TempPathFactory, job: str, task: str, key: str) -> None:
    TRIED["api_names"] += 1
    cwd = tmp_path_factory.mktemp("api")
    url = f"json:{cwd / 'cp'}"
    try:
        j = syncpoint.Job(job, store=url)
    except SyncpointError:
        return
    try:
        with j.run(key=key if key else None) as run:
            run.task(task).item_done("x")
    except SyncpointError:
        pass
    finally:
        j.close()
    outside = {p for p in _tree(cwd) if not p.startswith("cp")}
    assert not outside, outside


@given(start=st.one_of(st.sampled_from(DATES), st.text(max_size=30)),
       end=st.one_of(st.sampled_from(DATES), st.text(max_size=30)))
@_examples(100, 500)
def test_dates(start: str, end: str) -> None:
    TRIED["dates"] += 1
    try:
        from_flags(start=start, end=end)
    except SyncpointError as err:
        assert err.exit_code == 64 and "\n" not in str(err).strip()


@given(cursor=st.one_of(st.just(object()), st.just({1, 2}), st.just(b"bytes"), st.just(float("nan")),
                        st.just({"a": object()}), st.just({(1, 2): 3}), st.just(complex(1, 2))))
@_examples(20, 100)
def test_cursor_not_json(tmp_path_factory: pytest.TempPathFactory, cursor: object) -> None:
    TRIED["cursor_not_json"] += 1
    url = f"sqlite:{tmp_path_factory.mktemp('cur') / 'x.db'}"
    job = syncpoint.Job("cursors", store=url)
    try:
        with job.run() as run:
            task = run.task("t")
            with pytest.raises(SyncpointError):
                task.set_cursor(cursor)  # type: ignore[arg-type]
        assert run.exit_code in (0, 2)  # the task never started: partial
    finally:
        job.close()


WRONG = [None, 1, "x", [], {}, True, 1.5, {"nested": [1]}]


@given(field=st.sampled_from(["run_id", "job", "status", "started_at", "attempts", "config", "tasks", "format",
                              "run", "phases"]), value=st.sampled_from(WRONG))
@_examples(60, 400)
def test_hand_edited_checkpoint_json(tmp_path_factory: pytest.TempPathFactory, field: str, value: object) -> None:
    TRIED["hand_edited_checkpoint_json"] += 1
    root = tmp_path_factory.mktemp("edit")
    url = f"json:{root / 'cp'}"
    job = syncpoint.Job("edited", store=url)
    with job.run(max_items=1) as run:
        run.task("t").item_done("1")
        run.task("t").item_done("2")
    job.close()
    path = next((root / "cp" / "runs").glob("*.json"))
    doc = json.loads(path.read_text())
    target = doc["run"] if field not in doc else doc
    target[field] = value
    path.write_text(json.dumps(doc))
    edited = path.read_bytes()
    cwd = root
    code, out = _invoke(["--store", url, "runs", "list"], cwd)
    assert code in {0, 1} and "Traceback" not in out, out
    try:
        store = open_store(url)
        store.list_runs()
        again = syncpoint.Job("edited", store=store)
        with again.run(resume=True) as run2:
            run2.task("t").item_done("3")
        store.close()
    except SyncpointError:
        pass
    assert path.read_bytes() == edited or code == 0


def test_cli_subprocess_handful(workspace: tuple[Path, str]) -> None:
    cwd, url = workspace
    before = _tree(cwd)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    for args in (["runs", "show", "../../etc/passwd"], ["status", "x" * 10_000], ["state", "show", "a\nb"],
                 ["runs", "cleanup", "--older-than", "99999-01-01"], ["runs", "list", "--job", "\udcff"]):
        for store in (url, "postgresql://127.0.0.1:1/x"):
            proc = subprocess.run([sys.executable, "-m", "syncpoint", "--store", store, *args],
                                  capture_output=True, timeout=60, cwd=cwd, env=env, stdin=subprocess.DEVNULL)
            err = proc.stderr.decode(errors="replace")
            assert proc.returncode in CLI_CODES and "Traceback" not in err, (args, store, err)
            assert len(err.strip().splitlines()) <= 1, err
    assert _tree(cwd) == before


@pytest.mark.postgres
def test_postgres_names_are_values(pg_ready: str) -> None:
    schema = new_pg_schema()
    try:
        url = with_query(PG_URL, schema=schema)
        for n, name in enumerate(["a'; DROP TABLE runs; --", 'q"uote', "semi;colon", "x' OR '1'='1",
                                  "back\\slash"]):
            job = syncpoint.Job(f"pg-names-{n}", store=url)
            with job.run(key=name) as run:
                run.task(name).item_done(name)
                run.state.set(name, {"v": name})
            runs = job.runs()
            assert len(runs) == 1 and runs[0].key == name
            assert [t.name for t in job.store.get_tasks(runs[0].run_id)] == [name]
            assert job.bookmarks()[0].key == name
            job.close()
        other = with_query(PG_URL, schema="public")
        code, out = _invoke(["--store", other, "runs", "list", "--json"], Path.cwd())
        assert code in {0, 1, 64} and "Traceback" not in out
    finally:
        drop_pg_schema(schema)

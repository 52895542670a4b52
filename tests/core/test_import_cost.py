"""What a program that only syncs pays for ``import syncpoint``, and what works without the http extra.

A plain ``pip install syncpoint`` has no httpx or tenacity (they come with ``syncpoint[http]``) and no psycopg
(``syncpoint[postgres]``). So ``import syncpoint`` must not import them, nor rich's live display, which only
a run that shows progress on a terminal needs; a job on SQLite must run without httpx; and what does need it
(``syncpoint.http``, ``syncpoint demo``) must say which extra to install. Each check runs in a fresh
interpreter: this one has imported everything already. A meta path finder hides the http extra's modules
from the interpreter as if they were not installed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

#: Loaded only when used: the http extra, the postgres extra, rich's live display.
LAZY = ("httpx", "tenacity", "psycopg", "psycopg_pool", "rich.live", "rich.progress")

WITHOUT_HTTP = textwrap.dedent('''
    import sys

    class WithoutHttpExtra:
        """httpx and tenacity are not installed, as after a plain ``pip install syncpoint``."""

        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in ("httpx", "tenacity"):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, WithoutHttpExtra())
''')


def python(code: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd, stdin=subprocess.DEVNULL)


def lazy_modules_loaded_by(statement: str) -> list[str]:
    proc = python(f"{statement}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))")
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout)
    return [m for m in loaded if any(m == lazy or m.startswith(lazy + ".") for lazy in LAZY)]


def test_import_syncpoint_loads_no_http_postgres_or_live_display() -> None:
    assert lazy_modules_loaded_by("import syncpoint") == []


def test_the_syncpoint_command_loads_no_http_postgres_or_live_display() -> None:
    """``syncpoint status`` on a SQLite store should not pay for what only some subcommands use."""
    assert lazy_modules_loaded_by("import syncpoint.cli.main") == []


def test_a_job_on_sqlite_runs_and_resumes_without_the_http_extra(tmp_path: Path) -> None:
    job = WITHOUT_HTTP + textwrap.dedent('''
        import sys
        import syncpoint

        def body(run):
            task = run.task("numbers")
            for n in task.iterate(str(i) for i in range(10)):
                task.item_done(n)

        job = syncpoint.Job("numbers", store="sqlite:cp.db")
        first = job.execute(syncpoint.RunOptions(max_items=4, progress=True), body)
        second = job.execute(syncpoint.RunOptions(resume=True, progress=True), body)
        ok = job.store.get_tasks(job.runs(limit=1)[0].run_id)[0].ok
        print(first, second, ok, "httpx" in sys.modules)
    ''')
    proc = python(job, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["2", "0", "10", "False"], proc.stderr


def test_syncpoint_http_without_the_extra_names_it() -> None:
    proc = python(WITHOUT_HTTP + "import syncpoint.http")
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last == "ModuleNotFoundError: syncpoint.http needs httpx: pip install 'syncpoint[http]'", proc.stderr


def test_syncpoint_demo_without_the_extra_says_so_in_one_line_and_exits_64(tmp_path: Path) -> None:
    cli = WITHOUT_HTTP + "from syncpoint.cli.main import main\nsys.argv[0] = 'syncpoint'\nmain(sys.argv[1:])"
    for args in (["demo"], ["demo", "--resume", "--max-items", "5"]):
        proc = python(cli, *args, cwd=tmp_path)
        assert proc.returncode == 64, proc.stderr
        assert proc.stderr.strip().splitlines() == [
            "syncpoint: error: syncpoint demo needs httpx: pip install 'syncpoint[http]'"
        ], proc.stderr
    assert list(tmp_path.iterdir()) == []  # nothing started, nothing written
    listed = python(cli, "--help")
    assert listed.returncode == 0 and "pip install 'syncpoint[http]'" in listed.stdout, listed.stderr


def test_syncpoint_distributed_without_the_extra_names_it() -> None:
    hide = WITHOUT_HTTP.replace('("httpx", "tenacity")', '("procrastinate",)').replace("WithoutHttpExtra", "Bare")
    proc = python(hide + "import syncpoint.distributed")
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last == ("ModuleNotFoundError: syncpoint.distributed needs procrastinate: "
                    "pip install 'syncpoint[procrastinate]'"), proc.stderr

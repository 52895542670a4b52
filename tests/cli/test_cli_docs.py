"""The docs say what the code does, each fact in one place: the save policy's defaults, the JSON store's
``{job}.checkpoint.json`` (when it exists, what ``last_sync_date`` is), and the rule for job names."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
from cli_helpers import ROOT, clean_env

import syncpoint
from syncpoint.errors import InvalidName
from syncpoint.names import check_job_name

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
JOB = ROOT / "tests" / "jobs" / "counting_job.py"


def test_the_save_policy_defaults_are_stated_once_and_match_the_code() -> None:
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    table = dict(re.findall(r"^\| `(every_\w+)` \| ([\d.,]+) \|", text, re.M))
    defaults = syncpoint.SavePolicy()
    assert set(table) == {f.name for f in fields(defaults)}
    for name, shown in table.items():
        assert float(shown.replace(",", "")) == getattr(defaults, name), name
    restated = re.compile(
        r"every page, [\d,]+ items|[\d,]+ items,? or [\d.]+ seconds|`every_items`[^\n]{0,20}\(default [\d,]+"
    )
    for doc in DOCS:
        found = restated.findall(doc.read_text())
        assert not found, f"{doc.name} restates the save policy's defaults ({found}); link to ARCHITECTURE.md"


def job(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(JOB), "--store", f"json:{tmp_path / 'ck'}", "--dest", str(tmp_path / "out.txt"),
         "--total", "100", "--no-progress", *args],
        capture_output=True, text=True, env=clean_env(), cwd=ROOT, timeout=120, stdin=subprocess.DEVNULL,
    )


def test_the_json_checkpoint_view_is_as_documented(tmp_path: Path) -> None:
    """ARCHITECTURE.md#checkpoint-json: there while a run is resumable, gone once it completed;
    ``last_sync_date`` only for date watermarks; every run in ``runs/{run}.json``."""
    doc = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    assert 'id="checkpoint-json"' in doc and "only while the job has a resumable run" in doc
    assert "(docs/ARCHITECTURE.md#checkpoint-json)" in (ROOT / "README.md").read_text()
    view = tmp_path / "ck" / "counting.checkpoint.json"

    assert job(tmp_path, "--mode", "watermark", "--max-items", "30").returncode == 2
    shown = json.loads(view.read_text())
    assert shown["status"] == "partial" and shown["last_sync_date"].startswith("2024-03-15T")
    assert job(tmp_path, "--mode", "watermark", "--resume").returncode == 0
    assert not view.exists()  # the run completed: the job has no resumable run
    [run_file] = (tmp_path / "ck" / "runs").glob("*.json")
    [task] = json.loads(run_file.read_text())["tasks"]
    assert task["name"] == "watermark" and task["cursor"]["type"] == "watermark"

    assert job(tmp_path, "--mode", "items", "--job", "ledger", "--max-items", "30").returncode == 2
    items_view = json.loads((tmp_path / "ck" / "ledger.checkpoint.json").read_text())
    assert items_view["last_sync_date"] is None  # not a watermark job


@pytest.mark.parametrize("name", [
    "Überweisungen-日本",
    "U\u0308berweisungen",  # decomposed Ü: looks like the composed one, is another string
    "\u0430lpha",  # a Cyrillic a
    "größe",
])
def test_job_names_are_ascii_and_say_so(name: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidName) as err:
        check_job_name(name)
    assert "ASCII" in str(err.value) and "task names" in str(err.value)
    proc = job(tmp_path, "--job", name)
    assert proc.returncode == 64 and proc.stderr.count("\n") == 1, proc.stderr
    assert "job names are ASCII" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "ck").exists() or not list((tmp_path / "ck").rglob("*.lock"))


def test_unicode_is_welcome_in_task_names_keys_and_config(tmp_path: Path) -> None:
    job = syncpoint.Job("ueberweisungen", {"Konto": "Überweisungen-日本"}, store=f"json:{tmp_path / 'ck'}")
    with job.run(key="März-日本") as run:
        run.task("Überweisungen-日本").set_cursor({"seite": "ä"}, records=1)
        run.state.set("zuletzt-日本", "ü")
    [task] = job.store.get_tasks(run.run_id)
    assert task.name == "Überweisungen-日本" and job.store.get_run(run.run_id).key == "März-日本"  # type: ignore[union-attr]
    job.close()
    readme = (ROOT / "README.md").read_text()
    assert "a job name is ASCII" in readme and 'run.task("Überweisungen-日本")' in readme

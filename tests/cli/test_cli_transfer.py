"""``syncpoint export`` / ``syncpoint import``: lossless, streamed, batched, between any two backends."""

from __future__ import annotations

import dataclasses
import io
import json
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import Stores, clean_env, need, opened, populate, sp
from click.testing import Result

import syncpoint
from syncpoint import codec
from syncpoint.cli.dump import FORMAT, Importer, export_dump
from syncpoint.model import LedgerEntry, LedgerKind, RunRecord, RunStatus, TaskRecord, utcnow
from syncpoint.stores.base import ChangeSet

TO_DICT: dict[str, Callable[[Any], dict[str, Any]]] = {
    "runs": codec.run_to_dict, "tasks": codec.task_to_dict, "phases": codec.phase_to_dict,
    "ledger": codec.ledger_to_dict, "state": codec.state_to_dict, "samples": codec.sample_to_dict,
}


def _utc(record: Any) -> Any:
    """The record with every timestamp in UTC, so that equal instants give equal ``*_to_dict`` text."""
    if not dataclasses.is_dataclass(record) or isinstance(record, type):
        return record  # ledger entries are named tuples without timestamps
    changes = {f.name: getattr(record, f.name).astimezone(timezone.utc) for f in dataclasses.fields(record)
               if isinstance(getattr(record, f.name), datetime)}
    return dataclasses.replace(record, **changes)


def snapshot(url: str) -> dict[str, list[dict[str, Any]]]:
    """Every field of every record in the store, as ``codec.*_to_dict`` shapes."""
    found: dict[str, list[Any]] = {kind: [] for kind in TO_DICT}
    with opened(url) as store:
        for job in store.list_jobs():
            for run in store.list_runs(job):
                found["runs"].append(run)
                tasks = store.get_tasks(run.run_id)
                found["tasks"] += tasks
                found["phases"] += store.get_phases(run.run_id)
                found["samples"] += store.get_samples(run.run_id)
                for task in tasks:
                    for kind in LedgerKind:
                        found["ledger"] += list(store.iter_ledger(run.run_id, task.name, kind))
            found["state"] += store.get_state(job)
    return {kind: [TO_DICT[kind](_utc(r)) for r in records] for kind, records in found.items()}


def export_to(url: str, path: Path, *extra: str) -> None:
    with path.open("w") as out:
        proc = sp_to(out, "--store", url, "export", *extra)
    assert proc == 0


def sp_to(out: Any, *args: str) -> int:
    import subprocess
    import sys

    from cli_helpers import ROOT

    done = subprocess.run([sys.executable, "-m", "syncpoint", *args], stdout=out, stderr=subprocess.PIPE,
                          text=True, env=clean_env(), cwd=ROOT, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    return done.returncode


def test_round_trip_sqlite_json_postgres(stores: Stores, tmp_path: Path) -> None:
    """sqlite → jsondir → postgres through the real command, then every field of every record compared."""
    need("json")
    need("postgres")
    sqlite, jsondir, postgres = stores.url("sqlite"), stores.url("json"), stores.url("postgres")
    populate(sqlite)
    original = snapshot(sqlite)
    assert all(original[kind] for kind in TO_DICT)
    assert {e["kind"] for e in original["ledger"]} == {0, 1}

    first = tmp_path / "first.jsonl"
    export_to(sqlite, first)
    proc = sp("import", str(first), "--store", jsondir)
    assert proc.returncode == 0, proc.stderr
    assert snapshot(jsondir) == original

    second = tmp_path / "second.jsonl"
    export_to(jsondir, second)
    proc = sp("--store", postgres, "import", str(second), "--json")
    assert proc.returncode == 0, proc.stderr
    counts = json.loads(proc.stdout)["imported"]
    assert counts == {kind: len(original[kind]) for kind in TO_DICT}
    assert snapshot(postgres) == original


@pytest.mark.parametrize("target_kind", ["sqlite", "json", "postgres"])
def test_round_trip_from_sqlite(stores: Stores, tmp_path: Path, target_kind: str,
                                invoke: Callable[..., Result]) -> None:
    source, target = stores.url("sqlite"), stores.url(target_kind)
    populate(source)
    dump = tmp_path / "dump.jsonl"
    exported = invoke("--store", source, "export", "-o", str(dump))
    assert exported.exit_code == 0, exported.stderr
    assert "exported 4 runs" in exported.stderr
    imported = invoke("import", str(dump), "--store", target, "--batch", "7")
    assert imported.exit_code == 0, imported.stderr
    assert snapshot(target) == snapshot(source)


def test_export_one_job_and_dump_shape(stores: Stores, invoke: Callable[..., Result]) -> None:
    url = stores.url("sqlite")
    ids = populate(url)
    result = invoke("--store", url, "export", "--job", "beta")
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines[0]["format"] == FORMAT and lines[0]["version"] == 1 and lines[0]["jobs"] == ["beta"]
    assert lines[-1]["type"] == "end"
    runs = [rec["data"]["run_id"] for rec in lines if rec["type"] == "run"]
    assert runs == [ids["beta-failed"], ids["beta-interrupted"]]  # oldest first
    assert lines[-1]["counts"]["runs"] == 2
    assert {rec["type"] for rec in lines[1:-1]} <= {"run", "task", "phase", "sample", "ledger", "state"}


def test_import_conflicts(stores: Stores, tmp_path: Path, invoke: Callable[..., Result]) -> None:
    source, target = stores.url("sqlite"), stores.url("sqlite")
    ids = populate(source)
    dump = tmp_path / "dump.jsonl"
    assert invoke("--store", source, "export", "-o", str(dump)).exit_code == 0
    assert invoke("import", str(dump), "--store", target).exit_code == 0
    again = invoke("import", str(dump), "--store", target)
    assert again.exit_code == 64 and "already in" in again.stderr and "--replace" in again.stderr
    assert again.stderr.count("\n") == 1
    skipped = invoke("import", str(dump), "--store", target, "--skip-existing", "--json")
    assert skipped.exit_code == 0
    assert sorted(json.loads(skipped.stdout)["skipped_runs"]) == sorted(ids.values())
    # --replace overwrites: a run changed in the target is put back as the dump has it
    with opened(target) as store:
        run = store.get_run(ids["alpha-completed"])
        assert run is not None
        store.apply(ChangeSet(runs=[dataclasses.replace(run, status=RunStatus.FAILED)]))
        store.apply(ChangeSet(tasks=[TaskRecord(run.run_id, "extra", 99, updated_at=utcnow())]))
    replaced = invoke("import", str(dump), "--store", target, "--replace")
    assert replaced.exit_code == 0, replaced.stderr
    assert snapshot(target) == snapshot(source)


def test_bad_dumps_are_usage_errors(stores: Stores, tmp_path: Path, invoke: Callable[..., Result]) -> None:
    source, target = stores.url("sqlite"), stores.url("sqlite")
    populate(source)
    dump = tmp_path / "dump.jsonl"
    assert invoke("--store", source, "export", "-o", str(dump)).exit_code == 0
    lines = dump.read_text().splitlines()
    truncated = tmp_path / "truncated.jsonl"
    truncated.write_text("\n".join(lines[:-5]) + "\n")
    result = invoke("import", str(truncated), "--store", target)
    assert result.exit_code == 64 and "truncated" in result.stderr
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text("hello\n")
    result = invoke("import", str(garbage), "--store", target)
    assert result.exit_code == 64 and "garbage.jsonl:1" in result.stderr
    not_dump = tmp_path / "other.jsonl"
    not_dump.write_text('{"a": 1}\n')
    result = invoke("import", str(not_dump), "--store", target)
    assert result.exit_code == 64 and "not a syncpoint dump" in result.stderr
    missing = invoke("import", str(tmp_path / "nope.jsonl"), "--store", target)
    assert missing.exit_code == 64 and missing.stderr.count("\n") == 1
    broken = tmp_path / "broken.jsonl"
    broken.write_text("\n".join([lines[0], '{"type": "run", "data": {"run_id": "x"}}', lines[-1]]) + "\n")
    result = invoke("import", str(broken), "--store", target)
    assert result.exit_code == 64 and "broken.jsonl:2: bad run record" in result.stderr


def test_import_from_stdin(stores: Stores, tmp_path: Path) -> None:
    source, target = stores.url("sqlite"), stores.url("sqlite")
    populate(source)
    dump = tmp_path / "dump.jsonl"
    export_to(source, dump)
    proc = sp("import", "-", "--store", target, input=dump.read_text())
    assert proc.returncode == 0, proc.stderr
    assert snapshot(target) == snapshot(source)


# -- streaming: ledgers of millions of IDs are never held whole in memory -------------------------------------
class HugeLedgerStore:
    """Just enough of a store for export: one run, one task, ``n`` ledger entries generated on the fly."""

    location = "fake"

    def __init__(self, n: int) -> None:
        now = utcnow()
        self.n = n
        self.run = RunRecord("20240101-000000-aaaaaa", "huge", RunStatus.COMPLETED, {}, "d", now, now)
        self.task = TaskRecord(self.run.run_id, "t", 0, ok=n)

    def list_jobs(self) -> list[str]:
        return ["huge"]

    def list_runs(self, job: str | None = None, **_: Any) -> list[RunRecord]:
        return [self.run]

    def get_tasks(self, run_id: str) -> list[TaskRecord]:
        return [self.task]

    def get_samples(self, run_id: str) -> list[Any]:
        return []

    def get_phases(self, run_id: str) -> list[Any]:
        return []

    def get_state(self, job: str) -> list[Any]:
        return []

    def lock_holder(self, job: str) -> None:
        return None

    def iter_ledger(self, run_id: str, task: str, kind: LedgerKind = LedgerKind.ITEMS) -> Iterator[LedgerEntry]:
        if kind is LedgerKind.ITEMS:
            for i in range(self.n):
                yield LedgerEntry(run_id, task, f"item-{i:09d}", True)


class CountingSink(io.TextIOBase):
    def __init__(self) -> None:
        self.lines = 0
        self.kept: list[str] = []

    def write(self, text: str) -> int:
        self.lines += text.count("\n")
        if len(self.kept) < 3:
            self.kept.append(text)
        return len(text)


class ApplyCounter:
    """A store that only counts what ``apply`` receives."""

    location = "counter"

    def __init__(self) -> None:
        self.calls: list[int] = []

    def get_run(self, run_id: str) -> None:
        return None

    def lock(self, job: str, run_id: str | None = None) -> Any:
        return syncpoint.stores.base.JobLock.__new__(_NoLock)

    def apply(self, changes: ChangeSet) -> None:
        self.calls.append(len(changes.runs) + len(changes.tasks) + len(changes.ledger) + len(changes.state))


class _NoLock(syncpoint.stores.base.JobLock):
    def release(self) -> None:
        pass


def _dump_lines(n: int) -> Iterator[str]:
    sink_store = HugeLedgerStore(n)
    header = {"format": FORMAT, "version": 1, "jobs": ["huge"]}
    yield json.dumps(header)
    yield json.dumps({"type": "run", "data": codec.run_to_dict(sink_store.run)})
    yield json.dumps({"type": "task", "data": codec.task_to_dict(sink_store.task)})
    for entry in sink_store.iter_ledger(sink_store.run.run_id, "t"):
        yield json.dumps({"type": "ledger", "data": codec.ledger_to_dict(entry)})
    yield json.dumps({"type": "end", "counts": {"runs": 1, "tasks": 1, "phases": 0, "ledger": n, "state": 0}})


def _peak(work: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# Holding N entries would cost well over 150 bytes each (1.5 MB); a stream's peak does not grow with N
# (measured: ~8 kB for export and ~250 kB for import with batches of 1,000, at 5,000 and at 20,000 entries).
N = 10_000


def test_export_streams_huge_ledgers() -> None:
    sink = CountingSink()
    peak = _peak(lambda: export_dump(HugeLedgerStore(N), sink))  # type: ignore[arg-type]
    assert sink.lines == N + 4  # header, run, task, N entries, end
    assert peak < 200_000, f"export held {peak} bytes for {N} entries: not streaming"


def test_import_applies_in_batches_and_streams() -> None:
    store = ApplyCounter()
    peak = _peak(lambda: Importer(store, batch=1000).run(_dump_lines(N)))  # type: ignore[arg-type]
    assert sum(store.calls) == N + 2
    assert max(store.calls) <= 1000 and len(store.calls) == -(-(N + 2) // 1000)
    assert peak < 1_000_000, f"import held {peak} bytes for {N} entries: not streaming"


def test_cli_reads_and_writes_through_all_stores(store_url: str, tmp_path: Path) -> None:
    """One real subprocess per backend: export from it and import into it."""
    source = f"sqlite:{tmp_path / 'src.db'}"
    populate(source)
    dump = tmp_path / "d.jsonl"
    export_to(source, dump)
    proc = sp("--store", store_url, "import", str(dump))
    assert proc.returncode == 0, proc.stderr
    again = tmp_path / "again.jsonl"
    export_to(store_url, again)
    strip: Sequence[str] = ("created_at", "source")
    head = [json.loads(line) for line in dump.read_text().splitlines()]
    back = [json.loads(line) for line in again.read_text().splitlines()]
    for record in (head[0], back[0]):
        for key in strip:
            record.pop(key)
    assert len(head) == len(back)
    assert [r.get("type") for r in head] == [r.get("type") for r in back]

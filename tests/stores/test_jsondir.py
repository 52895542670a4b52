"""What only the JSON-directory store does: its files, its checkpoint view, its intent log, its ledger
journals and their compaction, and how it reports damaged or unwritable files.

The behaviour every backend shares is in ``test_conformance.py``.
"""

from __future__ import annotations

import errno
import json
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from helpers import read_only_directory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncpoint.errors import CorruptState, SchemaTooNew, StoreError, StoreUnavailable
from syncpoint.model import (
    LedgerCounts,
    LedgerEntry,
    LedgerKind,
    PhaseRecord,
    RunRecord,
    RunStatus,
    StateEntry,
    TaskRecord,
    TaskStatus,
)
from syncpoint.stores import journal, open_store
from syncpoint.stores.base import ChangeSet, ItemOutcome, LedgerClear, StateDelete
from syncpoint.stores.jsondir import JsonDirStore, file_stem, task_dir
from syncpoint.stores.sqlite import SQLiteStore

T0 = datetime(2024, 12, 1, 14, 30, 22, 123456, tzinfo=timezone.utc)
RUN = "20241201-143022-3fa2c1"
TASK = "org/repo:pulls ✓"


def run_record(run_id: str = RUN, job: str = "drucksachen", status: RunStatus = RunStatus.RUNNING,
               started: datetime = T0, key: str | None = None) -> RunRecord:
    return RunRecord(run_id, job, status, {"since": "2024-01-01", "n": [1, 2]}, "digest", started,
                     started + timedelta(seconds=5), key=key, params={"p": True})


def watermark(value: str, value_type: str = "datetime") -> dict[str, Any]:
    return {"type": "watermark", "value": value, "value_type": value_type, "ids": ["a", "b"], "order": "asc"}


def entry(item: str, ok: bool = True, error: str | None = None, retryable: bool = False, *,
          task: str = TASK, kind: LedgerKind = LedgerKind.ITEMS) -> LedgerEntry:
    return LedgerEntry(RUN, task, item, ok, error, retryable, kind)


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    return tmp_path / "cp"


@pytest.fixture
def store(directory: Path) -> Iterator[JsonDirStore]:
    store = JsonDirStore(directory, journal_limit=10)
    yield store
    store.close()


def started(store: JsonDirStore, *tasks: str) -> None:
    """A running run with the given tasks (TASK if none)."""
    names = tasks or (TASK,)
    store.apply(ChangeSet(runs=[run_record()], tasks=[TaskRecord(RUN, n, i) for i, n in enumerate(names)]))


def unit_dir(directory: Path, task: str = TASK, kind: LedgerKind = LedgerKind.ITEMS) -> Path:
    return directory / "ledger" / file_stem(RUN) / task_dir(task, kind)


def meta_of(directory: Path, task: str = TASK) -> dict[str, Any]:
    return dict(json.loads((unit_dir(directory, task) / "meta.json").read_text()))


def ledger_state(store: JsonDirStore, ids: list[str], task: str = TASK) -> tuple[Any, ...]:
    return (store.ledger_counts(RUN, task), store.ledger_lookup(RUN, task, ids),
            list(store.iter_ledger(RUN, task)), list(store.ledger_failed(RUN, task)))


# -- round trips and files -----------------------------------------------------------------------------
def test_every_change_set_field_survives_a_reopen(directory: Path) -> None:
    store = JsonDirStore(directory)
    task = TaskRecord(RUN, TASK, 0, TaskStatus.FAILED, watermark("2024-11-30T00:00:00+00:00"), 3, 250, 240, 10,
                      1000, "HTTP 503", True, T0, T0 + timedelta(minutes=1), None)
    other = TaskRecord(RUN, "ünïcode/task:2", 1, TaskStatus.COMPLETED, {"page": 7}, completed_at=T0)
    phase = PhaseRecord(RUN, "discovery", 0, T0)
    store.apply(ChangeSet(
        runs=[run_record(key="2024-12-01")], tasks=[other, task], phases=[phase, PhaseRecord(RUN, "pulls", 1)],
        ledger=[entry("1"), entry("2", False, "timeout", True), entry("3", False, "gone"),
                entry("7", kind=LedgerKind.BOUNDARY)],
        state=[StateEntry("drucksachen", "last_id", {"id": 42, "at": "x"}, T0), StateEntry("other", "k", None, T0)],
    ))
    store.close()
    again = JsonDirStore(directory)
    assert again.get_run(RUN) == run_record(key="2024-12-01")
    assert again.get_tasks(RUN) == [task, other]
    assert again.get_phases(RUN) == [phase, PhaseRecord(RUN, "pulls", 1)]
    assert again.ledger_lookup(RUN, TASK, ["1", "2", "3", "4"]) == {
        "1": ItemOutcome.OK, "2": ItemOutcome.FAILED_RETRYABLE, "3": ItemOutcome.FAILED_PERMANENT}
    assert again.ledger_counts(RUN, TASK) == LedgerCounts(1, 2)
    assert [e.item_id for e in again.iter_ledger(RUN, TASK, LedgerKind.BOUNDARY)] == ["7"]
    assert [(f.item_id, f.error, f.retryable) for f in again.ledger_failed(RUN, TASK)] == [
        ("2", "timeout", True), ("3", "gone", False)]
    assert again.get_state("drucksachen") == [StateEntry("drucksachen", "last_id", {"id": 42, "at": "x"}, T0)]
    assert again.list_jobs() == ["drucksachen", "other"]
    assert again.location == str(directory)

    again.apply(ChangeSet(
        ledger_clears=[LedgerClear(RUN, TASK, LedgerKind.ITEMS)],
        state_deletes=[StateDelete("other"), StateDelete("drucksachen", "last_id")],
    ))
    again.close()
    third = JsonDirStore(directory)
    assert third.ledger_counts(RUN, TASK) == LedgerCounts(0, 0)
    assert list(third.iter_ledger(RUN, TASK)) == []
    assert [e.item_id for e in third.iter_ledger(RUN, TASK, LedgerKind.BOUNDARY)] == ["7"]
    assert third.list_jobs() == ["drucksachen"]
    assert not (directory / "state" / "other.json").exists()
    third.apply(ChangeSet(run_deletes=[RUN]))
    assert third.get_run(RUN) is None and third.get_tasks(RUN) == []
    assert not (directory / "runs" / f"{RUN}.json").exists()
    assert not (directory / "ledger" / RUN).exists()
    assert third.list_jobs() == []


def test_files_are_pretty_sorted_json_named_for_people(store: JsonDirStore, directory: Path) -> None:
    started(store)
    store.apply(ChangeSet(state=[StateEntry("drucksachen", "k", 1, T0)], ledger=[entry("x")]))
    path = directory / "runs" / f"{RUN}.json"
    text = path.read_text()
    doc = json.loads(text)
    assert text == json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert doc["run"]["job"] == "drucksachen" and doc["tasks"][0]["name"] == TASK
    assert json.loads((directory / "state" / "drucksachen.json").read_text())["state"]["k"]["value"] == 1
    meta = meta_of(directory)
    assert meta["task"] == TASK and meta["ok"] == 1 and meta["kind"] == "items"
    line = (unit_dir(directory) / meta["journal"]).read_text()
    assert json.loads(line) == {"error": None, "id": "x", "ok": True, "retryable": False}
    assert not (directory / "pending.json").exists()


def test_names_that_are_not_file_names_are_hashed(tmp_path: Path) -> None:
    store = JsonDirStore(tmp_path / "cp")
    odd_run, odd_job = "../../etc/passwd", "a job/with:odd ✓ name"
    store.apply(ChangeSet(
        runs=[RunRecord(odd_run, odd_job, RunStatus.RUNNING, {}, "d", T0, T0)],
        tasks=[TaskRecord(odd_run, "t", 0)], ledger=[LedgerEntry(odd_run, "t", "i", True)],
        state=[StateEntry(odd_job, "k", 1, T0)],
    ))
    files = sorted(str(p.relative_to(tmp_path / "cp")) for p in (tmp_path / "cp").rglob("*") if p.is_file())
    assert all(".." not in f and "passwd" not in f and "✓" not in f for f in files), files
    reopened = JsonDirStore(tmp_path / "cp")
    assert reopened.get_run(odd_run) is not None and reopened.list_jobs() == [odd_job]
    assert reopened.ledger_lookup(odd_run, "t", ["i"]) == {"i": ItemOutcome.OK}
    assert [(tmp_path / "cp" / f"{file_stem(odd_job)}.checkpoint.json").exists()] == [True]


def test_open_store_url_and_a_file_in_the_way(tmp_path: Path) -> None:
    store = open_store(f"json:{tmp_path / 'cp'}")
    assert isinstance(store, JsonDirStore) and store.location == str(tmp_path / "cp")
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreUnavailable, match="file"):
        JsonDirStore(tmp_path / "file")


# -- the checkpoint view -------------------------------------------------------------------------------
def test_checkpoint_view_for_jq(store: JsonDirStore, directory: Path) -> None:
    store.apply(ChangeSet(runs=[run_record()], tasks=[
        TaskRecord(RUN, "pages", 0, cursor={"page": 3}),
        TaskRecord(RUN, "later", 2, cursor=watermark("2024-11-01", "date")),
        TaskRecord(RUN, "first-watermark", 1, TaskStatus.IN_PROGRESS, watermark("2024-11-30T12:00:00+00:00"),
                   pages=4, records=400, ok=398, failed=2),
    ]))
    view_path = directory / "drucksachen.checkpoint.json"
    with open(view_path) as f:
        view = json.load(f)
    assert view["last_sync_date"] == "2024-11-30T12:00:00+00:00"  # jq '.last_sync_date'
    assert view["job"] == "drucksachen" and view["run_id"] == RUN and view["status"] == "running"
    assert view["updated_at"] == (T0 + timedelta(seconds=5)).isoformat()
    task = view["tasks"]["first-watermark"]
    assert (task["status"], task["pages"], task["records"], task["ok"], task["failed"]) == (
        "in_progress", 4, 400, 398, 2)
    assert task["cursor"]["value"] == "2024-11-30T12:00:00+00:00"

    store.apply(ChangeSet(tasks=[TaskRecord(RUN, "first-watermark", 1, cursor={"type": "watermark",
                                                                            "value": 17, "value_type": "int"})]))
    assert json.loads(view_path.read_text())["last_sync_date"] == "2024-11-01"  # the next date watermark

    store.apply(ChangeSet(runs=[run_record(status=RunStatus.COMPLETED)]))
    assert not view_path.exists()


def test_checkpoint_view_shows_the_newest_resumable_run(store: JsonDirStore, directory: Path) -> None:
    old, new = "20241130-000000-000001", "20241201-000000-000002"
    store.apply(ChangeSet(
        runs=[run_record(old, status=RunStatus.INTERRUPTED, started=T0 - timedelta(days=1)),
              run_record(new, status=RunStatus.FAILED)],
        tasks=[TaskRecord(old, "t", 0, cursor=watermark("2024-11-29", "date")),
               TaskRecord(new, "t", 0, cursor=watermark("2024-11-30", "date"))],
    ))
    view_path = directory / "drucksachen.checkpoint.json"
    assert json.loads(view_path.read_text())["run_id"] == new
    store.apply(ChangeSet(tasks=[TaskRecord(old, "t", 0, cursor=watermark("2024-11-28", "date"))]))
    assert json.loads(view_path.read_text())["run_id"] == new  # touching the older run does not steal it
    store.close()
    other = JsonDirStore(directory)  # a new process learns the runs from disk
    other.apply(ChangeSet(runs=[run_record(new, status=RunStatus.COMPLETED)]))
    view = json.loads(view_path.read_text())
    assert (view["run_id"], view["last_sync_date"]) == (old, "2024-11-28")
    other.apply(ChangeSet(run_deletes=[old]))
    assert not view_path.exists()


# -- atomicity -----------------------------------------------------------------------------------------
class Crash(BaseException):
    """Stands for the process dying at this point."""


def crash_on_replace(monkeypatch: pytest.MonkeyPatch, after: int) -> list[str]:
    """Let ``after`` os.replace calls through (the first writes pending.json), then 'crash'."""
    real = os.replace
    done: list[str] = []

    def replace(src: Any, dst: Any) -> None:
        if len(done) >= after:
            raise Crash(str(dst))
        done.append(str(dst))
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    return done


def big_change(store: JsonDirStore) -> ChangeSet:
    return ChangeSet(
        runs=[run_record(status=RunStatus.INTERRUPTED)],
        tasks=[TaskRecord(RUN, TASK, 0, TaskStatus.IN_PROGRESS, {"page": 9}, pages=9)],
        phases=[PhaseRecord(RUN, "discovery", 0, T0)],
        ledger=[entry(str(i), i % 4 != 0, None if i % 4 else "boom") for i in range(25)],
        state=[StateEntry("drucksachen", "bookmark", 99, T0)],
    )


def assert_big_change_applied(store: JsonDirStore) -> None:
    assert store.get_run(RUN) == run_record(status=RunStatus.INTERRUPTED)
    assert store.get_tasks(RUN)[0].cursor == {"page": 9}
    assert store.get_phases(RUN) == [PhaseRecord(RUN, "discovery", 0, T0)]
    assert store.ledger_counts(RUN, TASK) == LedgerCounts(18, 7)
    assert len(store.ledger_lookup(RUN, TASK, [str(i) for i in range(30)])) == 25
    assert [s.value for s in store.get_state("drucksachen")] == [99]


@pytest.mark.parametrize("after", [1, 2, 4])
def test_a_crash_after_the_intent_is_rolled_forward(directory: Path, monkeypatch: pytest.MonkeyPatch,
                                                    after: int) -> None:
    store = JsonDirStore(directory, journal_limit=10)
    started(store)
    store.apply(ChangeSet(ledger=[entry("0")]))
    before = (directory / "runs" / f"{RUN}.json").read_bytes()
    done = crash_on_replace(monkeypatch, after)
    with pytest.raises(Crash):
        store.apply(big_change(store))
    monkeypatch.undo()
    assert done[0].endswith("pending.json")
    assert (directory / "pending.json").exists()
    if after == 1:  # nothing but the intent reached the disk
        assert (directory / "runs" / f"{RUN}.json").read_bytes() == before
        assert meta_of(directory)["ok"] == 1
    reopened = JsonDirStore(directory, journal_limit=10)  # a new process finds the intent and completes it
    assert not (directory / "pending.json").exists()
    assert_big_change_applied(reopened)
    assert not [p for p in directory.rglob("*.tmp")]


def test_the_crashed_writer_itself_rolls_forward_before_its_next_read(directory: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    store = JsonDirStore(directory, journal_limit=10)
    started(store)
    crash_on_replace(monkeypatch, 3)
    with pytest.raises(Crash):
        store.apply(big_change(store))
    monkeypatch.undo()
    assert_big_change_applied(store)


def test_a_failure_before_anything_is_visible_changes_nothing(store: JsonDirStore, directory: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    started(store)
    store.apply(ChangeSet(ledger=[entry("0")]))
    snapshot = {p: p.read_bytes() for p in directory.rglob("*") if p.is_file() and p.name != "store.lock"}
    real = journal.append_at

    def disk_full(path: Path, offset: int, data: bytes) -> bool:
        real(path, offset, data[: len(data) // 2])  # a torn append, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(journal, "append_at", disk_full)
    with pytest.raises(StoreError, match=r"cannot write .*journal-.*No space left on device") as info:
        store.apply(big_change(store))
    assert "\n" not in str(info.value)
    monkeypatch.undo()
    assert not (directory / "pending.json").exists()
    for path, data in snapshot.items():
        if "journal-" not in path.name:  # the journal has an uncommitted tail, which is never read
            assert path.read_bytes() == data, path
    reopened = JsonDirStore(directory, journal_limit=10)
    assert reopened.get_run(RUN) == run_record() and reopened.ledger_counts(RUN, TASK) == LedgerCounts(1, 0)
    assert reopened.get_phases(RUN) == [] and reopened.get_state("drucksachen") == []
    reopened.apply(big_change(reopened))
    assert_big_change_applied(JsonDirStore(directory, journal_limit=10))


def test_a_torn_journal_tail_is_ignored_and_cut_off(store: JsonDirStore, directory: Path) -> None:
    started(store)
    store.apply(ChangeSet(ledger=[entry("a"), entry("b", False, "x")]))
    path = unit_dir(directory) / meta_of(directory)["journal"]
    committed = path.read_bytes()
    with open(path, "ab") as f:
        f.write(b'{"error":null,"id":"c","ok":tr')  # a crash in the middle of an append
    reopened = JsonDirStore(directory, journal_limit=10)
    assert ledger_state(reopened, ["a", "b", "c"])[:2] == (LedgerCounts(1, 1), {
        "a": ItemOutcome.OK, "b": ItemOutcome.FAILED_PERMANENT})
    reopened.apply(ChangeSet(ledger=[entry("d")]))
    assert path.read_bytes() == committed + b'{"error":null,"id":"d","ok":true,"retryable":false}\n'
    assert [e.item_id for e in reopened.iter_ledger(RUN, TASK)] == ["a", "b", "d"]


KILL_WRITER = textwrap.dedent("""
    import sys
    from datetime import datetime, timezone
    from syncpoint.model import LedgerEntry, RunRecord, RunStatus, TaskRecord
    from syncpoint.stores.base import ChangeSet
    from syncpoint.stores.jsondir import JsonDirStore
    t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
    store = JsonDirStore(sys.argv[1], journal_limit=300)
    run = "20240101-000000-000000"
    store.apply(ChangeSet(runs=[RunRecord(run, "job", RunStatus.RUNNING, {}, "d", t0, t0)],
                          tasks=[TaskRecord(run, "t", 0)]))
    n = 0
    while True:
        batch = [LedgerEntry(run, "t", f"{(n + i) * 7919 % 100003:06d}", True) for i in range(37)]
        n += len(batch)
        store.apply(ChangeSet(tasks=[TaskRecord(run, "t", 0, records=n, cursor={"n": n})], ledger=batch))
        if n == 37 * 20:
            print("ready", flush=True)
""")


def test_kill_9_at_any_moment_leaves_the_run_and_its_ledger_in_step(tmp_path: Path) -> None:
    directory = tmp_path / "cp"
    for _ in range(3):
        child = subprocess.Popen([sys.executable, "-c", KILL_WRITER, str(directory)], stdout=subprocess.PIPE,
                                 text=True)
        assert child.stdout is not None
        child.stdout.readline()
        child.send_signal(signal.SIGKILL)
        child.wait()
        store = JsonDirStore(directory, journal_limit=300)
        (task,) = store.get_tasks("20240101-000000-000000")
        counts = store.ledger_counts("20240101-000000-000000", "t")
        listed = sum(1 for _ in store.iter_ledger("20240101-000000-000000", "t"))
        assert task.records == counts.ok == listed > 0
        store.apply(ChangeSet(run_deletes=["20240101-000000-000000"]))
        store.close()


# -- ledger compaction ---------------------------------------------------------------------------------
def test_compaction_keeps_lookups_and_counts(directory: Path) -> None:
    store = JsonDirStore(directory, journal_limit=10)
    started(store)
    ids = [f"id-{i:03d}" for i in range(60)]
    model: dict[str, ItemOutcome] = {}
    for round_ in range(3):  # fail some, then later succeed or fail them differently
        for start in range(0, 60, 7):
            batch = [entry(i, ok=(round_ + n) % 3 != 0, error="e", retryable=n % 2 == 0)
                     for n, i in enumerate(ids[start:start + 7])]
            store.apply(ChangeSet(ledger=batch))
            model.update({e.item_id: ItemOutcome.of(e) for e in batch})
    meta = meta_of(directory)
    assert len(meta["segments"]) >= 1 and meta["journal_entries"] < 10 + 7
    expected_counts = LedgerCounts(sum(v is ItemOutcome.OK for v in model.values()),
                                   sum(v is not ItemOutcome.OK for v in model.values()))
    before = ledger_state(store, [*ids, "absent"])
    assert before[0] == expected_counts and before[1] == model
    assert [e.item_id for e in before[2]] == sorted(ids)
    assert meta_of(directory)["ok"] + meta_of(directory)["failed"] == 60
    store.close()
    again = JsonDirStore(directory, journal_limit=10)
    assert ledger_state(again, [*ids, "absent"]) == before
    again.apply(ChangeSet(ledger=[entry(i) for i in ids[:11]]))  # forces a compaction on the next commit
    again.apply(ChangeSet(ledger=[entry("id-999")]))
    assert meta_of(directory)["journal_entries"] == 1
    model.update({i: ItemOutcome.OK for i in [*ids[:11], "id-999"]})
    assert again.ledger_lookup(RUN, TASK, [*ids, "id-999"]) == model
    assert again.ledger_counts(RUN, TASK).total == 61
    files = {p.name for p in unit_dir(directory).iterdir()}
    meta = meta_of(directory)
    assert files <= {"meta.json", meta["journal"], *(s["file"] for s in meta["segments"]),
                     *(s["file"].replace(".jsonl", ".idx.json") for s in meta["segments"])}


ops = st.lists(
    st.one_of(
        st.tuples(st.just("mark"), st.lists(st.tuples(st.integers(0, 40), st.integers(0, 2)), max_size=12)),
        st.tuples(st.just("clear"), st.just([])),
        st.tuples(st.just("reopen"), st.just([])),
    ),
    max_size=25,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=ops, limit=st.sampled_from([1, 3, 8]))
def test_ledger_agrees_with_a_dict_through_compactions(tmp_path_factory: pytest.TempPathFactory,
                                                        ops: list[tuple[str, list[tuple[int, int]]]],
                                                        limit: int) -> None:
    directory = tmp_path_factory.mktemp("cp")
    store = JsonDirStore(directory, journal_limit=limit)
    started(store)
    model: dict[str, tuple[int, str | None]] = {}
    for op, marks in ops:
        if op == "mark":
            batch = [entry(f"i{n}", outcome == 0, None if outcome == 0 else f"e{n}", outcome == 1)
                     for n, outcome in marks]
            store.apply(ChangeSet(ledger=batch))
            model.update({e.item_id: (int(ItemOutcome.of(e)), e.error) for e in batch})
        elif op == "clear":
            store.apply(ChangeSet(ledger_clears=[LedgerClear(RUN, TASK, LedgerKind.ITEMS)]))
            model.clear()
        else:
            store.close()
            store = JsonDirStore(directory, journal_limit=limit)
        ok = sum(1 for v in model.values() if v[0] == ItemOutcome.OK)
        assert store.ledger_counts(RUN, TASK) == LedgerCounts(ok, len(model) - ok)
    probe = [f"i{n}" for n in range(45)]
    assert store.ledger_lookup(RUN, TASK, probe) == {k: ItemOutcome(v[0]) for k, v in model.items()}
    assert [(e.item_id, int(ItemOutcome.of(e)), e.error) for e in store.iter_ledger(RUN, TASK)] == [
        (k, *model[k]) for k in sorted(model)]
    store.close()


def test_iteration_is_a_snapshot_that_survives_compaction(store: JsonDirStore, directory: Path) -> None:
    started(store)
    store.apply(ChangeSet(ledger=[entry(f"{i:02d}") for i in range(25)]))
    store.apply(ChangeSet(ledger=[entry("zz")]))
    entries = store.iter_ledger(RUN, TASK)
    assert next(entries).item_id == "00"
    for i in range(3):  # compactions replace the files the iterator reads
        store.apply(ChangeSet(ledger=[entry(f"{i}{n:02d}x", False, "e") for n in range(12)]))
    assert [e.item_id for e in entries] == [f"{i:02d}" for i in range(1, 25)] + ["zz"]


def test_two_instances_see_each_others_commits(directory: Path) -> None:
    first, second = JsonDirStore(directory, journal_limit=10), JsonDirStore(directory, journal_limit=10)
    started(first)
    first.apply(ChangeSet(ledger=[entry("a")]))
    assert second.ledger_lookup(RUN, TASK, ["a"]) == {"a": ItemOutcome.OK}  # caches its journal now
    second.apply(ChangeSet(ledger=[entry("b", False, "x")]))
    first.apply(ChangeSet(ledger=[entry("b"), entry("c")]))
    assert second.ledger_lookup(RUN, TASK, ["a", "b", "c"]) == dict.fromkeys("abc", ItemOutcome.OK)
    assert second.ledger_counts(RUN, TASK) == first.ledger_counts(RUN, TASK) == LedgerCounts(3, 0)


# -- damage and unwritable files -----------------------------------------------------------------------
def corrupt_and_check(store_dir: Path, path: Path, damage: bytes | None, read: Any) -> None:
    if damage is None:
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    else:
        path.write_bytes(damage)
    data = path.read_bytes()
    with pytest.raises(CorruptState) as info:
        read(JsonDirStore(store_dir, journal_limit=10))
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert path.read_bytes() == data


def test_a_truncated_run_document_is_reported_and_left_alone(store: JsonDirStore, directory: Path) -> None:
    started(store)
    path = directory / "runs" / f"{RUN}.json"
    corrupt_and_check(directory, path, None, lambda s: s.get_tasks(RUN))
    with pytest.raises(CorruptState):
        JsonDirStore(directory).apply(ChangeSet(tasks=[TaskRecord(RUN, TASK, 0, pages=1)]))
    with pytest.raises(CorruptState):
        JsonDirStore(directory).list_runs()


@pytest.mark.parametrize("edit", [
    lambda d: d["tasks"][0].update(pages="x"),
    lambda d: d["tasks"][0].update(status="sleeping"),
    lambda d: d["run"].update(started_at=17),
    lambda d: d.update(tasks={"not": "a list"}),
    lambda d: d["run"].pop("job"),
])
def test_wrong_types_in_a_hand_edited_run_document(store: JsonDirStore, directory: Path, edit: Any) -> None:
    started(store)
    path = directory / "runs" / f"{RUN}.json"
    doc = json.loads(path.read_text())
    edit(doc)
    corrupt_and_check(directory, path, json.dumps(doc).encode(), lambda s: (s.get_run(RUN), s.get_tasks(RUN)))


def test_a_damaged_segment_is_reported_and_left_alone(store: JsonDirStore, directory: Path) -> None:
    started(store)
    store.apply(ChangeSet(ledger=[entry(f"{i:03d}") for i in range(40)]))
    store.apply(ChangeSet(ledger=[entry("x")]))  # compacts the 40 into a segment
    (segment,) = meta_of(directory)["segments"]
    path = unit_dir(directory) / segment["file"]
    size = path.stat().st_size
    garbage = bytes((i * 37) % 251 for i in range(size))  # same size: only the checksums can tell
    corrupt_and_check(directory, path, garbage, lambda s: s.ledger_lookup(RUN, TASK, ["007", "nope"]))
    corrupt_and_check(directory, path, garbage, lambda s: list(s.iter_ledger(RUN, TASK)))
    corrupt_and_check(directory, path, b"garbage\n", lambda s: s.ledger_lookup(RUN, TASK, ["007"]))


@pytest.mark.parametrize("target", ["meta", "index", "journal", "state"])
def test_other_damaged_files_are_reported(store: JsonDirStore, directory: Path, target: str) -> None:
    started(store)
    store.apply(ChangeSet(ledger=[entry(f"{i:03d}") for i in range(12)], state=[StateEntry("drucksachen", "k", 1, T0)]))
    store.apply(ChangeSet(ledger=[entry("x"), entry("y")]))
    meta = meta_of(directory)
    paths = {
        "meta": unit_dir(directory) / "meta.json",
        "index": unit_dir(directory) / meta["segments"][0]["file"].replace(".jsonl", ".idx.json"),
        "journal": unit_dir(directory) / meta["journal"],
        "state": directory / "state" / "drucksachen.json",
    }
    read = (lambda s: s.get_state("drucksachen")) if target == "state" else (
        lambda s: s.ledger_lookup(RUN, TASK, ["000", "y"]))
    corrupt_and_check(directory, paths[target], None, read)


def test_a_damaged_intent_is_reported_not_replayed(store: JsonDirStore, directory: Path) -> None:
    started(store)
    (directory / "pending.json").write_bytes(b'{"format": 1, "ops": [{"op": "wri')
    with pytest.raises(CorruptState, match=r"pending\.json"):
        JsonDirStore(directory)
    assert (directory / "pending.json").read_bytes() == b'{"format": 1, "ops": [{"op": "wri'
    (directory / "pending.json").write_text('{"format": 1, "ops": [{"op": "delete", "path": "../../x"}]}')
    with pytest.raises(CorruptState, match="bad path"):
        JsonDirStore(directory)


def test_a_file_where_a_directory_belongs_fails_cleanly(store: JsonDirStore, directory: Path) -> None:
    started(store)
    (directory / "state").write_text("not a directory")
    before = (directory / "runs" / f"{RUN}.json").read_bytes()
    with pytest.raises(StoreUnavailable, match=r"cannot (read|write) .*state"):
        store.apply(ChangeSet(tasks=[TaskRecord(RUN, TASK, 0, pages=5)],
                              state=[StateEntry("drucksachen", "k", 1, T0)]))
    assert (directory / "runs" / f"{RUN}.json").read_bytes() == before
    assert not (directory / "pending.json").exists()
    assert store.get_tasks(RUN)[0].pages == 0


def test_a_read_only_directory_gives_store_unavailable(store: JsonDirStore, directory: Path) -> None:
    started(store)
    with read_only_directory(directory):
        with pytest.raises(StoreUnavailable, match=re.escape(str(directory))):
            store.apply(ChangeSet(tasks=[TaskRecord(RUN, TASK, 0, pages=5)]))
        assert JsonDirStore(directory).get_tasks(RUN)[0].pages == 0


FSIZE_WRITER = textwrap.dedent("""
    import resource, signal, sys
    from syncpoint.errors import StoreError
    from syncpoint.model import TaskRecord
    from syncpoint.stores.base import ChangeSet
    from syncpoint.stores.jsondir import JsonDirStore
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a too-large write fails with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
    store = JsonDirStore(sys.argv[1])
    try:
        store.apply(ChangeSet(tasks=[TaskRecord(sys.argv[2], "t", 0, cursor={"pad": "x" * 30_000})]))
    except StoreError as exc:
        print(type(exc).__name__, exc)
""")


def test_a_file_too_large_leaves_the_committed_state(store: JsonDirStore, directory: Path) -> None:
    started(store)
    before = {p: p.read_bytes() for p in directory.rglob("*") if p.is_file() and p.name != "store.lock"}
    out = subprocess.run([sys.executable, "-c", FSIZE_WRITER, str(directory), RUN], capture_output=True,
                         text=True, timeout=60)
    assert out.stdout.startswith("StoreError cannot write "), out.stdout + out.stderr
    assert "File too large" in out.stdout and str(directory) in out.stdout
    after = {p: p.read_bytes() for p in directory.rglob("*") if p.is_file() and p.name != "store.lock"}
    assert after == before
    assert JsonDirStore(directory).get_tasks(RUN)[0].cursor is None


def test_a_compaction_that_fails_changes_nothing(store: JsonDirStore, directory: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    started(store)
    store.apply(ChangeSet(ledger=[entry(f"{i:02d}", i % 2 == 0, "e") for i in range(12)]))
    before = ledger_state(store, ["00", "01", "99"])

    def disk_full(path: Path, *args: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(journal, "write_segment", disk_full)
    with pytest.raises(StoreError, match=r"cannot write .*seg-.*No space left"):
        store.apply(ChangeSet(ledger=[entry("99")]))
    monkeypatch.undo()
    assert ledger_state(JsonDirStore(directory, journal_limit=10), ["00", "01", "99"]) == before
    store.apply(ChangeSet(ledger=[entry("99"), entry("01")]))
    assert meta_of(directory)["segments"] and store.ledger_counts(RUN, TASK) == LedgerCounts(8, 5)


def test_threads_share_one_store(store: JsonDirStore) -> None:
    tasks = [f"task-{n}" for n in range(4)]
    started(store, *tasks)

    seen: list[int] = []

    def work(task: str) -> None:
        for start in range(0, 60, 6):
            store.apply(ChangeSet(ledger=[entry(f"{i}", task=task) for i in range(start, start + 6)]))
            seen.append(len(store.ledger_lookup(RUN, task, [str(i) for i in range(60)])) - start - 6)

    threads = [threading.Thread(target=work, args=(t,)) for t in tasks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == [0] * 40
    assert [store.ledger_counts(RUN, t) for t in tasks] == [LedgerCounts(60, 0)] * 4


@pytest.mark.parametrize("seed", range(4))
def test_random_histories_match_the_reference_store(tmp_path: Path, seed: int) -> None:
    """Small journals, so every history compacts, clears and deletes; the reference is SQLite."""
    rnd = random.Random(seed)
    runs, tasks, jobs = [f"2024010{i}-000000-00000{i}" for i in range(3)] + ["odd/run id"], ["t", "a/b:c", "ü"], [
        "a", "b", "c/x"]
    limit = rnd.choice([2, 5, 13])
    js, ref = JsonDirStore(tmp_path / "j", journal_limit=limit), SQLiteStore(tmp_path / "s.db")
    for step in range(50):
        known = [(t.run_id, t.name) for r in runs for t in ref.get_tasks(r)]
        changes = ChangeSet(
            run_deletes=[rnd.choice(runs)] if rnd.random() < 0.04 else [],
            runs=[RunRecord(rnd.choice(runs), rnd.choice(jobs), rnd.choice(list(RunStatus)), {}, "d",
                            T0 + timedelta(seconds=rnd.randint(0, 3)), T0) for _ in range(rnd.randint(0, 1))],
            tasks=[TaskRecord(rnd.choice(runs), rnd.choice(tasks), rnd.randint(0, 2),
                              cursor=rnd.choice([None, watermark(f"2024-0{rnd.randint(1, 9)}-01", "date")]))
                   for _ in range(rnd.randint(0, 2))],
        )
        known = [k for k in known if k[0] not in changes.run_deletes]
        if known:
            if rnd.random() < 0.1:
                changes.ledger_clears.append(LedgerClear(*rnd.choice(known), rnd.choice(list(LedgerKind))))
            batch: dict[tuple[str, str, LedgerKind, str], LedgerEntry] = {}
            for _ in range(rnd.choice([0, 3, 20])):
                run_id, task = rnd.choice(known)
                ok = rnd.random() < 0.6
                e = LedgerEntry(run_id, task, f"i{rnd.randint(0, 50)}", ok, None if ok else "e",
                                rnd.random() < 0.5, rnd.choice(list(LedgerKind)))
                batch[(run_id, task, e.kind, e.item_id)] = e  # one entry per ID: see test_conformance
            changes.ledger = list(batch.values())
        if rnd.random() < 0.2:
            changes.state.append(StateEntry(rnd.choice(jobs), rnd.choice(["x", "y"]), step, T0))
        outcomes = []
        for store in (js, ref):
            try:
                store.apply(changes)
                outcomes.append("ok")
            except StoreError as exc:
                outcomes.append(type(exc).__name__)
        assert outcomes[0] == outcomes[1], (step, changes)
        if rnd.random() < 0.2:
            js.close()
            js = JsonDirStore(tmp_path / "j", journal_limit=limit)
        assert js.list_runs() == ref.list_runs() and js.list_jobs() == ref.list_jobs()
        for run_id, task in [(r, t) for r in runs for t in tasks]:
            assert js.get_tasks(run_id) == ref.get_tasks(run_id)
            for kind in LedgerKind:
                assert js.ledger_counts(run_id, task, kind) == ref.ledger_counts(run_id, task, kind)
                assert list(js.iter_ledger(run_id, task, kind)) == list(ref.iter_ledger(run_id, task, kind))
                probe = [f"i{n}" for n in range(0, 52, 3)]
                assert js.ledger_lookup(run_id, task, probe, kind) == ref.ledger_lookup(run_id, task, probe, kind)
        for job in jobs:
            resumable = [r for r in ref.list_runs(job) if r.status is not RunStatus.COMPLETED]
            view = tmp_path / "j" / f"{file_stem(job)}.checkpoint.json"
            assert view.exists() == bool(resumable)
            if resumable:
                assert json.loads(view.read_text())["run_id"] == resumable[0].run_id
    js.close()
    ref.close()


def test_files_from_a_newer_syncpoint_are_refused(store: JsonDirStore, directory: Path) -> None:
    started(store)
    path = directory / "runs" / f"{RUN}.json"
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({**doc, "format": 2}))
    with pytest.raises(SchemaTooNew, match="newer syncpoint"):
        JsonDirStore(directory).get_run(RUN)

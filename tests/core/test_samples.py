"""Progress samples: the runtime records them at commits, bounded in rate and number, and resumes the set."""

from __future__ import annotations

import itertools
import sqlite3
from pathlib import Path

import pytest
from helpers import EMBEDDED_STORES, store_url

import syncpoint
from syncpoint import samples
from syncpoint.samples import Sampler
from syncpoint.stores.sqlite import SQLiteStore


def test_a_full_set_is_thinned_to_every_other_sample_and_stays_bounded() -> None:
    sampler = Sampler("r", interval=1.0, cap=8)
    taken: list[tuple[float, int]] = []  # (time, slot)
    now = 0.0
    for _ in range(200):
        if sampler.due(now, final=False):
            taken.append((now, sampler.next_slot(now)))
        now += 0.25
    live = {slot: at for at, slot in taken}  # a later sample in a slot replaces the earlier one
    assert len(live) <= 8 and all(0 <= slot < 8 for slot in live)
    times = sorted(live.values())
    assert times[0] == 0.0 and times[-1] >= 40  # the whole run is still covered, start to end
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) <= 4 * min(gaps)  # evenly spread, not the first or last 8
    assert len(taken) < 200 / 4  # at most one per interval, and the interval grows as the set thins


def test_a_final_commit_always_samples() -> None:
    sampler = Sampler("r", interval=60.0)
    sampler.next_slot(0.0)
    assert not sampler.due(1.0, final=False)
    assert sampler.due(1.0, final=True)


@pytest.mark.parametrize("kind", [p.values[0] for p in EMBEDDED_STORES])
def test_a_run_records_samples_up_to_its_final_totals(tmp_path: Path, kind: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(samples, "SAMPLE_SECONDS", 0.0)  # every commit samples
    url = store_url(kind, tmp_path)
    job = syncpoint.Job("job", {"v": 1}, store=url, save_policy=syncpoint.SavePolicy(every_items=10))
    with job.run() as run:
        with run.task("t") as task:
            for i in range(45):
                task.item_done(str(i))
            task.item_failed("x", "boom", retryable=True)
        run_id = run.run_id
    found = job.store.get_samples(run_id)
    assert len(found) >= 5
    assert [s.at for s in found] == sorted(s.at for s in found)
    assert (found[-1].items_ok, found[-1].items_failed) == (45, 1)
    assert [s.items_ok for s in found] == sorted(s.items_ok for s in found)

    with job.run(new_run=True) as again:  # a new run: its own set
        assert again.run_id != run_id
    assert job.store.get_samples(again.run_id)[-1].items_ok == 0
    with job.run(new_run=True, max_items=3) as partial, partial.task("t") as task:
        for i in range(10):
            task.item_done(str(i))
    before = len(job.store.get_samples(partial.run_id))
    with job.run(resume=True) as resumed:
        assert resumed.run_id == partial.run_id
        with resumed.task("t") as task:
            for i in range(10):
                task.item_done(str(i))
    after = job.store.get_samples(partial.run_id)
    assert len(after) > before  # the resumed invocation adds to the set instead of overwriting it
    assert len({s.slot for s in after}) == len(after)
    job.delete_run(partial.run_id)
    assert job.store.get_samples(partial.run_id) == []
    job.close()


def test_sampling_is_rate_limited_by_default(tmp_path: Path) -> None:
    job = syncpoint.Job("job", {"v": 1}, store=store_url("sqlite", tmp_path),
                        save_policy=syncpoint.SavePolicy(every_items=1))
    with job.run() as run, run.task("t") as task:
        for i in range(300):  # 300 commits in well under a second
            task.item_done(str(i))
    found = job.store.get_samples(run.run_id)
    assert 2 <= len(found) <= 4  # the first commit, maybe one a second later, and the final one
    job.close()


def test_a_version_1_sqlite_file_gains_the_samples_table(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    SQLiteStore(path).close()
    with sqlite3.connect(path) as conn:  # make it look like a file written before samples existed
        conn.execute("DROP TABLE samples")
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    store = SQLiteStore(path)
    assert store.get_samples("r") == []
    store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("2",)

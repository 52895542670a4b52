"""Many workers on one run, through procrastinate on the real PostgreSQL: fan-out, takeover after ``kill -9``,
fencing of a worker that comes back, hand-off on SIGTERM, retries and the run's single ending."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from datetime import datetime, timezone

import pytest
from fleet_support import FleetBed, expected_ids
from helpers import Child, run_job

from syncpoint.distributed.fleet import default_queue

pytestmark = pytest.mark.postgres


def wait_for(child: Child, needle: str, timeout: float = 30.0) -> str:
    """Read the child's output (PAGE lines and its log) until a line contains ``needle``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = child.read_line(timeout=max(deadline - time.monotonic(), 0.1))
        if line is None:
            break
        if needle in line:
            return line
    pytest.fail(f"never saw {needle!r}; last lines: {child.lines[-8:]}")


def pages_of(child_lines: list[str], task: str) -> list[int]:
    return [int(line.split()[2]) for line in child_lines if line.startswith(f"PAGE {task} ")]


def test_fan_out_queues_each_task_once_and_two_workers_finish_the_run(bed: FleetBed) -> None:
    run_id = bed.start(30, "--key", "nightly")
    assert bed.start(30, "--key", "nightly") == run_id  # the same fan-out again: the same run, nothing queued twice
    queue = default_queue(bed.schema, bed.job)
    queued = bed.sql("SELECT count(*) FROM procrastinate_jobs WHERE queue_name = %s", queue)
    assert queued[0][0] == 30
    assert bed.run_status(run_id) == ("running", None)
    one, two = bed.worker("--until-done", name="one"), bed.worker("--until-done", name="two")
    assert one.finish(timeout=120)[0] == 0
    assert two.finish(timeout=120)[0] == 0
    assert bed.run_status(run_id) == ("completed", None)
    assert set(bed.leases(run_id).values()) == {("finished", 1)}
    found = bed.file_ids()
    assert set(found) == expected_ids(30) and max(found.values()) == 1  # no kill: exactly once
    assert pages_of(one.lines, "t0000") or pages_of(two.lines, "t0000")
    assert len({line.split()[1] for line in one.lines + two.lines if line.startswith("PAGE")}) == 30


def test_kill_9_of_a_worker_another_takes_the_task_over_from_its_checkpoint(bed: FleetBed) -> None:
    run_id = bed.start(3)
    first = bed.worker("--page-delay", "0.2", name="first")
    first.expect("PAGE t0000 2")  # pages 0-2 of t0000 committed (one commit per page)
    first.proc.kill()
    first.finish()
    second = bed.worker("--until-done", name="second")
    assert second.finish(timeout=60)[0] == 0
    assert pages_of(second.lines, "t0000")[0] == 3  # resumed after the last checkpoint, not from the start
    assert bed.run_status(run_id) == ("completed", None)
    assert bed.leases(run_id)["t0000"] == ("finished", 2)  # a second grant, which fenced the dead holder
    found = bed.file_ids()
    assert set(found) == expected_ids(3)
    assert bed.late_commits(run_id) == []


def test_a_paused_worker_presumed_dead_is_fenced_when_it_comes_back(bed: FleetBed) -> None:
    """SIGSTOP past the stall timeout, another worker takes over and finishes; SIGCONT: the first worker's
    next commit is refused in its own transaction, its rows roll back with it — exactly once in the table."""
    run_id = bed.start(2)
    paused = bed.worker("--dest", "pg", "--page-delay", "0.3", name="paused")
    paused.expect("PAGE t0000 1")
    os.kill(paused.proc.pid, signal.SIGSTOP)
    try:
        other = bed.worker("--dest", "pg", "--until-done", name="other")
        assert other.finish(timeout=60)[0] == 0
        assert bed.run_status(run_id) == ("completed", None)
    finally:
        os.kill(paused.proc.pid, signal.SIGCONT)
    wait_for(paused, "lost the lease on task t0000")  # its next commit (or its heartbeat) finds the lease gone
    paused.proc.send_signal(signal.SIGTERM)
    code, err = paused.finish(timeout=30)
    assert code == 143, err[-2000:]
    found = bed.pg_ids()
    assert set(found) == expected_ids(2)
    assert max(found.values()) == 1, [k for k, v in found.items() if v > 1][:5]  # its refused rows rolled back
    assert bed.late_commits(run_id) == []
    assert bed.leases(run_id)["t0000"] == ("finished", 2)


def test_a_worker_woken_by_sigterm_after_its_takeover_writes_nothing_and_exits_cleanly(bed: FleetBed) -> None:
    """Paused, taken over, then SIGTERM while still paused and SIGCONT: whichever sees it first — the keeper's
    heartbeat or the hand-off commit meeting the fence — the lease is lost (logged in one line, nothing
    written), not a traceback in the worker's log, and the worker exits 143."""
    run_id = bed.start(1)
    paused = bed.worker("--dest", "pg", "--page-delay", "0.3", name="paused")
    paused.expect("PAGE t0000 1")
    os.kill(paused.proc.pid, signal.SIGSTOP)
    try:
        other = bed.worker("--dest", "pg", "--until-done", name="other")
        assert other.finish(timeout=60)[0] == 0
        paused.proc.send_signal(signal.SIGTERM)  # pending until it runs again
    finally:
        os.kill(paused.proc.pid, signal.SIGCONT)
    code, err = paused.finish(timeout=30)
    assert code == 143, err[-2000:]
    assert "Traceback" not in err and "Traceback" not in "\n".join(paused.lines), err[-2000:]
    assert any("lost the lease" in line or "wrote nothing more" in line for line in paused.lines), paused.lines[-5:]
    assert max(bed.pg_ids().values()) == 1 and bed.late_commits(run_id) == []
    assert bed.leases(run_id)["t0000"] == ("finished", 2)


def test_sigterm_hands_the_task_back_and_another_worker_takes_it_at_once(tmp_path: object, bed: FleetBed) -> None:
    bed.stall = 30.0  # a takeover through the stall timeout would take >= 30 s; a hand-off takes none
    run_id = bed.start(1)
    first = bed.worker("--page-delay", "0.3", name="first")
    first.expect("PAGE t0000 1")
    first.proc.send_signal(signal.SIGTERM)
    code, err = first.finish(timeout=20)
    assert code == 143, err[-2000:]
    assert any("task t0000 handed back" in line for line in first.lines)
    assert bed.leases(run_id)["t0000"][0] == "queued"
    started = datetime.now(timezone.utc)
    second = bed.worker("--until-done", name="second")
    assert second.finish(timeout=20)[0] == 0
    assert (datetime.now(timezone.utc) - started).total_seconds() < 20
    assert pages_of(second.lines, "t0000")[0] in (2, 3)  # from the checkpoint the hand-off committed
    assert bed.run_status(run_id) == ("completed", None)
    assert set(bed.file_ids()) == expected_ids(1)


def test_a_retryable_failure_is_retried_and_the_run_completes(bed: FleetBed) -> None:
    run_id = bed.start(4)
    worker = bed.worker("--until-done", "--fail-task", "t0002", "--fail-times", "1", name="w")
    code, err = worker.finish(timeout=60)
    assert code == 0, err[-2000:]
    assert any("task t0002 failed (attempt 1 of 3" in line for line in worker.lines)
    assert bed.run_status(run_id) == ("completed", None)
    assert bed.sql("SELECT failures, epoch FROM {s}.leases WHERE task = 't0002'") == [(1, 2)]
    assert set(bed.file_ids()) == expected_ids(4)


@pytest.mark.parametrize("how", ["permanent", "attempts"])
def test_a_task_failed_for_good_ends_the_run_once_as_on_one_machine(bed: FleetBed, how: str) -> None:
    """Attempts used up on retryable errors end the run failed (exit 1 in its record); a permanent failure is
    counted and the run completes — the rule of syncpoint.failures, whichever way the run ran."""
    run_id = bed.start(4)
    extra = ["--permanent"] if how == "permanent" else ["--fail-times", "9"]
    worker = bed.worker("--until-done", "--fail-task", "t0001", *extra, name="w")
    code, err = worker.finish(timeout=60)
    assert code == 0, err[-2000:]
    status, error = bed.run_status(run_id)
    if how == "attempts":
        assert status == "failed" and error is not None, error
        assert error.startswith("1 of 4 task(s) failed with retryable errors after their last attempt"), error
    else:
        assert (status, error) == ("completed", None)
    assert bed.sql("SELECT status, retryable FROM {s}.tasks WHERE name = 't0001'") == [
        ("failed", how == "attempts")]
    assert bed.sql("SELECT failures FROM {s}.leases WHERE task = 't0001'") == [(1 if how == "permanent" else 3,)]
    assert bed.sql("SELECT count(*) FROM {s}.runs WHERE ended_at IS NOT NULL") == [(1,)]
    assert bed.sql("SELECT exit_code FROM {s}.runs") == [(1 if how == "attempts" else 0,)]


def test_a_task_maps_its_items_over_threads_under_its_lease(bed: FleetBed) -> None:
    """``WorkerRun.map``: one task's items on 8 threads, each recorded as it finishes, the commits fenced."""
    run_id = bed.start(2)
    worker = bed.worker("--until-done", "--map-items", "40", "--map-concurrency", "8", "--page-delay", "0.02",
                        name="w")
    code, err = worker.finish(timeout=60)
    assert code == 0, err[-2000:]
    assert sorted(line.split()[:3] for line in worker.lines if line.startswith("MAPPED")) == [
        ["MAPPED", "t0000", "40"], ["MAPPED", "t0001", "40"]]
    assert bed.run_status(run_id) == ("completed", None)
    assert bed.sql("SELECT name, status, ok FROM {s}.tasks ORDER BY name") == [
        ("t0000", "complete", 40), ("t0001", "complete", 40)]
    assert bed.file_ids() == Counter({f"t{n:04d}-m{i}": 1 for n in range(2) for i in range(40)})
    assert bed.late_commits(run_id) == []


def test_sigterm_during_a_map_hands_the_task_back_with_its_finished_items_recorded(bed: FleetBed) -> None:
    """A signal to a worker in the middle of a map: no new item is handed out, the items in flight finish and
    are recorded, the commit hands the lease back; the next worker does only the items not yet done."""
    run_id = bed.start(1)
    first = bed.worker("--map-items", "200", "--map-concurrency", "4", "--page-delay", "0.05", name="first")
    for _ in range(12):
        first.expect("ITEM t0000")
    first.proc.send_signal(signal.SIGTERM)
    assert first.finish(timeout=30)[0] == 143
    [(done,)] = bed.sql("SELECT ok FROM {s}.tasks")
    assert 12 <= done < 200  # what finished before the hand-off was recorded with it
    assert bed.leases(run_id)["t0000"][0] == "queued"  # handed back at once, not left to the stall timeout
    second = bed.worker("--until-done", "--map-items", "200", "--map-concurrency", "4", "--page-delay", "0.01",
                        name="second")
    assert second.finish(timeout=60)[0] == 0
    [mapped] = [line.split() for line in second.lines if line.startswith("MAPPED")]
    assert mapped[:3] == ["MAPPED", "t0000", str(200 - done)]  # only the items not yet done
    found = bed.file_ids()
    assert set(found) == {f"t0000-m{i}" for i in range(200)}
    assert sum(found.values()) - 200 <= 4  # at most the items in flight when the commit was written
    assert bed.run_status(run_id) == ("completed", None)
    assert bed.leases(run_id)["t0000"] == ("finished", 2)
    assert bed.late_commits(run_id) == []


def test_tasks_added_while_the_run_ends_are_refused_not_dropped(bed: FleetBed,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """``enqueue`` checks that the run is running, then adds its tasks in a transaction; if the last lease's
    commit ends the run in between, the tasks must not land in the ended run (no worker would take them)."""
    from syncpoint.distributed import Fleet
    from syncpoint.errors import UsageError

    run_id = bed.start(1)
    fleet = Fleet.open(bed.job, {"kind": "fleet"}, store=bed.url)
    try:
        checked = fleet._same_config

        def and_then_the_run_ends(run: object) -> object:  # the moment between the check and the transaction
            found = checked(run)  # type: ignore[arg-type]
            bed.sql("UPDATE {s}.runs SET status = 'completed', ended_at = now() WHERE run_id = %s RETURNING 1",
                    run_id)
            return found

        monkeypatch.setattr(fleet, "_same_config", and_then_the_run_ends)
        with pytest.raises(UsageError, match="ended while tasks were being added"):
            fleet.enqueue(run_id, ["late"])
    finally:
        fleet.job.close()
    assert bed.sql("SELECT count(*) FROM {s}.tasks WHERE name = 'late'") == [(0,)]
    assert bed.sql("SELECT count(*) FROM {s}.leases WHERE task = 'late'") == [(0,)]


def test_a_working_fleet_keeps_its_run_s_updated_time_moving(bed: FleetBed) -> None:
    """The keeper touches the run after each heartbeat (every third of the stall timeout, 1 s here): the run's
    duration grows while its workers work, though no worker writes the run's record."""
    run_id = bed.start(1)
    [(started,)] = bed.sql("SELECT started_at FROM {s}.runs")
    worker = bed.worker("--pages", "100000", "--page-delay", "0.05", name="w")
    try:
        worker.expect("PAGE t0000 0")
        deadline = time.monotonic() + 10
        moved = 0.0
        while moved < 0.5 and time.monotonic() < deadline:  # bounded poll of the store, no sleep
            [(updated,)] = bed.sql("SELECT updated_at FROM {s}.runs WHERE run_id = %s", run_id)
            moved = (updated - started).total_seconds()
        assert moved >= 0.5, "the run's updated_at did not move while its worker worked"
    finally:
        worker.proc.send_signal(signal.SIGTERM)
        worker.finish(timeout=30)


def test_retry_continues_a_failed_run_from_its_checkpoints_instead_of_starting_over(bed: FleetBed) -> None:
    """The distributed ``--resume``: a run that ended failed (attempts used up) gets its failed tasks queued
    again; they continue from their checkpoints, the others are not redone, and the run completes once."""
    run_id = bed.start(4)
    refused = run_job([*bed.common(), "retry", run_id])
    assert refused[0] == 64 and f"run {run_id} is still running" in refused[2], refused
    failing = bed.worker("--until-done", "--fail-task", "t0001", "--fail-times", "9", name="failing")
    assert failing.finish(timeout=60)[0] == 0
    assert bed.run_status(run_id)[0] == "failed"
    before = bed.file_ids()
    assert set(before) == expected_ids(4) - {i for i in expected_ids(4) if i.startswith("t0001-")}

    code, out, err = run_job([*bed.common(), "retry", run_id])
    assert code == 0, err
    assert "QUEUED t0001" in out
    assert bed.run_status(run_id) == ("running", None)
    assert bed.sql("SELECT attempts, ended_at, exit_code FROM {s}.runs") == [(2, None, None)]
    assert bed.leases(run_id)["t0001"] == ("queued", 3)
    again = run_job([*bed.common(), "retry", run_id])
    assert again[0] == 64 and "still running" in again[2]  # queued once, not twice

    finisher = bed.worker("--until-done", name="finisher")
    assert finisher.finish(timeout=60)[0] == 0
    assert bed.run_status(run_id) == ("completed", None)
    assert bed.sql("SELECT exit_code FROM {s}.runs") == [(0,)]
    assert bed.file_ids() == Counter({i: 1 for i in expected_ids(4)})  # the others were not redone
    assert bed.leases(run_id)["t0001"] == ("finished", 4)
    assert bed.sql("SELECT status, error FROM {s}.tasks WHERE name = 't0001'") == [("complete", None)]
    assert bed.late_commits(run_id) == []
    nothing = run_job([*bed.common(), "retry", run_id])
    assert nothing[0] == 64 and "has no task that failed" in nothing[2], nothing


def test_retry_takes_permanent_failures_only_when_asked(bed: FleetBed) -> None:
    run_id = bed.start(2)
    worker = bed.worker("--until-done", "--fail-task", "t0000", "--permanent", name="w")
    assert worker.finish(timeout=60)[0] == 0
    assert bed.run_status(run_id) == ("completed", None)  # a permanent failure is counted, the run completes
    plain = run_job([*bed.common(), "retry", run_id])
    assert plain[0] == 64 and "permanent=True retries the others too" in plain[2], plain
    code, out, err = run_job([*bed.common(), "retry", run_id, "--permanent"])
    assert code == 0 and "QUEUED t0000" in out, err
    assert bed.worker("--until-done", name="w2").finish(timeout=60)[0] == 0
    assert bed.run_status(run_id) == ("completed", None)
    assert set(bed.file_ids()) == expected_ids(2)


def test_a_worker_until_done_on_a_store_where_nothing_was_queued_says_so(bed: FleetBed) -> None:
    """A typo in the store URL or the job name would otherwise look like a finished collection (exit 0)."""
    worker = bed.worker("--until-done", name="lonely")
    code, err = worker.finish(timeout=30)
    assert code == 64, err[-2000:]
    line = [line for line in err.splitlines() if "error:" in line]
    assert len(line) == 1 and f"no task of job '{bed.job}' was ever queued" in line[0], err[-2000:]
    assert "Traceback" not in err


def test_a_second_sigterm_exits_at_once_and_the_lease_waits_for_the_stall_timeout(bed: FleetBed) -> None:
    """The first SIGTERM waits for the task's next safe point (a page takes 3 s here); the second exits 143 at
    once, without the hand-off: the lease stays held at its epoch until the stall timeout hands it on."""
    run_id = bed.start(1)
    worker = bed.worker("--page-delay", "3", name="slow")
    wait_for(worker, "PAGE t0000 0")
    worker.proc.send_signal(signal.SIGTERM)
    wait_for(worker, "a second signal exits at once")  # two signals sent at once would merge into one
    worker.proc.send_signal(signal.SIGTERM)
    started = time.monotonic()
    code, err = worker.finish(timeout=20)
    assert code == 143, err[-2000:]
    assert time.monotonic() - started < 2.5  # not after the page in flight (3 s)
    assert "Traceback" not in err
    assert bed.leases(run_id)["t0000"] == ("leased", 1)  # no hand-off commit: the stall timeout recovers it

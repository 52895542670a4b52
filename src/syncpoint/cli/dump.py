"""Dumps: every record of a store as JSON Lines, written and read as streams (ledgers can be huge).

    {"type": "header", "format": "syncpoint-dump", "version": 1, "created_at": "...", "source": "...",
     "jobs": ["a", "b"]}
    {"type": "run", "data": {...codec.run_to_dict...}}
    {"type": "task", "data": {...codec.task_to_dict...}}        the run's tasks, in position order
    {"type": "phase", "data": {...codec.phase_to_dict...}}
    {"type": "sample", "data": {...codec.sample_to_dict...}}    the run's progress samples (the dashboard)
    {"type": "ledger", "data": {...codec.ledger_to_dict...}}    per task: item ledger, then boundary IDs
    ...                                                          the job's next run, then its state:
    {"type": "state", "data": {...codec.state_to_dict...}}
    {"type": "end", "counts": {"runs": 2, "tasks": 5, "phases": 1, "ledger": 1000000, "state": 3}}

Jobs come one after the other (sorted by name), each job's runs oldest first. The ``end`` line lets an
import tell a complete dump from a truncated one. Import applies the records in change sets of ``batch``
records through the store's one write path, holding each job's lock while it writes that job (a job that
runs in the target meanwhile is refused, exit 75). Re-running an import after an interruption is safe with
``--replace`` (a run already in the target is deleted and written again) or ``--skip-existing``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from syncpoint import codec
from syncpoint.errors import UsageError
from syncpoint.model import LedgerKind, RunStatus, utcnow
from syncpoint.stores import mask_url
from syncpoint.stores.base import ChangeSet, JobLock, Store

log = logging.getLogger("syncpoint.dump")

FORMAT = "syncpoint-dump"
VERSION = 1
KINDS = ("run", "task", "phase", "sample", "ledger", "state")
CONFLICTS = ("error", "replace", "skip")


@dataclass
class Counts:
    runs: int = 0
    tasks: int = 0
    phases: int = 0
    ledger: int = 0
    state: int = 0
    samples: int = 0
    skipped_runs: list[str] = field(default_factory=list)

    def add(self, kind: str) -> None:
        setattr(self, _plural(kind), getattr(self, _plural(kind)) + 1)

    def as_dict(self) -> dict[str, int]:
        return {_plural(k): getattr(self, _plural(k)) for k in KINDS}

    def describe(self) -> str:
        return ", ".join(f"{n} {k}" for k, n in self.as_dict().items())


def _plural(kind: str) -> str:
    return {"run": "runs", "task": "tasks", "phase": "phases", "sample": "samples", "ledger": "ledger",
            "state": "state"}[kind]


# -- export -------------------------------------------------------------------------------------------------
def export_dump(store: Store, out: TextIO, jobs: list[str] | None = None) -> Counts:
    """Write every record of ``jobs`` (default: all) to ``out``, one JSON object per line."""
    names = sorted(jobs) if jobs is not None else store.list_jobs()
    counts = Counts()
    header = {"type": "header", "format": FORMAT, "version": VERSION, "created_at": codec.ts(utcnow()),
              "source": mask_url(store.location), "jobs": names}
    out.write(codec.dumps(header) + "\n")
    for kind, data in _records(store, names):
        out.write(codec.dumps({"type": kind, "data": data}) + "\n")
        counts.add(kind)
    out.write(codec.dumps({"type": "end", "counts": counts.as_dict()}) + "\n")
    out.flush()
    return counts


def _records(store: Store, jobs: list[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    for job in jobs:
        for run in reversed(store.list_runs(job)):
            if run.status is RunStatus.RUNNING and store.lock_holder(job) is not None:
                log.warning("run %s of job %s is running; the dump holds it as it is right now", run.run_id, job)
            yield "run", codec.run_to_dict(run)
            tasks = store.get_tasks(run.run_id)
            for task in tasks:
                yield "task", codec.task_to_dict(task)
            for phase in store.get_phases(run.run_id):
                yield "phase", codec.phase_to_dict(phase)
            for sample in store.get_samples(run.run_id):
                yield "sample", codec.sample_to_dict(sample)
            for task in tasks:
                for kind in LedgerKind:
                    for entry in store.iter_ledger(run.run_id, task.name, kind):
                        yield "ledger", codec.ledger_to_dict(entry)
        for bookmark in store.get_state(job):
            yield "state", codec.state_to_dict(bookmark)


# -- import -------------------------------------------------------------------------------------------------
class Importer:
    """Applies a dump's records to ``store`` in batches, one job (and its lock) at a time."""

    def __init__(self, store: Store, *, batch: int = 5000, on_conflict: str = "error", source: str = "dump") -> None:
        if on_conflict not in CONFLICTS:
            raise ValueError(f"on_conflict must be one of {CONFLICTS}")
        if batch < 1:
            raise UsageError(f"--batch must be at least 1, got {batch}")
        self.store = store
        self.batch_size = batch
        self.on_conflict = on_conflict
        self.source = source
        self.counts = Counts()  # what was written
        self._seen = Counts()  # what the dump held (compared with its end line)
        self._changes = ChangeSet()
        self._pending = 0
        self._job: str | None = None
        self._lock: JobLock | None = None
        self._skipping: str | None = None  # run_id whose records are skipped (--skip-existing)

    def run(self, lines: Iterable[str]) -> Counts:
        numbered = enumerate(lines, start=1)
        self._header(next(numbered, (1, "")))
        ended = False
        try:
            for lineno, line in numbered:
                if not line.strip():
                    continue
                if ended:
                    raise self._bad(lineno, "records after the end line")
                record = self._parse(lineno, line)
                if record.get("type") == "end":
                    self._check_end(lineno, record)
                    ended = True
                    continue
                self._add(lineno, record)
            if not ended:
                raise UsageError(
                    f"{self.source} is truncated (no end line); what it held was imported "
                    f"({self.counts.describe()}); import a complete dump again with --replace"
                )
            self._flush()
        finally:
            self._release()
        return self.counts

    # -- reading -------------------------------------------------------------------------------------------
    def _header(self, first: tuple[int, str]) -> None:
        lineno, line = first
        header = self._parse(lineno, line) if line.strip() else {}
        if header.get("format") != FORMAT:
            raise UsageError(f"{self.source} is not a syncpoint dump (its first line has no format {FORMAT!r})")
        if header.get("version") != VERSION:
            raise UsageError(
                f"{self.source} is a version {header.get('version')!r} dump; this syncpoint reads version {VERSION}"
            )

    def _parse(self, lineno: int, line: str) -> dict[str, Any]:
        try:
            value = json.loads(line)
        except ValueError as exc:
            raise self._bad(lineno, f"not JSON ({exc})") from None
        if not isinstance(value, dict):
            raise self._bad(lineno, "not a JSON object")
        return value

    def _bad(self, lineno: int, why: str) -> UsageError:
        return UsageError(f"{self.source}:{lineno}: {why}; nothing after line {lineno - 1} was imported")

    def _check_end(self, lineno: int, record: dict[str, Any]) -> None:
        expected = record.get("counts")
        if isinstance(expected, dict):
            expected = {"samples": 0, **expected}  # dumps written before samples existed have none
        seen = {_plural(k): getattr(self._seen, _plural(k)) for k in KINDS}
        if expected != seen:
            raise self._bad(lineno, f"the dump says it holds {expected} but has {seen}")

    # -- applying ------------------------------------------------------------------------------------------
    def _add(self, lineno: int, record: dict[str, Any]) -> None:
        kind, data = record.get("type"), record.get("data")
        if kind not in KINDS or not isinstance(data, dict):
            raise self._bad(lineno, f"unknown record type {kind!r}" if kind not in KINDS else "record has no data")
        self._seen.add(str(kind))
        try:
            _ADDERS[str(kind)](self, data)
        except (KeyError, TypeError, ValueError) as exc:
            raise self._bad(lineno, f"bad {kind} record ({type(exc).__name__}: {exc})") from None
        if self._pending >= self.batch_size:
            self._flush()

    def _add_run(self, data: dict[str, Any]) -> None:
        run = codec.run_from_dict(data)
        self._enter_job(run.job)
        self._skipping = None
        if self.store.get_run(run.run_id) is not None:
            if self.on_conflict == "skip":
                self._skipping = run.run_id
                self.counts.skipped_runs.append(run.run_id)
                return
            if self.on_conflict == "error":
                raise UsageError(
                    f"run {run.run_id} of job {run.job!r} is already in {mask_url(self.store.location)}; "
                    f"imported so far: {self.counts.describe()}; rerun with --replace to overwrite such runs "
                    "or --skip-existing to keep them"
                )
            self._changes.run_deletes.append(run.run_id)
        self._changes.runs.append(run)
        self._counted("run")

    def _add_task(self, data: dict[str, Any]) -> None:
        task = codec.task_from_dict(data)
        if task.run_id != self._skipping:
            self._changes.tasks.append(task)
            self._counted("task")

    def _add_phase(self, data: dict[str, Any]) -> None:
        phase = codec.phase_from_dict(data)
        if phase.run_id != self._skipping:
            self._changes.phases.append(phase)
            self._counted("phase")

    def _add_sample(self, data: dict[str, Any]) -> None:
        sample = codec.sample_from_dict(data)
        if sample.run_id != self._skipping:
            self._changes.samples.append(sample)
            self._counted("sample")

    def _add_ledger(self, data: dict[str, Any]) -> None:
        entry = codec.ledger_from_dict(data)
        if entry.run_id != self._skipping:
            self._changes.ledger.append(entry)
            self._counted("ledger")

    def _add_state(self, data: dict[str, Any]) -> None:
        entry = codec.state_from_dict(data)
        self._enter_job(entry.job)
        self._changes.state.append(entry)
        self._counted("state")

    def _counted(self, kind: str) -> None:
        self.counts.add(kind)
        self._pending += 1

    def _enter_job(self, job: str) -> None:
        if job == self._job:
            return
        self._flush()
        self._release()
        self._lock = self.store.lock(job)  # JobLocked (exit 75) if the job runs in the target right now
        self._job = job

    def _flush(self) -> None:
        if self._changes:
            self.store.apply(self._changes)
        self._changes = ChangeSet()
        self._pending = 0

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        self._job = None


_ADDERS: dict[str, Callable[[Importer, dict[str, Any]], None]] = {
    "run": Importer._add_run,
    "task": Importer._add_task,
    "phase": Importer._add_phase,
    "sample": Importer._add_sample,
    "ledger": Importer._add_ledger,
    "state": Importer._add_state,
}


def import_dump(store: Store, lines: Iterable[str], **options: Any) -> Counts:
    return Importer(store, **options).run(lines)

"""The JSON-directory store: human-readable files, atomic writes, a write-ahead intent, ledger journals.

Layout (every document indented, sorted keys, UTF-8 — ``jq`` and ``diff`` read all of it)::

    DIR/runs/{run}.json              {"format", "run_id", "run": {...}|null, "tasks": [...], "phases": [...]}:
                                     the source of truth for a run, its tasks (by position) and phases
    DIR/ledger/{run}/{task}-{kind}/  a task's ledger of one kind (``items`` or ``boundary``): journal,
                                     sorted segments and meta.json with the counts (see ``journal.py``);
                                     {task} is 16 hex digits of the SHA-256 of the task name, which
                                     meta.json holds in full
    DIR/samples/{run}.json           a run's progress samples (the dashboard): {"format", "run_id", "samples": [...]}
    DIR/state/{job}.json             a job's bookmarks: {"format", "job", "state": {key: {"updated_at", "value"}}}
    DIR/locks/{job}.lock             job locks (``flock``, see ``filelock.py``)
    DIR/store.lock                   the store's own lock: shared while reading, exclusive while writing
    DIR/pending.json                 the write-ahead intent of a commit in progress (normally absent)
    DIR/{job}.checkpoint.json        a view for people and ``jq``, rewritten by each commit that changes one
                                     of the job's runs or tasks: the job's most recently started resumable
                                     run — {"job", "run_id", "key", "status", "started_at", "updated_at",
                                     "last_sync_date", "tasks": {name: {...}}} — deleted once the job has
                                     none; the store never reads it

{run} and {job} are the names themselves when they are portable file names (``[A-Za-z0-9][A-Za-z0-9._-]*``,
at most 128 characters), else ``~`` and 32 hex digits of their SHA-256; the files hold the real names.

Crash consistency — ``apply`` is all-or-nothing for any reader, even after ``kill -9`` or a power loss:

1. Under the exclusive store lock it finishes any pending intent (below), reads what it needs, validates
   the change set and computes every file operation — whole documents to write, journal lines to append
   at the journal's committed length, files to delete. Nothing has been written yet.
2. It writes that list to ``pending.json`` atomically (temp file, fsync, rename, fsync of the directory).
   This is the commit point: from here on the change is durable and will be completed.
3. It executes the operations. Each is idempotent: documents are written as temp file + fsync + rename;
   an append first truncates the journal to the offset recorded in the intent, so a replay never
   duplicates a line and a torn tail is cut off; deletes ignore missing files. Directories are fsynced.
4. It deletes ``pending.json``. It does not fsync the directory for that: should a power loss bring the
   file back, replaying it again is harmless, because every later change either starts by writing (and
   fsyncing) a new ``pending.json`` over it or is a compaction, which fsyncs the directory first.

The constructor and every read first look for ``pending.json``; if it is there its writer died between 2
and 4, and the reader completes it (roll forward) under the exclusive lock. Readers hold the shared lock,
so no reader sees a commit half done. A journal is read only up to the length recorded in its meta.json,
which the same intent writes, so appended bytes that no committed meta.json covers are never read.

Errors: if the intent cannot be written, nothing changed. Operations are ordered so that the ones that
allocate space (temp files, journal appends) come before any that a reader can see (renames, deletes):
if one of those fails (disk full, file too large), the temp files and the intent are removed and nothing
changed. A failure after that (very unlikely) leaves the intent, which the next use of the store
completes; ``apply`` says so in its error. Ledger compaction happens before a commit, outside the intent
and only when none is pending, so an intent never names a file that compaction replaced.

Readers take the shared lock and writers the exclusive one, so several processes (jobs) may share a
directory. The view is computed from the runs this process knows: those on disk when it first needed the
view, and every change it made since.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from syncpoint import codec, files
from syncpoint.errors import CorruptState, LockHolder, SchemaTooNew, StoreError, StoreUnavailable, UsageError
from syncpoint.model import (
    FailedItem,
    LedgerCounts,
    LedgerEntry,
    LedgerKind,
    PhaseRecord,
    ProgressSample,
    RunHead,
    RunRecord,
    RunStatus,
    StateEntry,
    TaskRecord,
)
from syncpoint.stores import journal
from syncpoint.stores.base import ChangeSet, ItemOutcome, JobLock, Store
from syncpoint.stores.filelock import LockDirectory
from syncpoint.stores.journal import IndexCache, LedgerUnit, Meta, corrupt, os_error

FORMAT = 1
JOURNAL_LIMIT = 50_000
PENDING = "pending.json"

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_KIND_NAMES = {LedgerKind.ITEMS: "items", LedgerKind.BOUNDARY: "boundary"}
_OK, _RETRYABLE, _PERMANENT = (int(o) for o in (ItemOutcome.OK, ItemOutcome.FAILED_RETRYABLE,
                                                 ItemOutcome.FAILED_PERMANENT))
_BAD_DOC = (AssertionError, AttributeError, KeyError, TypeError, ValueError)  # codec asserts too

Op = dict[str, Any]


def file_stem(name: str) -> str:
    """A run ID or job name as a file name: itself if portable, else ``~`` and a hash of it."""
    if _SAFE_NAME.fullmatch(name):
        return name
    return "~" + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def task_dir(task: str, kind: LedgerKind) -> str:
    return hashlib.sha256(task.encode("utf-8", "surrogatepass")).hexdigest()[:16] + "-" + _KIND_NAMES[kind]


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _format_of(data: dict[str, Any], where: Path) -> None:
    version = data.get("format", FORMAT)
    if isinstance(version, int) and version > FORMAT:
        raise SchemaTooNew(f"{where} was written by a newer syncpoint (format {version}); upgrade syncpoint")


# -- documents ---------------------------------------------------------------------------------------
@dataclass
class _RunDoc:
    run_id: str
    run: RunRecord | None = None
    tasks: dict[str, TaskRecord] = field(default_factory=dict)
    phases: dict[str, PhaseRecord] = field(default_factory=dict)

    def ordered_tasks(self) -> list[TaskRecord]:
        return sorted(self.tasks.values(), key=lambda t: (t.position, t.name))

    def ordered_phases(self) -> list[PhaseRecord]:
        return sorted(self.phases.values(), key=lambda p: (p.position, p.name))

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "run_id": self.run_id,
            "run": None if self.run is None else codec.run_to_dict(self.run),
            "tasks": [codec.task_to_dict(t) for t in self.ordered_tasks()],
            "phases": [codec.phase_to_dict(p) for p in self.ordered_phases()],
        }

    @classmethod
    def from_json(cls, data: Any, where: Path, run_id: str) -> _RunDoc:
        try:
            _check(isinstance(data, dict), "not a JSON object")
            _format_of(data, where)
            doc = cls(data["run_id"])
            _check(doc.run_id == run_id, f"it holds run {doc.run_id!r}, not {run_id!r}")
            if data.get("run") is not None:
                doc.run = codec.run_from_dict(data["run"])
                _check(doc.run.run_id == run_id, "the run record has another run ID")
            for item in data.get("tasks", []):
                task = codec.task_from_dict(item)
                _check(task.run_id == run_id, f"task {task.name!r} has another run ID")
                doc.tasks[task.name] = task
            for item in data.get("phases", []):
                phase = codec.phase_from_dict(item)
                doc.phases[phase.name] = phase
            return doc
        except SchemaTooNew:
            raise
        except _BAD_DOC as exc:
            raise corrupt(where, f"bad run document: {exc}") from None


def _state_from_json(data: Any, where: Path, job: str) -> dict[str, StateEntry]:
    try:
        _check(isinstance(data, dict) and isinstance(data["state"], dict), "not a state document")
        _format_of(data, where)
        _check(data["job"] == job, f"it holds job {data['job']!r}, not {job!r}")
        return {
            key: codec.state_from_dict({"job": job, "key": key, **value}) for key, value in data["state"].items()
        }
    except _BAD_DOC as exc:
        raise corrupt(where, f"bad state document: {exc}") from None


def _state_to_json(job: str, entries: dict[str, StateEntry]) -> dict[str, Any]:
    state = {key: {"updated_at": codec.ts(e.updated_at), "value": e.value} for key, e in entries.items()}
    return {"format": FORMAT, "job": job, "state": state}


def checkpoint_view(doc: _RunDoc) -> dict[str, Any]:
    """The ``{job}.checkpoint.json`` view of a run (see the module docstring)."""
    assert doc.run is not None
    tasks = {}
    last_sync_date = None
    for task in doc.ordered_tasks():
        shown = codec.task_to_dict(task)
        del shown["run_id"], shown["name"]
        tasks[task.name] = shown
        cursor = task.cursor
        if (last_sync_date is None and isinstance(cursor, dict) and cursor.get("type") == "watermark"
                and cursor.get("value_type") in ("datetime", "date")):
            last_sync_date = cursor.get("value")
    run = doc.run
    return {
        "job": run.job, "run_id": run.run_id, "key": run.key, "status": run.status.value,
        "started_at": codec.ts(run.started_at), "updated_at": codec.ts(run.updated_at),
        "last_sync_date": last_sync_date, "tasks": tasks,
    }


# -- the plan of one commit --------------------------------------------------------------------------
class _UnitPlan:
    """What one commit does to one ledger unit: clears, appended lines, the new meta.json."""

    def __init__(self, store: JsonDirStore, run_id: str, task: str, kind: LedgerKind, fresh: bool) -> None:
        self.unit = store._unit(run_id, task, kind)
        self.rel = self.unit.path.relative_to(store.directory)
        self.base = None if fresh else store._unit_meta(self.unit, run_id, task)
        if self.base is not None and self.base.journal_entries >= store.journal_limit:
            files.fsync_dir(store.directory)  # the last pending.json is gone for good (step 4)
            self.base = self.unit.compact(self.base)
        self.meta = self.base or Meta(run_id, task, _KIND_NAMES[kind]).fresh()
        self.offset = self.meta.journal_bytes
        self.deletes: list[str] = []
        self.pending: dict[str, journal.Value] = {}
        self.lines: list[bytes] = []
        self.dirty = False

    def clear(self) -> None:
        if self.base is not None and self.unit.path.is_dir():
            self.deletes = sorted(e.name for e in os.scandir(self.unit.path) if e.name != journal.META)
        self.dirty = self.dirty or self.base is not None
        self.base, self.meta, self.offset = None, self.meta.fresh(), 0
        self.pending.clear()
        self.lines.clear()

    def add(self, entries: list[LedgerEntry]) -> None:
        new_ids = {e.item_id for e in entries} - self.pending.keys()
        priors = self.unit.lookup(self.base, new_ids) if self.base is not None and new_ids else {}
        ok = failed = 0  # changes to the counts
        pending, lines, line = self.pending, self.lines, journal.entry_line
        for e in entries:
            outcome = _OK if e.ok else _RETRYABLE if e.retryable else _PERMANENT
            prior = pending.get(e.item_id) or priors.get(e.item_id)
            if prior is not None:
                ok, failed = (ok - 1, failed) if prior[0] == _OK else (ok, failed - 1)
            ok, failed = (ok + 1, failed) if outcome == _OK else (ok, failed + 1)
            pending[e.item_id] = (outcome, e.error)
            lines.append(line(e.item_id, outcome, e.error))
        self.meta = replace(self.meta, ok=self.meta.ok + ok, failed=self.meta.failed + failed)
        self.dirty = True

    def ops(self) -> list[Op]:
        if not self.dirty:
            return []
        ops: list[Op] = []
        if self.lines:
            path = str(self.rel / self.meta.journal)
            text = [line.decode("utf-8").rstrip("\n") for line in self.lines]
            ops.append({"op": "append", "path": path, "offset": self.offset, "lines": text})
            self.meta = replace(
                self.meta, journal_bytes=self.offset + sum(len(line) for line in self.lines),
                journal_entries=self.meta.journal_entries + len(self.lines),
            )
        ops.append({"op": "write", "path": str(self.rel / journal.META), "doc": self.meta.to_json()})
        ops.extend({"op": "delete", "path": str(self.rel / name)} for name in self.deletes)
        return ops

    def committed(self) -> None:
        if self.base is not None and not self.deletes:
            self.unit.note_append(self.base, self.meta, self.pending)
        else:
            self.unit.note_append(self.meta, self.meta, {})  # forget the cached journal


class _Plan:
    """Turns a ChangeSet into file operations, reading the current files it needs; writes nothing."""

    def __init__(self, store: JsonDirStore) -> None:
        self.store = store
        self.docs: dict[str, _RunDoc | None] = {}
        self.changed: set[str] = set()
        self.deleted: set[str] = set()
        self.units: dict[tuple[str, str, LedgerKind], _UnitPlan] = {}
        self.states: dict[str, dict[str, StateEntry]] = {}
        self.view_jobs: set[str] = set()
        self.samples: dict[str, dict[int, ProgressSample]] = {}  # run_id -> slot -> sample, to write

    def doc(self, run_id: str) -> _RunDoc | None:
        if run_id not in self.docs:
            self.docs[run_id] = self.store._read_doc(run_id)
        return self.docs[run_id]

    def writable_doc(self, run_id: str) -> _RunDoc:
        doc = self.doc(run_id)
        if doc is None:
            doc = self.docs[run_id] = _RunDoc(run_id)
        self.changed.add(run_id)
        if doc.run is not None:
            self.view_jobs.add(doc.run.job)
        return doc

    def build(self, changes: ChangeSet) -> list[Op]:
        for run_id in changes.run_deletes:
            self.delete_run(run_id)
        for run in changes.runs:
            self.writable_doc(run.run_id).run = run
            self.view_jobs.add(run.job)
        for task in changes.tasks:
            self.writable_doc(task.run_id).tasks[task.name] = task
        for phase in changes.phases:
            self.writable_doc(phase.run_id).phases[phase.name] = phase
        for clear in changes.ledger_clears:
            self.unit(clear.run_id, clear.task, clear.kind).clear()
        groups: dict[tuple[str, str, LedgerKind], list[LedgerEntry]] = {}
        for entry in changes.ledger:
            groups.setdefault((entry.run_id, entry.task, entry.kind), []).append(entry)
        for (run_id, name, kind), entries in groups.items():
            self.unit(run_id, name, kind).add(entries)
        for delete in changes.state_deletes:
            state = self.state(delete.job)
            if delete.key is None:
                state.clear()
            else:
                state.pop(delete.key, None)
        for bookmark in changes.state:
            self.state(bookmark.job)[bookmark.key] = bookmark
        for sample in changes.samples:
            if sample.run_id not in self.samples:
                fresh = sample.run_id in self.deleted
                self.samples[sample.run_id] = {} if fresh else self.store._read_samples(sample.run_id)
            self.samples[sample.run_id][sample.slot] = sample
        return self.ops()

    def delete_run(self, run_id: str) -> None:
        try:
            doc = self.doc(run_id)
        except CorruptState:  # deleting a damaged run is how a user gets rid of it
            doc = None
        if doc is not None and doc.run is not None:
            self.view_jobs.add(doc.run.job)
        self.view_jobs.update(self.store._summaries().jobs_of(run_id))
        self.docs[run_id] = None
        self.changed.add(run_id)
        self.deleted.add(run_id)
        for key in [k for k in self.units if k[0] == run_id]:
            del self.units[key]

    def unit(self, run_id: str, task: str, kind: LedgerKind) -> _UnitPlan:
        key = (run_id, task, kind)
        if key not in self.units:
            doc = self.doc(run_id)
            if doc is None or task not in doc.tasks:
                raise StoreError(f"ledger entry for unknown task {task!r} of run {run_id}")
            self.units[key] = _UnitPlan(self.store, run_id, task, kind, fresh=run_id in self.deleted)
        return self.units[key]

    def state(self, job: str) -> dict[str, StateEntry]:
        if job not in self.states:
            self.states[job] = self.store._read_state(job)
        return self.states[job]

    def ops(self) -> list[Op]:
        ops: list[Op] = [{"op": "rmtree", "path": f"ledger/{file_stem(r)}"} for r in sorted(self.deleted)]
        for unit in self.units.values():
            ops.extend(unit.ops())
        for run_id in sorted(self.changed):
            doc = self.docs[run_id]
            path = f"runs/{file_stem(run_id)}.json"
            ops.append({"op": "delete", "path": path} if doc is None else
                       {"op": "write", "path": path, "doc": doc.to_json()})
        for run_id in sorted(self.deleted - self.samples.keys()):
            ops.append({"op": "delete", "path": f"samples/{file_stem(run_id)}.json"})
        for run_id, slots in sorted(self.samples.items()):
            ordered = sorted(slots.values(), key=lambda p: (p.at, p.slot))
            samples = {"format": FORMAT, "run_id": run_id, "samples": [codec.sample_to_dict(p) for p in ordered]}
            ops.append({"op": "write", "path": f"samples/{file_stem(run_id)}.json", "doc": samples})
        for job, entries in sorted(self.states.items()):
            path = f"state/{file_stem(job)}.json"
            ops.append({"op": "write", "path": path, "doc": _state_to_json(job, dict(sorted(entries.items())))}
                       if entries else {"op": "delete", "path": path})
        for job in sorted(self.view_jobs):
            path = f"{file_stem(job)}.checkpoint.json"
            view = self.view(job)
            ops.append({"op": "delete", "path": path} if view is None else
                       {"op": "write", "path": path, "doc": view})
        return ops

    def view(self, job: str) -> dict[str, Any] | None:
        summaries = self.store._summaries()
        runs = dict(summaries.runs_of(job))
        for run_id in self.changed:
            doc = self.docs[run_id]
            runs.pop(run_id, None)
            if doc is not None and doc.run is not None and doc.run.job == job:
                runs[run_id] = (codec.ts(doc.run.started_at) or "", doc.run.status.value)
        candidates = sorted(
            ((started, run_id) for run_id, (started, status) in runs.items() if status != RunStatus.COMPLETED.value),
            reverse=True,
        )
        for _, run_id in candidates:
            doc = self.docs[run_id] if run_id in self.docs else self.store._read_doc(run_id, quiet=True)
            if doc is not None and doc.run is not None and doc.run.job == job and doc.run.status.resumable:
                return checkpoint_view(doc)
        return None

    def committed(self) -> None:
        for unit in self.units.values():
            unit.committed()
        summaries = self.store._runs  # if not built yet, it will be read from disk when needed
        if summaries is not None:
            for run_id in self.changed:
                summaries.update(run_id, self.docs[run_id])


class _Summaries:
    """Job → run ID → (started_at, status) of the runs this process knows, for the checkpoint view."""

    def __init__(self) -> None:
        self._jobs: dict[str, dict[str, tuple[str, str]]] = {}
        self._job_of: dict[str, str] = {}

    def jobs_of(self, run_id: str) -> list[str]:
        return [self._job_of[run_id]] if run_id in self._job_of else []

    def runs_of(self, job: str) -> dict[str, tuple[str, str]]:
        return self._jobs.get(job, {})

    def update(self, run_id: str, doc: _RunDoc | None) -> None:
        old = self._job_of.pop(run_id, None)
        if old is not None:
            self._jobs[old].pop(run_id, None)
        if doc is not None and doc.run is not None:
            self._job_of[run_id] = doc.run.job
            self._jobs.setdefault(doc.run.job, {})[run_id] = (codec.ts(doc.run.started_at) or "", doc.run.status.value)


# -- executing an intent -----------------------------------------------------------------------------
class _Execution:
    """Runs an intent's operations: removals of run ledgers, then the space-allocating writes (temp files,
    appends; invisible to readers), then the visible renames and deletes, then directory fsyncs."""

    def __init__(self, root: Path, ops: list[Op]) -> None:
        self.root = root
        self.ops = ops
        self.visible = False
        self.current: Path = root / PENDING
        self.temps: list[tuple[Path, Path]] = []
        self.dirs: set[Path] = set()

    def path(self, op: Op) -> Path:
        self.current = self.root / op["path"]
        return self.current

    def run(self) -> None:
        for op in self.ops:
            if op["op"] == "rmtree":
                self.visible = True
                with contextlib.suppress(FileNotFoundError):
                    shutil.rmtree(self.path(op))
                self.dirs.add(self.current.parent)
        for op in self.ops:
            if op["op"] == "append":
                path = self.path(op)
                files.ensure_dir(path.parent)
                data = "".join(line + "\n" for line in op["lines"]).encode("utf-8")
                if journal.append_at(path, op["offset"], data):
                    self.dirs.add(path.parent)
            elif op["op"] == "write":
                path = self.path(op)
                files.ensure_dir(path.parent)
                self.temps.append((journal.write_temp(path, journal.pretty(op["doc"])), path))
        temps = iter(self.temps)
        for op in self.ops:
            if op["op"] in ("write", "delete"):
                self.visible = True
                path = self.path(op)
                if op["op"] == "write":
                    os.replace(next(temps)[0], path)
                else:
                    journal.remove(path)
                self.dirs.add(path.parent)
        for directory in sorted(self.dirs):
            if directory.is_dir():
                self.current = directory
                files.fsync_dir(directory)

    def discard_temps(self) -> None:
        for tmp, _ in self.temps:
            with contextlib.suppress(OSError):
                journal.remove(tmp)


def _parse_intent(raw: bytes, where: Path) -> list[Op]:
    data = codec.decode_or_corrupt(raw, str(where))
    try:
        _check(isinstance(data, dict) and isinstance(data["ops"], list), "not an intent")
        _format_of(data, where)
        for op in data["ops"]:
            _check(op["op"] in ("rmtree", "append", "write", "delete"), f"unknown operation {op['op']!r}")
            parts = Path(op["path"]).parts
            _check(bool(parts) and not Path(op["path"]).is_absolute() and ".." not in parts, "bad path")
            if op["op"] == "append":
                _check(isinstance(op["offset"], int) and all(isinstance(x, str) for x in op["lines"]), "bad append")
            if op["op"] == "write":
                _check("doc" in op, "write without a document")
        return list(data["ops"])
    except _BAD_DOC as exc:
        raise corrupt(where, f"bad intent: {exc}") from None


# -- the store ---------------------------------------------------------------------------------------
class JsonDirStore(Store):
    """Checkpoints as a directory of JSON files (see the module docstring for the layout and guarantees)."""

    def __init__(
        self, directory: str | os.PathLike[str], *, journal_limit: int = JOURNAL_LIMIT, read_only: bool = False,
        create: bool = True,
    ) -> None:
        """``read_only``: for inspection, never creates or writes (only a crashed commit is still rolled
        forward, when the directory allows it); ``create=False``: a missing directory is an error (exit 64)."""
        self.directory = Path(directory)
        self.location = str(directory)
        self.read_only = read_only
        if (read_only or not create) and not self.directory.is_dir():
            raise UsageError(
                f"no checkpoint store at {self.directory}; a job's first run creates it (or `syncpoint db "
                "migrate`): run this where your job keeps its checkpoints, or pass --store URL / --checkpoint-dir DIR"
            )
        if journal_limit < 1:
            raise ValueError(f"journal_limit must be at least 1, not {journal_limit}")
        self.journal_limit = journal_limit
        self._pending = self.directory / PENDING
        self._locks = LockDirectory(self.directory / "locks")
        self._mutex = threading.RLock()
        self._lock_fd: int | None = None
        self._pid = 0
        self._indexes = IndexCache()
        self._units: OrderedDict[Path, LedgerUnit] = OrderedDict()
        self._runs: _Summaries | None = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(
                f"cannot create the checkpoint directory {self.directory}: {exc.strerror}; "
                "choose a writable --checkpoint-dir"
            ) from None
        if not self.directory.is_dir():
            raise StoreUnavailable(f"{self.directory} is not a directory; choose another --checkpoint-dir")
        with self._reading():  # completes a commit that a crash interrupted
            pass

    # -- locking and recovery ------------------------------------------------------------------------
    def _fd(self) -> int | None:
        if self._lock_fd is not None and self._pid == os.getpid():
            return self._lock_fd
        path = self.directory / "store.lock"
        try:
            fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError:
            try:  # a read-only directory: shared locks work on a read-only descriptor too
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                fd = None  # nobody can write here, so there is nobody to exclude
        self._lock_fd, self._pid = fd, os.getpid()
        return fd

    def _flock(self, operation: int) -> None:
        fd = self._fd()
        if fd is not None:
            fcntl.flock(fd, operation)

    @contextmanager
    def _reading(self) -> Iterator[None]:
        with self._mutex, self._translated("read"):
            self._flock(fcntl.LOCK_SH)
            try:
                while self._pending.exists():
                    self._flock(fcntl.LOCK_EX)
                    self._recover()
                    self._flock(fcntl.LOCK_SH)
                yield
            finally:
                self._flock(fcntl.LOCK_UN)

    @contextmanager
    def _writing(self) -> Iterator[None]:
        with self._mutex, self._translated("write"):
            self._flock(fcntl.LOCK_EX)
            try:
                self._recover()
                yield
            finally:
                self._flock(fcntl.LOCK_UN)

    @contextmanager
    def _translated(self, doing: str) -> Iterator[None]:
        """Any OSError not mapped where it happened becomes one clear line naming the file."""
        try:
            yield
        except OSError as exc:
            raise os_error(exc, exc.filename or self.directory, doing) from None

    def _recover(self) -> None:
        """Roll forward the intent of a commit whose writer died (we hold the exclusive lock)."""
        raw = journal.read_bytes(self._pending)
        if raw is None:
            return
        execution = _Execution(self.directory, _parse_intent(raw, self._pending))
        self._forget()
        try:
            execution.run()
            journal.remove(self._pending)
            files.fsync_dir(self.directory)
        except OSError as exc:
            execution.discard_temps()
            raise StoreError(
                f"cannot complete the interrupted commit recorded in {self._pending}: "
                f"{os_error(exc, execution.current)}"
            ) from None
        for folder in (self.directory, self.directory / "runs", self.directory / "state", self.directory / "samples"):
            if folder.is_dir():
                for entry in os.scandir(folder):
                    if entry.name.startswith(".") and entry.name.endswith(".tmp"):
                        journal.remove(Path(entry.path))

    def _forget(self) -> None:
        self._units.clear()
        self._runs = None

    def close(self) -> None:
        with self._mutex:
            if self._lock_fd is not None and self._pid == os.getpid():
                os.close(self._lock_fd)
            self._lock_fd = None
            self._forget()

    # -- the one write path --------------------------------------------------------------------------
    def apply(self, changes: ChangeSet) -> None:
        if not changes:
            return
        if self.read_only:
            raise StoreError(f"{self.directory} was opened read-only (for inspection); nothing was written")
        if changes.fence is not None:
            raise UsageError(f"{type(self).__name__} has no task leases; many workers on one run need PostgreSQL")
        with self._writing():
            plan = _Plan(self)
            ops = plan.build(changes)
            intent = codec.dumps({"format": FORMAT, "ops": ops}).encode("utf-8")
            try:
                journal.write_atomic(self._pending, intent)
            except OSError as exc:
                raise os_error(exc, self._pending) from None
            self._execute(ops)
            plan.committed()

    def _execute(self, ops: list[Op]) -> None:
        execution = _Execution(self.directory, ops)
        try:
            execution.run()
        except BaseException as exc:
            execution.discard_temps()
            self._forget()
            if not execution.visible:
                with contextlib.suppress(OSError):
                    journal.remove(self._pending)
                    files.fsync_dir(self.directory)
            if not isinstance(exc, OSError):
                raise
            error = os_error(exc, execution.current)
            if self._pending.exists():
                raise type(error)(
                    f"{error}; the commit is recorded in {self._pending} and will be completed "
                    "the next time the store is used"
                ) from None
            raise error from None
        try:  # no fsync of the directory here: see step 4 in the module docstring
            journal.remove(self._pending)
        except OSError as exc:
            raise os_error(exc, self._pending) from None

    # -- reading files -------------------------------------------------------------------------------
    def _read_doc(self, run_id: str, *, quiet: bool = False) -> _RunDoc | None:
        path = self.directory / "runs" / f"{file_stem(run_id)}.json"
        try:
            raw = journal.read_bytes(path)
            if raw is None:
                return None
            return _RunDoc.from_json(codec.decode_or_corrupt(raw, str(path)), path, run_id)
        except CorruptState:
            if quiet:
                return None
            raise

    def _all_docs(self) -> Iterator[_RunDoc]:
        folder = self.directory / "runs"
        if not folder.is_dir():
            return
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            if entry.name.startswith(".") or not entry.name.endswith(".json"):
                continue
            path = Path(entry.path)
            raw = journal.read_bytes(path)
            if raw is not None:
                data = codec.decode_or_corrupt(raw, str(path))
                run_id = data.get("run_id") if isinstance(data, dict) else None
                if not isinstance(run_id, str) or f"{file_stem(run_id)}.json" != entry.name:
                    raise corrupt(path, "its run_id does not match its file name")
                yield _RunDoc.from_json(data, path, run_id)

    def _summaries(self) -> _Summaries:
        if self._runs is None:
            runs = _Summaries()
            folder = self.directory / "runs"
            names = sorted(os.listdir(folder)) if folder.is_dir() else []
            for name in names:
                if name.endswith(".json") and not name.startswith("."):
                    with contextlib.suppress(StoreError):
                        raw = journal.read_bytes(folder / name)
                        data = codec.decode_or_corrupt(raw or b"", str(folder / name))
                        run_id = str(data["run_id"]) if isinstance(data, dict) else ""
                        runs.update(run_id, _RunDoc.from_json(data, folder / name, run_id))
            self._runs = runs
        return self._runs

    def _read_state(self, job: str) -> dict[str, StateEntry]:
        path = self.directory / "state" / f"{file_stem(job)}.json"
        raw = journal.read_bytes(path)
        if raw is None:
            return {}
        return _state_from_json(codec.decode_or_corrupt(raw, str(path)), path, job)

    def _read_samples(self, run_id: str) -> dict[int, ProgressSample]:
        path = self.directory / "samples" / f"{file_stem(run_id)}.json"
        raw = journal.read_bytes(path)
        if raw is None:
            return {}
        data = codec.decode_or_corrupt(raw, str(path))
        try:
            _check(isinstance(data, dict) and data.get("run_id") == run_id, f"not the samples of run {run_id}")
            _format_of(data, path)
            found = [codec.sample_from_dict(item) for item in data["samples"]]
        except _BAD_DOC as exc:
            raise corrupt(path, f"bad samples document: {exc}") from None
        return {p.slot: p for p in found}

    def _unit(self, run_id: str, task: str, kind: LedgerKind) -> LedgerUnit:
        path = self.directory / "ledger" / file_stem(run_id) / task_dir(task, kind)
        unit = self._units.get(path)
        if unit is None:
            unit = self._units[path] = LedgerUnit(path, self._indexes)
            if len(self._units) > 16:  # each holds at most one journal (journal_limit entries)
                self._units.popitem(last=False)
        else:
            self._units.move_to_end(path)
        return unit

    def _unit_meta(self, unit: LedgerUnit, run_id: str, task: str) -> Meta | None:
        meta = unit.read_meta()
        if meta is not None and (meta.run_id != run_id or meta.task != task):
            raise corrupt(unit.path / journal.META, f"it belongs to task {meta.task!r} of run {meta.run_id}")
        return meta

    # -- reads ---------------------------------------------------------------------------------------
    def get_run(self, run_id: str) -> RunRecord | None:
        with self._reading():
            doc = self._read_doc(run_id)
            return None if doc is None else doc.run

    def list_runs(
        self,
        job: str | None = None,
        *,
        statuses: Sequence[RunStatus] | None = None,
        key: str | None = None,
        limit: int | None = None,
    ) -> list[RunRecord]:
        wanted = None if statuses is None else {RunStatus(s) for s in statuses}
        with self._reading():
            runs = [doc.run for doc in self._all_docs() if doc.run is not None]
        runs = [
            r for r in runs
            if (job is None or r.job == job) and (wanted is None or r.status in wanted)
            and (key is None or r.key == key)
        ]
        runs.sort(key=lambda r: (codec.ts(r.started_at) or "", r.run_id), reverse=True)
        return runs if limit is None or limit < 0 else runs[:limit]

    def latest_runs(
        self, per_job: int = 1, *, statuses: Sequence[RunStatus] | None = None, jobs: Sequence[str] | None = None
    ) -> list[RunHead]:
        """One pass over the run documents (the default would read them all once per job)."""
        chosen = None if jobs is None else set(jobs)
        found: dict[str, list[RunHead]] = {}
        for run in self.list_runs(statuses=statuses):  # newest first
            if chosen is not None and run.job not in chosen:
                continue
            kept = found.setdefault(run.job, [])
            if len(kept) < per_job:
                kept.append(RunHead.of(run))
        return [head for job in sorted(found) for head in found[job]]

    def get_samples(self, run_id: str) -> list[ProgressSample]:
        with self._reading():
            found = self._read_samples(run_id)
        return sorted(found.values(), key=lambda p: (p.at, p.slot))

    def get_tasks(self, run_id: str) -> list[TaskRecord]:
        with self._reading():
            doc = self._read_doc(run_id)
            return [] if doc is None else doc.ordered_tasks()

    def get_phases(self, run_id: str) -> list[PhaseRecord]:
        with self._reading():
            doc = self._read_doc(run_id)
            return [] if doc is None else doc.ordered_phases()

    def ledger_lookup(
        self, run_id: str, task: str, item_ids: Sequence[str], kind: LedgerKind = LedgerKind.ITEMS
    ) -> dict[str, ItemOutcome]:
        with self._reading():
            unit = self._unit(run_id, task, kind)
            meta = self._unit_meta(unit, run_id, task)
            if meta is None:
                return {}
            found = unit.lookup(meta, set(item_ids))
        return {item: ItemOutcome(value[0]) for item, value in found.items()}

    def ledger_counts(self, run_id: str, task: str, kind: LedgerKind = LedgerKind.ITEMS) -> LedgerCounts:
        with self._reading():
            meta = self._unit_meta(self._unit(run_id, task, kind), run_id, task)
        return LedgerCounts(0, 0) if meta is None else LedgerCounts(meta.ok, meta.failed)

    def ledger_failed(self, run_id: str, task: str) -> Iterator[FailedItem]:
        for entry in self.iter_ledger(run_id, task):
            if not entry.ok:
                yield FailedItem(entry.item_id, entry.error, entry.retryable)

    def iter_ledger(self, run_id: str, task: str, kind: LedgerKind = LedgerKind.ITEMS) -> Iterator[LedgerEntry]:
        """Streams a snapshot taken at the first ``next()``: the journal copied, the segments held open."""
        with self._reading():
            unit = self._unit(run_id, task, kind)
            meta = self._unit_meta(unit, run_id, task)
            if meta is None:
                return
            snapshot = unit.snapshot(meta)
        try:
            for item, (outcome, error) in snapshot.entries():
                yield LedgerEntry(
                    run_id, task, item, outcome == ItemOutcome.OK, error,
                    outcome == ItemOutcome.FAILED_RETRYABLE, kind,
                )
        finally:
            snapshot.close()

    def get_state(self, job: str) -> list[StateEntry]:
        with self._reading():
            entries = self._read_state(job)
        return [entries[key] for key in sorted(entries)]

    def list_jobs(self) -> list[str]:
        with self._reading():
            jobs = {doc.run.job for doc in self._all_docs() if doc.run is not None}
            folder = self.directory / "state"
            for entry in os.scandir(folder) if folder.is_dir() else []:
                if entry.name.endswith(".json") and not entry.name.startswith("."):
                    path = Path(entry.path)
                    data = codec.decode_or_corrupt(journal.read_bytes(path) or b"", str(path))
                    job = data.get("job") if isinstance(data, dict) else None
                    if not isinstance(job, str):
                        raise corrupt(path, "no job name in the state document")
                    if _state_from_json(data, path, job):
                        jobs.add(job)
        return sorted(jobs)

    # -- locks ---------------------------------------------------------------------------------------
    def lock(self, job: str, run_id: str | None = None) -> JobLock:
        return self._locks.acquire(job, run_id)

    def lock_holder(self, job: str) -> LockHolder | None:
        return self._locks.holder(job)

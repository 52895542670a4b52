"""Records to and from plain JSON dicts: the JSON-directory store's files and ``export``/``import``.

One codec so that every place that writes records as JSON writes the same shape, and a round trip through
any of them gives back equal records.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from syncpoint.errors import CorruptState, UsageError
from syncpoint.model import (
    LedgerEntry,
    LedgerKind,
    PhaseRecord,
    ProgressSample,
    RunRecord,
    RunStatus,
    StateEntry,
    TaskRecord,
    TaskStatus,
)


def dumps(value: object) -> str:
    """Canonical JSON: sorted keys, no NaN — the same value always gives the same text (digests)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def check_json(value: object, what: str) -> None:
    """Refuse, with a usage error naming ``what``, a value that cannot be stored as JSON."""
    try:
        dumps(value)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{what} must be JSON-serialisable: {exc}") from None


def ts(value: datetime | None) -> str | None:
    """ISO 8601 in UTC, so stored timestamps sort as text in time order (naive values are taken as UTC)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat()


def parse_ts(value: object) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"timestamp must be a string, got {type(value).__name__}")
    return datetime.fromisoformat(value)


def run_to_dict(run: RunRecord) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "job": run.job,
        "key": run.key,
        "status": run.status.value,
        "config": run.config,
        "config_digest": run.config_digest,
        "params": run.params,
        "started_at": ts(run.started_at),
        "updated_at": ts(run.updated_at),
        "ended_at": ts(run.ended_at),
        "attempts": run.attempts,
        "error": run.error,
        "exit_code": run.exit_code,
    }


def run_from_dict(data: dict[str, Any]) -> RunRecord:
    started = parse_ts(data["started_at"])
    updated = parse_ts(data["updated_at"])
    assert started is not None and updated is not None
    return RunRecord(
        run_id=str(data["run_id"]),
        job=str(data["job"]),
        key=_opt_str(data.get("key")),
        status=RunStatus(data["status"]),
        config=_dict(data.get("config", {})),
        config_digest=str(data["config_digest"]),
        params=_dict(data.get("params", {})),
        started_at=started,
        updated_at=updated,
        ended_at=parse_ts(data.get("ended_at")),
        attempts=_int(data.get("attempts", 1)),
        error=_opt_str(data.get("error")),
        exit_code=None if data.get("exit_code") is None else _int(data["exit_code"]),
    )


def task_to_dict(task: TaskRecord) -> dict[str, Any]:
    return {
        "run_id": task.run_id,
        "name": task.name,
        "position": task.position,
        "status": task.status.value,
        "cursor": task.cursor,
        "pages": task.pages,
        "records": task.records,
        "ok": task.ok,
        "failed": task.failed,
        "total": task.total,
        "error": task.error,
        "retryable": task.retryable,
        "started_at": ts(task.started_at),
        "updated_at": ts(task.updated_at),
        "completed_at": ts(task.completed_at),
    }


def task_from_dict(data: dict[str, Any]) -> TaskRecord:
    return TaskRecord(
        run_id=str(data["run_id"]),
        name=str(data["name"]),
        position=_int(data["position"]),
        status=TaskStatus(data["status"]),
        cursor=data.get("cursor"),
        pages=_int(data.get("pages", 0)),
        records=_int(data.get("records", 0)),
        ok=_int(data.get("ok", 0)),
        failed=_int(data.get("failed", 0)),
        total=None if data.get("total") is None else _int(data["total"]),
        error=_opt_str(data.get("error")),
        retryable=bool(data.get("retryable", False)),
        started_at=parse_ts(data.get("started_at")),
        updated_at=parse_ts(data.get("updated_at")),
        completed_at=parse_ts(data.get("completed_at")),
    )


def phase_to_dict(phase: PhaseRecord) -> dict[str, Any]:
    return {
        "run_id": phase.run_id,
        "name": phase.name,
        "position": phase.position,
        "completed_at": ts(phase.completed_at),
    }


def phase_from_dict(data: dict[str, Any]) -> PhaseRecord:
    return PhaseRecord(
        run_id=str(data["run_id"]),
        name=str(data["name"]),
        position=_int(data["position"]),
        completed_at=parse_ts(data.get("completed_at")),
    )


def ledger_to_dict(entry: LedgerEntry) -> dict[str, Any]:
    return {
        "run_id": entry.run_id,
        "task": entry.task,
        "item_id": entry.item_id,
        "ok": entry.ok,
        "error": entry.error,
        "retryable": entry.retryable,
        "kind": int(entry.kind),
    }


def ledger_from_dict(data: dict[str, Any]) -> LedgerEntry:
    return LedgerEntry(
        run_id=str(data["run_id"]),
        task=str(data["task"]),
        item_id=str(data["item_id"]),
        ok=bool(data["ok"]),
        error=_opt_str(data.get("error")),
        retryable=bool(data.get("retryable", False)),
        kind=LedgerKind(int(data.get("kind", 0))),
    )


def state_to_dict(entry: StateEntry) -> dict[str, Any]:
    return {"job": entry.job, "key": entry.key, "value": entry.value, "updated_at": ts(entry.updated_at)}


def state_from_dict(data: dict[str, Any]) -> StateEntry:
    updated = parse_ts(data["updated_at"])
    assert updated is not None
    return StateEntry(job=str(data["job"]), key=str(data["key"]), value=data.get("value"), updated_at=updated)


def sample_to_dict(sample: ProgressSample) -> dict[str, Any]:
    return {
        "run_id": sample.run_id, "slot": sample.slot, "at": ts(sample.at), "items_ok": sample.items_ok,
        "items_failed": sample.items_failed, "records": sample.records, "pages": sample.pages,
    }


def sample_from_dict(data: dict[str, Any]) -> ProgressSample:
    at = parse_ts(data["at"])
    if at is None:
        raise ValueError("a progress sample needs 'at'")
    return ProgressSample(
        run_id=str(data["run_id"]), slot=_int(data["slot"]), at=at, items_ok=_int(data.get("items_ok", 0)),
        items_failed=_int(data.get("items_failed", 0)), records=_int(data.get("records", 0)),
        pages=_int(data.get("pages", 0)),
    )


def decode_or_corrupt(text: str | bytes, where: str) -> Any:
    """Parse JSON read back from a store, turning damage into one clear ``CorruptState`` line."""
    try:
        return json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptState(
            f"checkpoint state in {where} is corrupt ({exc.__class__.__name__}: {exc}); "
            "it was left untouched: move it aside to start over, or restore it from a backup"
        ) from None


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def _opt_str(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value


def _dict(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"expected an object, got {value!r}")
    return value

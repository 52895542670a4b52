"""``RunOptions`` is a validated value: it cannot be changed in place (which would skip the validation), a
changed copy is validated again, and its params are its own."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import syncpoint


def test_options_cannot_be_changed_in_place() -> None:
    options = syncpoint.RunOptions(max_items=10)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.max_items = 0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.resume = True  # type: ignore[misc]
    assert options.max_items == 10 and not options.resume


@pytest.mark.parametrize(("changes", "message"), [
    ({"max_items": 0}, "--max-items must be a positive number"),
    ({"resume": True, "new_run": True}, "--resume and --new-run cannot be combined"),
    ({"log_format": "xml"}, "--log-format must be text or json"),
    ({"key": "bad\nkey"}, "run key"),
])
def test_replace_validates_the_changed_options(changes: dict[str, object], message: str) -> None:
    options = syncpoint.RunOptions(max_items=10, log_format="text")
    with pytest.raises(syncpoint.UsageError, match=message):
        dataclasses.replace(options, **changes)  # type: ignore[arg-type]
    assert dataclasses.replace(options, max_items=5).max_items == 5


def test_job_run_overrides_are_validated(tmp_path: Path) -> None:
    job = syncpoint.Job("job", store=f"sqlite:{tmp_path / 'cp.db'}")
    with pytest.raises(syncpoint.UsageError, match="--max-seconds must be a positive number"):
        job.run(syncpoint.RunOptions(resume=True), max_seconds=-1)
    assert job.runs() == []  # refused before a run was opened


def test_params_are_a_read_only_copy(tmp_path: Path) -> None:
    given = {"since": "2024-01-01"}
    options = syncpoint.RunOptions(params=given)
    given["since"] = "changed later by the caller"
    with pytest.raises(TypeError):
        options.params["since"] = "changed by a holder"  # type: ignore[index]
    assert options.params == {"since": "2024-01-01"}
    more = dataclasses.replace(options, params={**options.params, "limit": 5})
    assert more.params == {"since": "2024-01-01", "limit": 5} and options.params == {"since": "2024-01-01"}
    job = syncpoint.Job("job", store=f"sqlite:{tmp_path / 'cp.db'}")
    with job.run(more) as run:
        pass
    assert job.store.get_run(run.run_id).params == {"since": "2024-01-01", "limit": 5}  # type: ignore[union-attr]

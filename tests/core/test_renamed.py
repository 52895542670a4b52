"""The names renamed for 0.2 (docs/API.md, "Names"): each old name that an example or the docs used still
works, the same as the new one, and warns with a ``DeprecationWarning`` that names its replacement."""

from __future__ import annotations

import pytest

import syncpoint
from syncpoint import TaskStatus


def test_task_status_completed_keeps_the_stored_value() -> None:
    assert TaskStatus.COMPLETED.value == "complete"  # what every store holds: no migration
    assert TaskStatus("complete") is TaskStatus.COMPLETED
    assert [s.name for s in TaskStatus] == ["PENDING", "IN_PROGRESS", "COMPLETED", "FAILED"]


def test_task_status_complete_warns_and_is_the_same_member() -> None:
    with pytest.warns(DeprecationWarning, match=r"TaskStatus\.COMPLETE is deprecated; use TaskStatus\.COMPLETED"):
        old = TaskStatus.COMPLETE  # type: ignore[attr-defined]
    assert old is TaskStatus.COMPLETED is syncpoint.TaskStatus.COMPLETED
    with pytest.raises(AttributeError, match="no attribute 'COMPLET'"):
        _ = TaskStatus.COMPLET  # type: ignore[attr-defined]

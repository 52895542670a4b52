"""Job state (bookmarks): values that outlive runs, e.g. a user's ``last_tweet_id``.

Reads come from the snapshot taken when the run opened; writes are buffered and committed with the run's
next commit — so a bookmark moves forward in the same transaction as the progress it describes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from syncpoint.model import JSON, StateEntry, utcnow
from syncpoint.names import check_value_name
from syncpoint.stores.base import ChangeSet, StateDelete

if TYPE_CHECKING:
    from syncpoint.run import Run


class JobState:
    def __init__(self, job: str, run: Run) -> None:
        self.job = job
        self._run = run
        self._values: dict[str, JSON] = {}
        self._set: dict[str, StateEntry] = {}
        self._deleted: set[str] = set()

    def _load(self, entries: list[StateEntry]) -> None:
        self._values = {e.key: e.value for e in entries}

    def get(self, key: str, default: JSON = None) -> JSON:
        return self._values.get(key, default)

    def __getitem__(self, key: str) -> JSON:
        return self._values[key]

    def __contains__(self, key: str) -> bool:
        return key in self._values

    def all(self) -> dict[str, JSON]:
        return dict(self._values)

    def set(self, key: str, value: JSON, *, commit: bool = False) -> None:
        """Set a bookmark; it is committed with the next commit (now, with ``commit=True``)."""
        check_value_name(key, "state key")
        self._run._check_json(value, f"state value for {key!r}")
        self._values[key] = value
        self._deleted.discard(key)
        self._set[key] = StateEntry(self.job, key, value, utcnow())
        if commit:
            self._run.commit()

    def delete(self, key: str) -> None:
        self._values.pop(key, None)
        self._set.pop(key, None)
        self._deleted.add(key)

    def _take_changes(self, changes: ChangeSet) -> None:
        changes.state_deletes.extend(StateDelete(self.job, key) for key in sorted(self._deleted))
        changes.state.extend(self._set.values())

    def _committed(self) -> None:
        self._set.clear()
        self._deleted.clear()

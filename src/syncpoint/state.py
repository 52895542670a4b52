"""Job state (bookmarks): values that outlive runs, e.g. a user's ``last_tweet_id``.

Reads come from the snapshot taken when the run opened (and this run's own writes); writes go to the run's
change buffer and are committed with its next commit — so a bookmark moves forward in the same transaction
as the progress it describes. Safe from any thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from syncpoint.buffer import ChangeBuffer
from syncpoint.codec import check_json
from syncpoint.model import JSON, StateEntry, utcnow
from syncpoint.names import check_value_name


class JobState:
    def __init__(self, job: str, buffer: ChangeBuffer, entries: list[StateEntry], commit: Callable[[], None]) -> None:
        self.job = job
        self._buffer = buffer
        self._commit = commit
        self._mu = threading.Lock()
        self._values: dict[str, JSON] = {e.key: e.value for e in entries}

    def get(self, key: str, default: JSON = None) -> JSON:
        return self._values.get(key, default)

    def __getitem__(self, key: str) -> JSON:
        return self._values[key]

    def __contains__(self, key: str) -> bool:
        return key in self._values

    def all(self) -> dict[str, JSON]:
        with self._mu:
            return dict(self._values)

    def set(self, key: str, value: JSON, *, commit: bool = False) -> None:
        """Set a bookmark; it is committed with the next commit (now, with ``commit=True``)."""
        check_value_name(key, "state key")
        check_json(value, f"state value for {key!r}")
        with self._mu:
            self._values[key] = value
            self._buffer.set_state(StateEntry(self.job, key, value, utcnow()))
        if commit:
            self._commit()

    def delete(self, key: str) -> None:
        with self._mu:
            self._values.pop(key, None)
            self._buffer.delete_state(key)

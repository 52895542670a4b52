"""Committing: one commit at a time, in the store or inside the user's own transaction, after a lock check.

The committer owns the commit lock. A commit takes the pending change set from the buffer (progress keeps
flowing into a fresh one meanwhile), re-checks a lock that can be lost, applies the changes — plainly, or
inside a bound connection's transaction followed by that connection's commit — and tells the buffer how it
went. A failed commit leaves the changes pending for the next try; a failed commit in a bound transaction
*taints* the run: the rows and the progress went together, so only the run's status is written from then on.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from syncpoint.buffer import ChangeBuffer
from syncpoint.errors import StoreError, SyncpointError, UsageError
from syncpoint.model import RunRecord
from syncpoint.stores.base import ChangeSet, JobLock, Store

#: Something to write in a commit's own transaction, given its connection (``Committer.commit``).
Also = Callable[[Any], None]


class Committer:
    """Applies the buffer's changes to the store, one commit at a time, from any thread."""

    def __init__(self, store: Store, buffer: ChangeBuffer, describe_lost: Callable[[], str]) -> None:
        self.store = store
        self.buffer = buffer
        self.lock: JobLock | None = None
        self.connection: object | None = None
        self.tainted = False
        self.committed_at: datetime | None = None
        self._describe_lost = describe_lost
        self._lost = False
        self._mu = threading.RLock()
        #: Called with each change set just before it is applied (progress samples and the like hook in here).
        self.before_apply: list[Callable[[ChangeSet], None]] = []

    def bind(self, connection: object) -> None:
        if type(self.store).apply_in is Store.apply_in:
            raise UsageError(f"{type(self.store).__name__} cannot commit inside another transaction; use PostgreSQL")
        self.connection = connection

    def unbind(self) -> None:
        """Commit through the store's own connections from now on (the bound connection is the caller's)."""
        self.connection = None

    @property
    def serial(self) -> threading.RLock:
        """The commit lock: held while a commit runs (and by a caller that must not interleave with one)."""
        return self._mu

    def commit(self, run: RunRecord | None, *, also: Also | None = None) -> None:
        """Commit ``run`` (its record as given; None writes no run record) and everything pending.

        ``also(connection)`` runs in the same transaction after the changes (on the bound connection, or on
        one of the store's own: PostgreSQL), for writes that must commit with them or not at all — such as
        deferring the queue job that continues a task another worker will take over.
        """
        with self._mu:
            changes = self.buffer.take(run, progress=not self.tainted)
            try:
                for hook in self.before_apply:
                    hook(changes)
                if run is not None:
                    self._confirm_lock(run)
                self._apply(changes, also)
            except BaseException:
                if self.tainted:
                    self.buffer.discard()
                else:
                    self.buffer.restore()
                raise
            self.buffer.committed()
            if run is not None:
                self.committed_at = run.updated_at

    def _confirm_lock(self, run: RunRecord) -> None:
        """Before writing: a lock that can be lost (PostgreSQL, a terminated session) is re-checked.

        If it was lost and re-taken, another process may have worked on the run meanwhile; if the stored run
        changed since our last commit, writing our in-memory state over it would mix two writers' work.
        """
        if not self._lost:
            if self.lock is None or self.lock.check():
                return
            stored = self.store.get_run(run.run_id)
            if self.committed_at is None or (stored is not None and stored.updated_at == self.committed_at):
                return
            self._lost = True  # never write again, not even the run's final status
        raise StoreError(self._describe_lost())

    def _apply(self, changes: ChangeSet, also: Also | None) -> None:
        conn: Any = self.connection
        if conn is None or self.tainted:  # after a rollback only the run's status is written, on its own
            if also is None:
                self.store.apply(changes)
                return
            with self.store.transaction() as own:
                self.store.apply_in(own, changes)
                also(own)
            return
        try:
            self.store.apply_in(conn, changes)
            if also is not None:
                also(conn)
            conn.commit()
        except SyncpointError:
            self.abandon_transaction()
            raise
        except Exception as exc:  # the bound connection broke (server gone, backend terminated, closed)
            self.abandon_transaction()
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StoreError(
                f"the bound destination connection failed while committing the checkpoint ({first}); "
                "its rows and the progress since the last commit were rolled back together; resume to redo them"
            ) from None
        except BaseException:
            self.abandon_transaction()
            raise

    def abandon_transaction(self) -> None:
        """Roll back the bound connection; progress buffered since the last commit went with it."""
        conn: Any = self.connection
        if conn is not None and not self.tainted:
            try:
                conn.rollback()
            except Exception:
                pass
            finally:
                self.tainted = True
                self.buffer.discard()

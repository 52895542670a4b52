"""Task leases for people (a table, ages like ``12s ago``) and scripts (a ``lease`` object per task).

Used by ``syncpoint status`` and ``syncpoint runs show`` (through ``syncpoint.report``) for runs shared by
many workers (``syncpoint.distributed``); runs without leases never reach this module, so they look as they
always did. The JSON shape is documented in docs/CLI.md ("JSON shapes").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from syncpoint import codec
from syncpoint.liveness import age_seconds, holder_text, is_live
from syncpoint.model import LeaseInfo, LeaseState
from syncpoint.tables import Column, FittedTable


def ago(seconds: float | None) -> str:
    """``12s ago``, ``3m05s ago``, ``2h10m ago``, ``4d03h ago``; ``-`` for never."""
    if seconds is None:
        return "-"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s ago"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s ago"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m ago"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h ago"


def lease_to_dict(lease: LeaseInfo) -> dict[str, Any]:
    """A task's ``lease`` object: the stored lease, ISO timestamps, and its ages in seconds (store's clock)."""
    lease_age = age_seconds(lease, lease.leased_at)
    heartbeat_age = age_seconds(lease, lease.heartbeat_at)
    return {
        "state": lease.state.value,
        "epoch": lease.epoch,
        "live": is_live(lease),
        "host": lease.host,
        "pid": lease.pid,
        "worker": lease.worker,
        "leased_at": codec.ts(lease.leased_at),
        "heartbeat_at": codec.ts(lease.heartbeat_at),
        "queued_at": codec.ts(lease.queued_at),
        "lease_age_seconds": None if lease_age is None else round(lease_age, 3),
        "heartbeat_age_seconds": None if heartbeat_age is None else round(heartbeat_age, 3),
        "commits": lease.commits,
        "failures": lease.failures,
        "takeovers": lease.takeovers,
    }


def counts(leases: Sequence[LeaseInfo]) -> dict[str, int]:
    """How many leases are in each state, and how many are live: a run's ``leases`` in ``status --json``."""
    found = Counter(lease.state.value for lease in leases)
    return {**{state.value: found[state.value] for state in LeaseState},
            "live": sum(is_live(lease) for lease in leases)}


def counts_text(leases: Sequence[LeaseInfo]) -> str:
    """``2 leased · 5 queued · 12 finished`` (the states that occur, in that order)."""
    found = counts(leases)
    order = (LeaseState.LEASED, LeaseState.QUEUED, LeaseState.FINISHED)
    return " · ".join(f"{found[s.value]} {s.value}" for s in order if found[s.value]) or "no leases"


def lease_table(leases: Sequence[LeaseInfo], *, title: str | None) -> FittedTable:
    """One row per lease: task, state, epoch, holder, lease age, heartbeat age; the takeovers and failed
    attempts columns only when some lease has any (at 80 columns the ages go before the holder does)."""
    columns = [
        Column("task", fold=True), Column("state"), Column("epoch", justify="right"),
        Column("worker", fold=True), Column("heartbeat", rank=1), Column("leased", rank=2),
    ]
    extra = [(name, attr) for name, attr in (("takeovers", "takeovers"), ("failed", "failures"))
             if any(getattr(lease, attr) for lease in leases)]
    columns += [Column(name, rank=3, justify="right") for name, _ in extra]
    table = FittedTable(columns, title=title, hint="see --json")
    for lease in leases:
        cells = [
            lease.task, lease.state.value, str(lease.epoch), holder_text(lease),
            ago(age_seconds(lease, lease.heartbeat_at)), ago(age_seconds(lease, lease.leased_at)),
            *(str(getattr(lease, attr) or "") for _, attr in extra),
        ]
        stale = lease.state is LeaseState.LEASED and not is_live(lease)
        table.add_row(*cells, style="yellow" if stale else None)
    return table

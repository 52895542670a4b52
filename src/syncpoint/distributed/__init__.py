"""Many workers on one run, on any number of machines: procrastinate's queue plus syncpoint's task leases.

    pip install 'syncpoint[procrastinate]'

See ``syncpoint.distributed.fleet`` for the shape of a program and docs/ARCHITECTURE.md ("Many workers") for
the lease model: epochs that fence a worker presumed dead, heartbeats, the stall timeout, who re-queues what.
"""

from __future__ import annotations

from syncpoint.extras import missing

try:
    import procrastinate  # noqa: F401 - only to say which extra is missing, in one line
except ModuleNotFoundError as exc:
    raise missing("syncpoint.distributed", exc) from None

from syncpoint.distributed.fleet import DEFAULT_STALL_TIMEOUT, Fleet
from syncpoint.distributed.worker_run import Attempts, Ending, WorkerRun
from syncpoint.errors import LeaseLost

__all__ = ["DEFAULT_STALL_TIMEOUT", "Attempts", "Ending", "Fleet", "LeaseLost", "WorkerRun"]

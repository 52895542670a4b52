"""Progress samples: a run's totals recorded at some commits, bounded in rate and in number.

The dashboard draws a run's records per second from them. The runtime calls ``due(run)`` from
``Run._commit`` (one line); it returns a sample to add to that commit's change set when one is due:

* at most one per ``SAMPLE_SECONDS`` (the interval doubles each time the run's set is thinned out), and
  always at the run's final commit (its status is no longer ``running``);
* at most ``MAX_SAMPLES`` per run: when the set is full, every other sample (in time order) gives up its
  slot to the ones that follow, so a run of any length keeps an evenly spread history of bounded size.

The cost on the commit path is a dictionary lookup and a clock read, except when a sample is due: then it
sums the counters of the run's tasks (a few attributes per task), at most once per interval.

The first sample of a run also reads the run's stored samples (one query), so a resumed run continues the
set, and starts the metrics exporter when the run was started with ``--metrics-port``.
"""

from __future__ import annotations

import logging
import time
import weakref
from typing import TYPE_CHECKING

from syncpoint.model import ProgressSample, RunStatus, utcnow

if TYPE_CHECKING:
    from syncpoint.run import Run

SAMPLE_SECONDS = 1.0
MAX_SAMPLES = 512

log = logging.getLogger("syncpoint.samples")


class Sampler:
    """The sample schedule of one run: which slots are used, in time order, and when the next is due."""

    def __init__(self, run_id: str, *, interval: float = SAMPLE_SECONDS, cap: int = MAX_SAMPLES) -> None:
        if cap < 2:
            raise ValueError(f"cap must be at least 2, not {cap}")
        self.run_id = run_id
        self.interval = interval
        self.cap = cap
        self.order: list[int] = []  # used slots, oldest sample first
        self.free: list[int] = []  # slots given up by thinning, reused in this order
        self.next_at = 0.0  # monotonic time of the next due sample
        self.loaded = False

    def load(self, stored: list[ProgressSample]) -> None:
        """Continue a resumed run's set: its samples, oldest first."""
        self.order = [s.slot for s in stored if 0 <= s.slot < self.cap]
        self.loaded = True

    def due(self, now: float, final: bool) -> bool:
        return final or now >= self.next_at

    def next_slot(self, now: float) -> int:
        """The slot for a sample taken now (thinning the set first if it is full)."""
        if not self.free and len(self.order) >= self.cap:
            self.free = self.order[1::2]
            self.order = self.order[0::2]
            self.interval *= 2
        if self.free:
            slot = self.free.pop(0)
        else:
            used = set(self.order)
            slot = next(n for n in range(self.cap) if n not in used)
        self.order.append(slot)
        self.next_at = now + self.interval
        return slot

    def take(self, run: Run, now: float) -> ProgressSample:
        ok = failed = records = pages = 0
        for task in run.task_records():
            ok += task.ok
            failed += task.failed
            records += task.records
            pages += task.pages
        slot = self.next_slot(now)
        return ProgressSample(self.run_id, slot, utcnow(), ok, failed, records, pages)


_samplers: weakref.WeakKeyDictionary[Run, Sampler] = weakref.WeakKeyDictionary()


def due(run: Run) -> list[ProgressSample]:
    """The samples to add to the commit ``run`` is making now (none, or one)."""
    sampler = _samplers.get(run)
    now = time.monotonic()
    if sampler is not None and sampler.run_id == run.run_id:
        if not sampler.due(now, run.record.status is not RunStatus.RUNNING):
            return []
    else:
        sampler = _samplers[run] = Sampler(run.run_id, interval=SAMPLE_SECONDS, cap=MAX_SAMPLES)
        _first_commit(run, sampler)
    return [sampler.take(run, now)]


def _first_commit(run: Run, sampler: Sampler) -> None:
    if run.resumed:
        sampler.load(run.store.get_samples(run.run_id))
    port = getattr(run.options, "metrics_port", None)
    if port:
        from syncpoint.web.exporter import start_exporter  # needs the web extra (checked when parsing flags)

        start_exporter(run.store, run.job.name, port)

"""Progress while a run goes: a live display on a terminal, periodic log lines elsewhere, or nothing.

    with job.run(options) as run, progress.track(run, options):
        ...

A daemon thread samples the run's in-memory tasks about twice a second (``Run.task_records``: a side-effect-free read
of each task's record and counters) and renders them; the run's hot path is not touched at all. Modes:

    live   a rich display on stderr: one line for the run, one per active task (bar, done/total, rec/s, ETA)
    log    one INFO line on logger ``syncpoint.progress`` every ``interval`` seconds (default 10) — CI, cron,
           Cloud Run — e.g. ``progress drucksachen: 750/1000 (75.0%) · 120.5 rec/s · ETA 0:02:04 · 5 failed``;
           the numbers are also attached to the record (``extra``) for JSON logs
    off    nothing

The numbers are ``syncpoint.progress_numbers``; a live frame is ``syncpoint.progress_view`` (it fits the
terminal's width); ``syncpoint.live_term`` keeps other writers to the terminal (the signal handler's line)
out of the middle of a frame. The live display ends with one final frame that says how the run ended.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from syncpoint.errors import EXIT_PARTIAL, Stopped
from syncpoint.model import TaskRecord, TaskStatus
from syncpoint.progress_numbers import Rate, Totals, clock, describe, describe_active, eta, processed
from syncpoint.progress_view import MAX_TASK_ROWS, Frame, FrameData

if TYPE_CHECKING:
    from rich.console import Console
    from rich.live import Live

    from syncpoint.live_term import SignalChain, StderrCapture
    from syncpoint.options import RunOptions
    from syncpoint.run import Run

__all__ = ["MAX_TASK_ROWS", "ProgressReporter", "Rate", "Totals", "choose_mode", "clock", "describe", "eta",
           "interval_from", "processed", "track"]

log = logging.getLogger("syncpoint.progress")

DEFAULT_INTERVAL = 10.0
SAMPLE_EVERY = 0.5
INTERVAL_ENV = "SYNCPOINT_PROGRESS_INTERVAL"


# -- the reporter ---------------------------------------------------------------------------------------
class ProgressReporter:
    """Samples ``run`` from a daemon thread and renders it ("live" or "log"); ``stop`` renders a final line."""

    def __init__(
        self,
        run: Run,
        mode: str = "log",
        *,
        interval: float = DEFAULT_INTERVAL,
        sample_every: float = SAMPLE_EVERY,
        console: Console | None = None,
    ) -> None:
        if mode not in ("live", "log", "off"):
            raise ValueError(f"progress mode must be live, log or off, not {mode!r}")
        self.run = run
        self.mode = mode
        self.interval = interval
        self.sample_every = min(sample_every, interval) if mode == "log" else sample_every
        self.console = console
        self._rate = Rate()
        self._task_rates: dict[str, Rate] = {}
        self._last: tuple[float, dict[str, int]] | None = None  # the previous sample: time, done per task
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._live: Live | None = None
        self._capture: StderrCapture | None = None
        self._signals: SignalChain | None = None
        self._started = time.monotonic()
        self._last_line = self._started
        self._origin: int | None = None

    @property
    def label(self) -> str:
        return self.run.job.name

    def start(self) -> ProgressReporter:
        if self.mode == "off":
            return self
        self._started = self._last_line = time.monotonic()
        records = self._sample()
        if self.mode == "live":
            self._start_live()
            if records is not None and self._live is not None:
                self._live.update(self._frame(records), refresh=True)
        self._thread = threading.Thread(target=self._loop, name="syncpoint-progress", daemon=True)
        self._thread.start()
        return self

    def stop(self, outcome: str = "finished") -> None:
        """Stop sampling and render the final state once: a last log line, or the display's last frame,
        which says ``outcome`` ("finished", "interrupted (stopped by SIGINT)", …)."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        records = self._sample()
        if self._live is not None:
            self._stop_live(records, outcome)
        elif records is not None:
            self._log(records, final=True)

    def __enter__(self) -> ProgressReporter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- sampling ---------------------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.wait(self.sample_every):
            try:
                self._tick()
            except Exception:  # a display problem must never end the sync
                log.debug("progress display failed", exc_info=True)

    def _tick(self) -> None:
        records = self._sample()
        if records is None:
            return
        if self._live is not None:
            self._live.update(self._frame(records), refresh=True)
        elif self.mode == "log" and time.monotonic() - self._last_line >= self.interval:
            self._log(records)

    def _sample(self) -> list[TaskRecord] | None:
        try:
            records = self.run.task_records()
        except RuntimeError:  # the run added a task while we iterated; take the next sample
            return None
        now = time.monotonic()
        done = Totals.of(records).done
        if self._origin is None:
            self._origin = done
        self._rate.add(now, done)
        before = self._last
        for record in records:
            if record.status is TaskStatus.IN_PROGRESS:
                rate = self._task_rates.get(record.name)
                if rate is None:  # new to us: it had done what the last sample saw (0 if it was not there)
                    rate = self._task_rates[record.name] = Rate()
                    if before is not None:
                        rate.add(before[0], before[1].get(record.name, 0))
                rate.add(now, processed(record))
            else:
                self._task_rates.pop(record.name, None)
        self._last = (now, {r.name: processed(r) for r in records})
        return records

    def _rates(self, records: list[TaskRecord]) -> tuple[dict[str, float], float]:
        """Each running task's rate, and the sum of those whose total is known (for the ETA)."""
        rates = {name: rate.per_second for name, rate in self._task_rates.items()}
        known = sum(rates.get(r.name, 0.0) for r in records if r.total is not None)
        return rates, known

    # -- log lines --------------------------------------------------------------------------------------
    def _log(self, records: list[TaskRecord], *, final: bool = False) -> None:
        self._last_line = time.monotonic()
        totals = Totals.of(records)
        rate = self._rate.per_second if not final else self._average(totals)
        _, known = self._rates(records)
        elapsed = self._last_line - self._started
        label = f"{self.label} (final)" if final else self.label
        log.info(
            "progress %s%s", describe(label, totals, rate, elapsed=elapsed if final else None, known_rate=known),
            "" if final else describe_active(records),
            extra={
                "job": self.label, "run_id": self.run.run_id, "done": totals.done, "total": totals.total,
                "failed": totals.failed, "rate": round(rate, 3), "tasks_done": totals.tasks_done,
                "tasks": totals.tasks, "elapsed_seconds": round(elapsed, 3), "final": final,
            },
        )

    def _average(self, totals: Totals) -> float:
        """The mean rate since the reporter started (for the final line)."""
        elapsed = time.monotonic() - self._started
        origin = self._origin if self._origin is not None else totals.done
        return max(0.0, (totals.done - origin) / elapsed) if elapsed > 0 else 0.0

    # -- the live display -------------------------------------------------------------------------------
    def _start_live(self) -> None:
        from rich.console import Console
        from rich.live import Live

        from syncpoint import live_term

        console = self.console
        if console is None and live_term.supported():
            try:
                self._capture = live_term.StderrCapture(self._print_above)
                console = Console(file=self._capture.start())
                self._signals = live_term.SignalChain(self._capture)
                self._signals.install()
            except OSError:  # no spare descriptors, …: draw on stderr as it is
                log.debug("cannot capture stderr for the live display", exc_info=True)
                self._stop_capture()
                console = None
        self._live = Live(
            console=console or Console(stderr=True), auto_refresh=False, transient=False, redirect_stderr=True,
            redirect_stdout=sys.stdout.isatty(),  # never move a program's piped output to the terminal
        )
        self._live.start()

    def _print_above(self, line: str) -> None:
        from rich.text import Text

        if self._live is None:
            raise RuntimeError("no live display")
        self._live.console.print(Text(line), soft_wrap=False)

    def _stop_live(self, records: list[TaskRecord] | None, outcome: str) -> None:
        assert self._live is not None
        self._stop_capture()  # lines still in the pipe go above the display, before its last frame
        if records is not None:
            self._live.update(self._frame(records, outcome=outcome), refresh=False)
        self._live.stop()  # draws the last frame once, in place of the previous one
        self._live = None
        if self._capture is not None:
            self._capture.close_terminal()
            self._capture = None

    def _stop_capture(self) -> None:
        if self._signals is not None:
            self._signals.uninstall()
            self._signals = None
        if self._capture is not None:
            self._capture.stop()

    def _frame(self, records: list[TaskRecord], *, outcome: str | None = None) -> Frame:
        totals = Totals.of(records)
        rates, _ = self._rates(records)
        return Frame(FrameData(
            run_id=self.run.run_id, label=self.label, records=records,
            rate=self._average(totals) if outcome is not None else self._rate.per_second,
            task_rates=rates, elapsed=time.monotonic() - self._started, outcome=outcome,
        ))


# -- choosing a mode ------------------------------------------------------------------------------------
def choose_mode(progress: bool | None) -> str:
    """``False`` → off; ``True`` or ``None`` → live when stderr is a capable terminal, log lines otherwise."""
    if progress is False:
        return "off"
    from rich.console import Console

    console = Console(stderr=True)
    return "live" if console.is_terminal and not console.is_dumb_terminal else "log"


def interval_from(options: RunOptions | None) -> float:
    if options is not None and options.progress_interval is not None:
        return options.progress_interval
    env = os.environ.get(INTERVAL_ENV)
    if env:
        try:
            value = float(env)
        except ValueError:
            value = 0.0
        if value > 0:
            return value
        log.warning("ignoring %s=%r: not a positive number of seconds", INTERVAL_ENV, env)
    return DEFAULT_INTERVAL


@contextmanager
def track(run: Run, options: RunOptions | None = None) -> Iterator[ProgressReporter]:
    """Report ``run``'s progress for the duration of the block, as ``options`` ask (``--progress``...)."""
    reporter = ProgressReporter(
        run, choose_mode(options.progress if options is not None else None), interval=interval_from(options)
    )
    reporter.start()
    try:
        yield reporter
    except Stopped as stop:
        reporter.stop("partial" if stop.exit_code == EXIT_PARTIAL else f"interrupted ({stop.reason})")
        raise
    except KeyboardInterrupt:
        reporter.stop("interrupted")
        raise
    except BaseException as exc:
        reporter.stop(f"failed ({type(exc).__name__})")
        raise
    else:
        reporter.stop("finished")

"""One frame of the live progress display, drawn for the width it is given (80 columns and up).

    20241201-143022-3fa2c1 · drucksachen: 750/1000 (75.0%) · 120.5 rec/s · ETA 0:00:03 · 5 failed
    drucksachen  running  ━━━━━━━━━━━━━━━━━━╸━━━━━  750/1000  120.5 rec/s  ETA 0:00:03  5 failed

No line is ever wider than the terminal: the header leaves out its least important parts (the run ID
first, then the task count, …) and task rows leave out their bar, then ETA, rate and failures, and shorten
the task name, rather than wrap. A wrapped line would throw the in-place redraw off by a line.

The final frame (``outcome`` set) says how the run ended ("interrupted (stopped by SIGINT)", "finished"),
shows elapsed time and mean rate instead of ETA, and no task as "running".
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from rich.console import Console, ConsoleOptions, RenderableType
from rich.text import Text

from syncpoint.model import TaskRecord, TaskStatus
from syncpoint.progress_numbers import Totals, eta, fit_parts, summary_parts

MAX_TASK_ROWS = 8
BAR_WIDTH = 24
MIN_BAR = 6
GAP = "  "


@dataclass(frozen=True)
class FrameData:
    """What one frame shows; ``outcome`` is set only on the final frame."""

    run_id: str
    label: str
    records: list[TaskRecord]
    rate: float
    task_rates: dict[str, float] = field(default_factory=dict)
    elapsed: float = 0.0
    outcome: str | None = None


class Frame:
    """A rich renderable: the header line and one line per shown task, each fitted to the width."""

    def __init__(self, data: FrameData) -> None:
        self.data = data

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[RenderableType]:
        width = max(20, options.max_width)
        yield self.header(width)
        shown = rows_to_show(self.data.records)
        yield from self.rows(shown, width)
        hidden = len(self.data.records) - len(shown)
        if hidden:
            yield Text(f"… and {hidden} more task{'s' if hidden > 1 else ''}", style="dim", no_wrap=True,
                       overflow="ellipsis")

    # -- the header ---------------------------------------------------------------------------------------
    def header(self, width: int) -> Text:
        d = self.data
        totals = Totals.of(d.records)
        label = d.label if d.outcome is None else f"{d.label} {d.outcome}"
        known_rate = sum(rate for name, rate in d.task_rates.items()
                         if any(r.name == name and r.total is not None for r in d.records))
        parts = summary_parts(label, totals, d.rate, elapsed=d.elapsed if d.outcome is not None else None,
                              known_rate=known_rate)
        parts.append((f"run {d.run_id}", 3))
        text = Text(fit_parts(parts, width), style="bold", no_wrap=True, overflow="ellipsis")
        text.truncate(width, overflow="ellipsis")
        return text

    # -- the task rows ------------------------------------------------------------------------------------
    def rows(self, records: list[TaskRecord], width: int) -> list[Text]:
        cells = [self._cells(r) for r in records]
        if not cells:
            return []
        optional = ["failed", "eta", "rate"]  # left out in this order when the width is short
        shown = {"name", "status", "counts", "rate", "eta", "failed", "bar"}
        widths = {key: max(len(c[key]) for c in cells) for key in ("name", "status", "counts", "rate", "eta",
                                                                     "failed")}

        def fixed(name_width: int) -> int:
            keys = [k for k in ("status", "counts", "rate", "eta", "failed") if k in shown and widths[k]]
            return name_width + sum(widths[k] for k in keys) + len(GAP) * len(keys)

        name_width = min(widths["name"], max(12, width // 4))
        bar = min(BAR_WIDTH, width - fixed(name_width) - len(GAP))
        if bar < MIN_BAR or not any(r.total is not None for r in records):
            shown.discard("bar")
            bar = 0
        for key in optional:
            if fixed(name_width) + (bar + len(GAP) if bar else 0) <= width:
                break
            shown.discard(key)
        name_width = max(4, min(widths["name"], width - fixed(0) - (bar + len(GAP) if bar else 0)))
        lines = []
        for record, cell in zip(records, cells, strict=True):
            line = Text(no_wrap=True, overflow="ellipsis")
            name = cell["name"] if len(cell["name"]) <= name_width else cell["name"][: name_width - 1] + "…"
            line.append(name.ljust(name_width))
            line.append(GAP + cell["status"].ljust(widths["status"]),
                        style="red" if record.status is TaskStatus.FAILED else None)
            if bar:
                line.append(GAP)
                line.append_text(_bar(record, bar))
            line.append(GAP + cell["counts"].rjust(widths["counts"]))
            for key in ("rate", "eta", "failed"):
                if key in shown and widths[key]:
                    justify = str.rjust if key == "rate" else str.ljust
                    line.append(GAP + justify(cell[key], widths[key]), style="red" if key == "failed" else None)
            line.rstrip()
            line.truncate(width, overflow="ellipsis")
            lines.append(line)
        return lines

    def _cells(self, record: TaskRecord) -> dict[str, str]:
        d = self.data
        one = Totals.of([record])
        running = record.status is TaskStatus.IN_PROGRESS and d.outcome is None
        rate = d.task_rates.get(record.name, 0.0)
        left = eta(one, rate) if running else None
        return {
            "name": record.name,
            "status": _status_text(record, d.outcome),
            "counts": f"{one.done}/{one.total}" if one.total is not None else str(one.done),
            "rate": f"{rate:.1f} rec/s" if running else "",
            "eta": f"ETA {left}" if left else "",
            "failed": f"{record.failed} failed" if record.failed else "",
        }


def _bar(record: TaskRecord, width: int) -> Text:
    one = Totals.of([record])
    if one.total is None:
        return Text(" " * width)
    filled = width if not one.total else min(width, int(width * one.done / one.total))
    text = Text("━" * filled, style="bar.finished" if filled == width else "bar.complete")
    if filled < width:
        text.append("━" * (width - filled), style="bar.back")
    return text


def _status_text(record: TaskRecord, outcome: str | None) -> str:
    if record.status is TaskStatus.IN_PROGRESS and outcome is not None:
        return "done" if outcome == "finished" else "stopped"
    return {
        TaskStatus.PENDING: "pending", TaskStatus.IN_PROGRESS: "running", TaskStatus.COMPLETED: "done",
        TaskStatus.FAILED: "failed",
    }[record.status]


def rows_to_show(records: list[TaskRecord]) -> list[TaskRecord]:
    """The tasks worth a row: those in progress, then recently failed, then the last finished ones."""
    if len(records) <= MAX_TASK_ROWS:
        return records
    active = [r for r in records if r.status is TaskStatus.IN_PROGRESS]
    failed = [r for r in records if r.status is TaskStatus.FAILED]
    done = [r for r in records if r.status is TaskStatus.COMPLETED]
    chosen = (active + failed[-2:] + done[-2:])[:MAX_TASK_ROWS]
    keep = {id(r) for r in chosen}
    return [r for r in records if id(r) in keep]

"""Inline SVG charts computed on the server: numbers in, the points of a polyline or bars out.

No charting library and no JavaScript: the templates draw ``<svg>`` elements from these, so a chart is part
of the page (and of its screenshot) and costs a few microseconds per point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from markupsafe import Markup, escape

from syncpoint.report import clock


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    points: str  # "x,y x,y ..." for <polyline points=...>
    bars: list[tuple[float, float, float, float, str]]  # x, y, w, h, css class
    y_max: float
    x_max: float


def line(xs: list[float], ys: list[float], width: int = 600, height: int = 160, pad: int = 4) -> Chart:
    """A polyline of (x, y) scaled into the box; y from 0 to its maximum (empty below two points)."""
    if len(xs) < 2:
        return Chart(width, height, "", [], 0.0, 0.0)
    x0, x1 = min(xs), max(xs)
    y1 = max(max(ys), 1e-9)
    span = (x1 - x0) or 1.0
    points = " ".join(
        f"{pad + (x - x0) / span * (width - 2 * pad):.1f},{height - pad - y / y1 * (height - 2 * pad):.1f}"
        for x, y in zip(xs, ys, strict=True)
    )
    return Chart(width, height, points, [], max(ys), x1 - x0)


def bars(values: list[float], classes: list[str], width: int = 120, height: int = 24, gap: float = 1.0) -> Chart:
    """One bar per value (a duration trend), heights relative to the largest."""
    if not values:
        return Chart(width, height, "", [], 0.0, 0.0)
    top = max(max(values), 1e-9)
    step = width / len(values)
    shapes = []
    for i, (value, cls) in enumerate(zip(values, classes, strict=True)):
        h = max(1.0, value / top * height)
        shapes.append((round(i * step, 2), round(height - h, 2), round(max(step - gap, 1.0), 2), round(h, 2), cls))
    return Chart(width, height, "", shapes, top, float(len(values)))


def trend_svg(runs: list[dict[str, Any]], width: int = 120, height: int = 24) -> Markup:
    """A job's duration trend (``jobs_overview``'s ``durations``) as one small inline SVG, built here in one
    string: a thousand jobs' trends through template loops would cost more than the rest of the page.
    Every text in it is escaped."""
    chart = bars([r["duration_seconds"] for r in runs], [f"st-{r['status']}" for r in runs], width, height)
    shapes = "".join(
        f'<rect x="{x}" y="{y}" width="{w}" height="{h}" class="{escape(cls)}"><title>'
        f"{escape(run['run_id'])}: {clock(run['duration_seconds'])}</title></rect>"
        for (x, y, w, h, cls), run in zip(chart.bars, runs, strict=True)
    )
    return Markup(
        f'<svg class="trend" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="durations of the last {len(runs)} runs">{shapes}</svg>'
    )

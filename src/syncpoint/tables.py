"""Tables that stay readable at any width: 80 columns, a wide terminal, or a pipe.

rich squeezes a table that is too wide by shrinking every column, which turned ``completed`` into
``com…`` and a job name into nothing at 80 columns. A ``FittedTable`` decides at render time, for the width
it is actually given, which columns to show:

* every column has a rank: rank 0 columns (the run ID, job, status, counts) are always shown, whole;
* the others are added, lowest rank first, while they fit; a caption names what was left out;
* free-text columns (``fold=True``: cursors, errors, paths) may be folded onto several lines instead of
  being dropped, down to ``FOLD_FLOOR`` characters; short values (statuses, IDs, times) never wrap, and a
  foldable rank 0 column (the job) folds only when the rank 0 columns alone do not fit.

So the same table prints whole on a 200-column pipe and folded or trimmed of detail at 80 columns.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from rich import box
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderableType
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

GAP = 2
"""Characters between two columns. No vertical rules: they cost three characters a column at 80 columns,
and a table without them can be read by ``awk``/``cut`` when piped."""

FOLD_FLOOR = 16
"""The narrowest a foldable column is squeezed to before less important columns are dropped instead."""


@dataclass(frozen=True)
class Column:
    """One column: ``rank`` 0 is always shown; higher ranks are dropped first when the width is short."""

    name: str
    rank: int = 0
    fold: bool = False
    justify: str = "left"


class FittedTable:
    """A rich renderable: a table of plain-text cells that drops its least important columns to fit."""

    def __init__(self, columns: Sequence[Column], *, title: str | None = None, hint: str = "") -> None:
        self.columns = list(columns)
        self.title = title
        self.hint = hint  # how to see everything, e.g. "see --json"
        self.rows: list[tuple[tuple[str | Text, ...], str | None]] = []

    def add_row(self, *cells: str | Text, style: str | None = None) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"{len(cells)} cells for {len(self.columns)} columns")
        self.rows.append((cells, style))

    # -- choosing the columns ---------------------------------------------------------------------------
    def _natural(self, index: int) -> int:
        cells = [self.columns[index].name] + [str(cells[index]) for cells, _ in self.rows]
        return max(max((cell_len(line) for line in cell.splitlines() or [""]), default=0) for cell in cells)

    def _needed(self, index: int) -> int:
        """Rank 0 columns are counted whole; other foldable ones at most ``FOLD_FLOOR`` wide."""
        natural = self._natural(index)
        column = self.columns[index]
        return min(natural, FOLD_FLOOR) if column.fold and column.rank > 0 else natural

    def shown(self, width: int) -> list[int]:
        """Indexes of the columns shown at ``width``: every rank 0 column, then the others by rank (lowest
        first) as long as each still fits; a wide column left out does not keep a narrower one out."""
        chosen = [i for i, column in enumerate(self.columns) if column.rank == 0]
        used = sum(self._needed(i) for i in chosen) + GAP * (len(chosen) - 1)
        for i in sorted((i for i, c in enumerate(self.columns) if c.rank > 0), key=lambda i: (self.columns[i].rank, i)):
            extra = self._needed(i) + GAP
            if used + extra <= width:
                chosen.append(i)
                used += extra
        return sorted(chosen)

    def build(self, width: int) -> Table:
        chosen = self.shown(width)
        left_out = [self.columns[i].name for i in range(len(self.columns)) if i not in chosen]
        caption = None
        if left_out:
            caption = f"{', '.join(left_out)}: not shown at {width} columns" + (f"; {self.hint}" if self.hint else "")
        table = Table(title=self.title, title_justify="left", caption=caption, caption_justify="left",
                      box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, GAP - 1, 0, 0))
        essentials = [i for i in chosen if self.columns[i].rank == 0]
        whole = sum(self._natural(i) for i in essentials) + GAP * (len(essentials) - 1) <= width
        for i in chosen:
            column = self.columns[i]
            keep_whole = not column.fold or (column.rank == 0 and whole)  # rank 0 folds only if nothing else fits
            table.add_column(column.name, justify=column.justify,  # type: ignore[arg-type]
                             no_wrap=keep_whole, overflow="fold")
        for cells, style in self.rows:
            table.add_row(*(cells[i] for i in chosen), style=style)
        return table

    # -- rich protocol ----------------------------------------------------------------------------------
    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[RenderableType]:
        yield self.build(options.max_width)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement.get(console, options, self.build(options.max_width))

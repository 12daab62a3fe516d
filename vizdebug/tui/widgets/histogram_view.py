"""A histogram as vertical bars, from counts and their range (any source: stats, snapshots)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from rich.text import Text
from textual.app import RenderResult
from textual.widget import Widget

from ...ui.safe import safe
from ..health import fmt

__all__ = ["HistogramView"]

_BLOCKS = " ▁▂▃▄▅▆▇█"


class HistogramView(Widget):
    """Bars of a histogram: ``set_histogram(counts, lo, hi, title=...)``."""

    DEFAULT_CSS = """
    HistogramView { height: 12; border: round $primary 50%; padding: 0 1; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "Histogram"
        self._counts: np.ndarray = np.zeros(0)
        self._edges: tuple[float, float] = (0.0, 0.0)
        self._message = "select a module"

    def set_histogram(
        self, counts: Sequence[float] | np.ndarray, lo: float, hi: float, *, title: str
    ) -> None:
        """Show ``counts`` over ``[lo, hi]`` (title shown literally)."""
        self._counts = np.asarray(counts, dtype=np.float64)
        self._edges = (lo, hi)
        self._message = ""
        self.border_title = Text(safe(title))
        self.refresh()

    def set_message(self, message: str) -> None:
        """Show a line of text instead of bars."""
        self._counts = np.zeros(0)
        self._message = message
        self.refresh()

    def render(self) -> RenderResult:
        """Draw the bars, scaled to the widget's size."""
        if not len(self._counts):
            return Text(safe(self._message), style="dim")
        if not self._counts.sum():
            return Text("no finite values", style="dim")
        width = max(1, self.content_size.width)
        height = max(1, self.content_size.height - 1)
        counts = self._counts
        if len(counts) > width:  # merge adjacent bins to fit
            groups = np.array_split(counts, width)
            counts = np.array([g.sum() for g in groups])
        # every column shows a bin (bins stretched evenly over the whole width): no ragged
        # remainder at the right edge, whatever the width
        columns = counts[np.arange(width) * len(counts) // width]
        top = counts.max()
        levels = columns / top * height * 8
        lines: list[Text] = []
        for row in range(height, 0, -1):
            fills = np.clip(np.round(levels - (row - 1) * 8), 0, 8).astype(int)
            lines.append(Text("".join(_BLOCKS[f] for f in fills), style="cyan"))
        lo, hi = self._edges
        left, right = fmt(lo), fmt(hi)
        if len(left) + 1 + len(right) <= width:
            axis = Text(left + " " * (width - len(left) - len(right)) + right, style="dim")
        else:
            axis = Text(" " * width)  # no room for both: none, never a cut number
        lines.append(axis)
        return Text("\n").join(lines)

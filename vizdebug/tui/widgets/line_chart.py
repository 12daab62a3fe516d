"""A chart of one series over steps that fills its widget: y axis, step axis, cursor readout.

Drawn with eighth-block characters, one column per step bucket, every line exactly as wide as
the widget (no partial glyphs at the right edge at any width). A NaN, +Inf or -Inf point is
never drawn as a number: its column is marked in that kind's own colour and a legend says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from rich.text import Text
from textual.app import RenderResult
from textual.widget import Widget

from ...ui.safe import safe
from ..health import NONFINITE_STYLES, fmt

__all__ = ["LineChart", "bucket"]

_BLOCKS = " ▁▂▃▄▅▆▇█"
#: How a non-finite bucket is drawn: glyph on every row, and its legend label.
_MARKS = {"nan": ("!", "NaN"), "posinf": ("▲", "+Inf"), "neginf": ("▼", "-Inf")}


def bucket(
    steps: npt.NDArray[np.int64], values: npt.NDArray[np.float64], width: int
) -> tuple[list[float], list[str], list[int]]:
    """Spread points over ``width`` columns by step.

    Returns:
        Per column: the value (mean of the finite points in it, else carried from the left),
        the non-finite kind it holds ("nan", "posinf", "neginf" or "": NaN wins, never hidden
        by finite neighbours), and the last step it covers (-1 before the first point).
    """
    n = len(steps)
    out_v = [math.nan] * width
    out_k = [""] * width
    out_s = [-1] * width
    if not n or width <= 0:
        return out_v, out_k, out_s
    order = np.argsort(steps, kind="stable")  # scalars come in file order
    steps, values = steps[order], values[order]
    s0, s1 = int(steps[0]), int(steps[-1])
    span = max(1, s1 - s0)
    cols = np.minimum(width - 1, ((steps - s0) * (width - 1) + span // 2) // span).astype(int)
    if s1 == s0:
        cols[:] = 0
    # columns are sorted: each one's points are a slice (no per-column scan of every point)
    starts = np.searchsorted(cols, np.arange(width), side="left")
    ends = np.searchsorted(cols, np.arange(width), side="right")
    for c in range(width):
        lo, hi = int(starts[c]), int(ends[c])
        if lo == hi:
            if c:  # a column between two points carries the one on its left (a step line)
                out_v[c], out_s[c] = out_v[c - 1], out_s[c - 1]
            continue
        v = values[lo:hi]
        out_s[c] = int(steps[hi - 1])
        if np.isnan(v).any():
            out_k[c] = "nan"
        elif np.isposinf(v).any():
            out_k[c] = "posinf"
        elif np.isneginf(v).any():
            out_k[c] = "neginf"
        finite = v[np.isfinite(v)]
        out_v[c] = float(finite.mean()) if finite.size else math.nan
    return out_v, out_k, out_s


class LineChart(Widget):
    """``show(steps, values, cursor=step, label=...)`` draws an area chart filling the widget.

    The top line is the readout (value at the cursor step), then the plot with its y axis
    (highest, lowest finite value) on the left, then the step axis.
    """

    DEFAULT_CSS = """
    LineChart { height: 1fr; min-height: 4; }
    """

    def __init__(
        self, *, id: str | None = None, readout: bool = True, axis_width: int | None = None
    ) -> None:
        super().__init__(id=id)
        self.readout = readout
        #: Width of the y axis labels (None: as wide as they need; a fixed width lines up
        #: the step axes of charts stacked one above the other).
        self.axis_width = axis_width
        self._steps: npt.NDArray[np.int64] = np.zeros(0, dtype=np.int64)
        self._values: npt.NDArray[np.float64] = np.zeros(0)
        self._cursor: int | None = None
        self._label = ""
        self._message = "no data"

    def show(
        self,
        steps: Sequence[int] | npt.NDArray[np.int64],
        values: Sequence[float] | npt.NDArray[np.float64],
        *,
        cursor: int | None = None,
        label: str = "",
    ) -> None:
        """Plot ``values`` over ``steps``; the readout shows the last point ``<= cursor``."""
        order = np.argsort(np.asarray(steps, dtype=np.int64), kind="stable")
        self._steps = np.asarray(steps, dtype=np.int64)[order]
        self._values = np.asarray(values, dtype=np.float64)[order]
        self._cursor, self._label = cursor, label
        self._message = "" if len(self._steps) else "no data"
        self.refresh()

    def set_message(self, message: str) -> None:
        """Show a line of text instead of a chart."""
        self._steps = np.zeros(0, dtype=np.int64)
        self._values = np.zeros(0)
        self._message = message
        self.refresh()

    @property
    def cursor_value(self) -> tuple[int, float] | None:
        """``(step, value)`` of the last point at or before the cursor (None: none)."""
        if not len(self._steps):
            return None
        at = self._cursor if self._cursor is not None else int(self._steps.max())
        i = int(np.searchsorted(self._steps, at, side="right")) - 1
        return None if i < 0 else (int(self._steps[i]), float(self._values[i]))

    def render(self) -> RenderResult:
        """Draw readout, plot, axes (every line exactly the widget's width)."""
        width, height = self.content_size.width, self.content_size.height
        if width <= 0 or height <= 0:
            return Text("")
        if not len(self._steps):
            message = Text(self._message, style="dim")
            message.truncate(width, pad=True)
            return message
        lines: list[Text] = []
        if self.readout:
            lines.append(self._readout_line(width))
        finite = self._values[np.isfinite(self._values)]
        lo = float(finite.min()) if finite.size else 0.0
        hi = float(finite.max()) if finite.size else 1.0
        if hi == lo:
            lo, hi = lo - 0.5, hi + 0.5
        need = max(len(fmt(hi)), len(fmt(lo))) + 1
        axis_w = min(max(need, self.axis_width or 0), max(0, width - 4))
        plot_w = width - axis_w
        rows = max(1, height - len(lines) - 1)
        values, kinds, col_steps = bucket(self._steps, self._values, plot_w)
        cur_col = self._cursor_column(col_steps)
        for r in range(rows, 0, -1):
            if r == rows:
                label = fmt(hi)
            elif r == 1:
                label = fmt(lo)
            else:
                label = ""
            line = Text(label.rjust(axis_w - 1)[: axis_w - 1] + "┤" if axis_w else "", "dim")
            for c in range(plot_w):
                style = "reverse" if c == cur_col else ""
                kind = kinds[c]
                if kind:
                    line.append(_MARKS[kind][0], style=f"{NONFINITE_STYLES[kind][0]} {style}")
                    continue
                v = values[c]
                if math.isnan(v):
                    line.append(" ", style=style)
                    continue
                level = (v - lo) / (hi - lo) * rows * 8
                fill = int(min(8, max(0, round(level - (r - 1) * 8))))
                if r == 1 and fill == 0:
                    fill = 1  # the lowest value still shows a sliver
                line.append(_BLOCKS[fill], style=f"cyan {style}".strip())
            lines.append(line)
        lines.append(self._axis_line(axis_w, plot_w, col_steps, cur_col))
        return Text("\n").join(lines[:height])

    def _cursor_column(self, col_steps: list[int]) -> int:
        at = self.cursor_value
        if at is None:
            return -1
        found = [c for c, s in enumerate(col_steps) if s == at[0]]
        return found[0] if found else -1

    def _readout_line(self, width: int) -> Text:
        text = Text()
        if self._label:
            text.append(safe(self._label), style="bold")
            text.append("  ")
        at = self.cursor_value
        if at is not None:
            step, value = at
            text.append(f"step {step}: ", style="dim")
            kind = "nan" if math.isnan(value) else ("posinf" if value > 0 else "neginf")
            style = NONFINITE_STYLES[kind][0] if not math.isfinite(value) else "bold"
            text.append(fmt(value, 12), style=style)
        text.append(f"  ({len(self._steps)} points)", style="dim")
        kinds = {
            k
            for k, test in (("nan", np.isnan), ("posinf", np.isposinf), ("neginf", np.isneginf))
            if test(self._values).any()
        }
        for kind in ("nan", "posinf", "neginf"):
            if kind in kinds:
                glyph, label = _MARKS[kind]
                text.append(f"  {glyph} {label}", style=NONFINITE_STYLES[kind][0])
        text.truncate(width, pad=True)
        return text

    def _axis_line(self, axis_w: int, plot_w: int, col_steps: list[int], cur: int) -> Text:
        chars = [" "] * plot_w
        marks = [(0, str(self._steps.min())), (plot_w, str(self._steps.max()))]
        if 0 <= cur < plot_w:
            marks.insert(1, (cur, str(col_steps[cur])))
        placed: list[tuple[int, int]] = []
        for pos, label in marks:
            start = max(0, min(plot_w - len(label), pos - (len(label) // 2 if pos else 0)))
            end = start + len(label)
            if end > plot_w or any(start <= b and a <= end for a, b in placed):
                continue  # no room: never a cut number
            chars[start:end] = label
            placed.append((start, end))
        line = Text(" " * max(0, axis_w - 1) + ("└" if axis_w else ""), style="dim")
        line.append("".join(chars), style="dim")
        return line

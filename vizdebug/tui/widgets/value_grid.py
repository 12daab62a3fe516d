"""A scrollable grid of a tensor's values (a 0-, 1- or 2-d slice), NaN/Inf cells highlighted."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
from rich.text import Text
from textual.widgets import DataTable

from ..health import NONFINITE_STYLES

__all__ = ["MAX_COLS", "MAX_ROWS", "ValueGrid", "cell_text"]

#: The grid shows at most this many rows and columns of a slice (slice further to see more).
MAX_ROWS = 500
MAX_COLS = 64


def cell_text(value: float) -> Text:
    """One value; NaN, +Inf and -Inf each on their own background (see the legend)."""
    if math.isnan(value):
        return Text("nan", style=NONFINITE_STYLES["nan"][1])
    if math.isinf(value):
        kind = "posinf" if value > 0 else "neginf"
        return Text("inf" if value > 0 else "-inf", style=NONFINITE_STYLES[kind][1])
    if value == 0:
        return Text("0", style="dim")
    return Text(f"{value:.4g}")


class ValueGrid(DataTable[Text]):
    """Values of a slice with row and column indices as labels.

    Shows only as many columns as fit whole in its width (a number is never cut at the
    edge); :attr:`shown_cols` and :attr:`total_cols` say how many that is.
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="cell", zebra_stripes=False)
        self.truncated = False
        #: Columns shown, and columns of the slice.
        self.shown_cols = 0
        self.total_cols = 0
        self._last: tuple[npt.NDArray[Any], dict[str, int]] | None = None

    def show_array(
        self,
        array: npt.NDArray[Any],
        *,
        row_offset: int = 0,
        col_offset: int = 0,
        row_step: int = 1,
        col_step: int = 1,
    ) -> None:
        """Show a slice; at most :data:`MAX_ROWS` rows and the columns that fit whole.

        Args:
            array: 0-, 1- (one row) or 2-d values.
            row_offset, col_offset, row_step, col_step: Map grid positions to the tensor's
                indices for the labels.
        """
        kw = {
            "row_offset": row_offset,
            "col_offset": col_offset,
            "row_step": row_step,
            "col_step": col_step,
        }
        self._last = (array, kw)
        a = np.asarray(array)
        if a.ndim == 0:
            a = a.reshape(1, 1)
        elif a.ndim == 1:
            a = a.reshape(1, -1)
        rows = a[:MAX_ROWS, :MAX_COLS]
        values = rows.astype(np.float64) if rows.dtype.kind in "fiub" else rows
        cells = [[cell_text(float(v)) for v in row] for row in values]
        self.total_cols = a.shape[1]
        fit = self._fitting_columns(cells, row_offset + (len(cells) - 1) * row_step)
        self.shown_cols = min(fit, len(cells[0]) if cells else 0)
        self.truncated = a.shape[0] > MAX_ROWS or self.shown_cols < a.shape[1]
        self.clear(columns=True)
        for j in range(self.shown_cols):
            self.add_column(Text(str(col_offset + j * col_step), style="bold"), key=str(j))
        for i, row in enumerate(cells):
            label = Text(str(row_offset + i * row_step), style="bold")
            self.add_row(*row[: self.shown_cols], label=label)

    def _fitting_columns(self, cells: list[list[Text]], last_label: int) -> int:
        width = self.size.width
        if width <= 0 or not cells:
            return MAX_COLS  # not laid out yet: on_resize shows it again
        pad = 2 * self.cell_padding
        cell_w = max(len(c.plain) for row in cells for c in row) + pad
        label_w = len(str(last_label)) + pad
        # the vertical scrollbar takes its width whenever the rows overflow
        room = width - label_w - self.styles.scrollbar_size_vertical
        return max(1, room // max(1, cell_w))

    def on_resize(self) -> None:
        """Fit the columns to the new width."""
        if self._last is not None:
            array, kw = self._last
            self.show_array(array, **kw)

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
    """Values of a slice with row and column indices as labels."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="cell", zebra_stripes=False)
        self.truncated = False

    def show_array(
        self,
        array: npt.NDArray[Any],
        *,
        row_offset: int = 0,
        col_offset: int = 0,
        row_step: int = 1,
        col_step: int = 1,
    ) -> None:
        """Show a slice; at most :data:`MAX_ROWS` x :data:`MAX_COLS` cells.

        Args:
            array: 0-, 1- (one row) or 2-d values.
            row_offset, col_offset, row_step, col_step: Map grid positions to the tensor's
                indices for the labels.
        """
        a = np.asarray(array)
        if a.ndim == 0:
            a = a.reshape(1, 1)
        elif a.ndim == 1:
            a = a.reshape(1, -1)
        self.truncated = a.shape[0] > MAX_ROWS or a.shape[1] > MAX_COLS
        a = a[:MAX_ROWS, :MAX_COLS]
        values = a.astype(np.float64) if a.dtype.kind in "fiub" else a
        self.clear(columns=True)
        for j in range(a.shape[1]):
            self.add_column(Text(str(col_offset + j * col_step), style="bold"), key=str(j))
        for i in range(a.shape[0]):
            label = Text(str(row_offset + i * row_step), style="bold")
            self.add_row(*(cell_text(float(v)) for v in values[i]), label=label)

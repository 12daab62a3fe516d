"""Charts of one tensor's statistics over steps, and the value at the step cursor."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Static

from ...ui.safe import safe
from ..health import fmt
from .line_chart import LineChart

__all__ = ["SERIES_COLUMNS", "SeriesView"]

#: Statistics plotted, in order ("nonfinite" is nan + posinf + neginf; "zero%" zeros / numel).
SERIES_COLUMNS: tuple[str, ...] = ("mean", "std", "min", "max", "l2", "nonfinite", "zero%")


class SeriesView(VerticalScroll):
    """One labelled chart per statistic (y range, step axis, cursor column).

    Fed with ``show(title, steps, series, cursor_values, cursor=step)``.
    """

    DEFAULT_CSS = """
    SeriesView { height: 1fr; }
    SeriesView .series-title { height: 1; text-style: bold; padding: 0 1; }
    SeriesView Horizontal { height: 3; }
    SeriesView .series-label { width: 24; padding: 0 1; }
    SeriesView LineChart { width: 1fr; height: 3; min-height: 3; }
    """

    def compose(self) -> ComposeResult:
        """One title line and a row per statistic."""
        yield Static("select a module", classes="series-title", id="series-title")
        for col in SERIES_COLUMNS:
            with Horizontal(id=f"row-{col.rstrip('%')}"):
                yield Static(col, classes="series-label", id=f"label-{col.rstrip('%')}")
                yield LineChart(id=f"spark-{col.rstrip('%')}", readout=False, axis_width=10)

    def show(
        self,
        title: str,
        steps: npt.NDArray[np.int64],
        series: Mapping[str, npt.NDArray[np.float64]],
        at_cursor: Mapping[str, float | None],
        *,
        cursor: int | None = None,
    ) -> None:
        """Plot each statistic and print its value at the cursor step.

        Args:
            title: Shown literally above the plots.
            steps: The steps of the values.
            series: Values over ``steps`` by statistic name (see :data:`SERIES_COLUMNS`);
                NaN where there is no such statistic (drawn as a NaN mark, never as 0).
            at_cursor: The value of each statistic at the cursor step (None: none, a dash).
            cursor: The cursor step (its column is highlighted).
        """
        self.query_one("#series-title", Static).update(Text(safe(title)))
        for col in SERIES_COLUMNS:
            key = col.rstrip("%")
            values = np.asarray(series.get(col, np.zeros(0)), dtype=np.float64)
            chart = self.query_one(f"#spark-{key}", LineChart)
            if len(values) == len(steps):
                chart.show(steps, values, cursor=cursor)
            else:
                chart.set_message("")
            label = Text(f"{col:<10}")
            if col in at_cursor:  # None: no such statistic at the cursor (no finite values)
                value = at_cursor[col]
                bad = col == "nonfinite" and value is not None and value > 0
                label.append(fmt(value, 12), style="bold red" if bad else "bold")
            self.query_one(f"#label-{key}", Static).update(label)

"""Sparklines of one tensor's statistics over steps, and the value at the step cursor."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Sparkline, Static

from ..health import fmt

__all__ = ["SERIES_COLUMNS", "SeriesView"]

#: Statistics plotted, in order ("nonfinite" is nan + posinf + neginf; "zero%" zeros / numel).
SERIES_COLUMNS: tuple[str, ...] = ("mean", "std", "min", "max", "l2", "nonfinite", "zero%")


def _plottable(values: npt.NDArray[np.float64]) -> list[float]:
    finite = values[np.isfinite(values)]
    if not finite.size:
        return [0.0] * len(values)
    filled = np.nan_to_num(
        values, nan=float(finite.min()), posinf=float(finite.max()), neginf=float(finite.min())
    )
    return [float(v) for v in filled]


class SeriesView(VerticalScroll):
    """One labelled sparkline per statistic; fed with ``show(title, series, cursor_values)``."""

    DEFAULT_CSS = """
    SeriesView { height: 1fr; }
    SeriesView .series-title { height: 1; text-style: bold; padding: 0 1; }
    SeriesView Horizontal { height: 2; }
    SeriesView .series-label { width: 26; padding: 0 1; }
    SeriesView Sparkline { width: 1fr; height: 2; }
    """

    def compose(self) -> ComposeResult:
        """One title line and a row per statistic."""
        yield Static("select a module", classes="series-title", id="series-title")
        for col in SERIES_COLUMNS:
            with Horizontal(id=f"row-{col.rstrip('%')}"):
                yield Static(col, classes="series-label", id=f"label-{col.rstrip('%')}")
                yield Sparkline([], id=f"spark-{col.rstrip('%')}")

    def show(
        self,
        title: str,
        series: Mapping[str, npt.NDArray[np.float64]],
        at_cursor: Mapping[str, float | None],
    ) -> None:
        """Plot each statistic and print its value at the cursor step.

        Args:
            title: Shown literally above the plots.
            series: Values over steps by statistic name (see :data:`SERIES_COLUMNS`).
            at_cursor: The value of each statistic at the cursor step (None: none, a dash).
        """
        self.query_one("#series-title", Static).update(Text(title))
        for col in SERIES_COLUMNS:
            key = col.rstrip("%")
            values = series.get(col, np.zeros(0))
            spark = self.query_one(f"#spark-{key}", Sparkline)
            spark.data = _plottable(np.asarray(values, dtype=np.float64))
            label = Text(f"{col:<10}")
            if col in at_cursor:  # None: no such statistic at the cursor (no finite values)
                value = at_cursor[col]
                bad = col == "nonfinite" and value is not None and value > 0
                label.append(fmt(value, 12), style="bold red" if bad else "bold")
            self.query_one(f"#label-{key}", Static).update(label)

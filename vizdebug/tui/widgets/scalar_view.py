"""Scalars and other tools' histograms: tag list, chart with axes, histogram at a step."""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from ...events import Histogram
from ...ui.safe import safe
from .filter_bar import matches
from .histogram_view import HistogramView
from .line_chart import LineChart

__all__ = ["ScalarView"]

HIST_PREFIX = "histogram: "


class ScalarView(Horizontal):
    """Tags on the left; the chosen tag's values over steps on the right. Posts :class:`Chosen`."""

    DEFAULT_CSS = """
    ScalarView { height: 1fr; }
    ScalarView #scalar-tags { width: 30%; max-width: 36; min-width: 14; height: 1fr; }
    ScalarView #scalar-detail { width: 1fr; }
    ScalarView #scalar-title { height: auto; padding: 0 1; }
    ScalarView LineChart { height: 1fr; padding: 0 1; }
    """

    class Chosen(Message):
        """The user highlighted a tag."""

        def __init__(self, tag: str) -> None:
            super().__init__()
            self.tag = tag

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._tags: list[str] = []
        self._all: tuple[list[str], list[str]] = ([], [])
        self._filter = ""

    def set_filter(self, text: str) -> None:
        """List only tags containing ``text`` (case-insensitive)."""
        if text != self._filter:
            self._filter = text
            self.set_tags(*self._all)

    def compose(self) -> ComposeResult:
        """Tag list and detail."""
        tags = OptionList(id="scalar-tags", markup=False)
        tags.border_title = "Scalars & histograms"
        yield tags
        with Vertical(id="scalar-detail"):
            yield Static("no scalars", id="scalar-title")
            yield LineChart(id="scalar-chart")
            yield HistogramView(id="scalar-hist")

    @property
    def tags(self) -> list[str]:
        """Tags listed (histogram tags prefixed with ``"histogram: "``)."""
        return list(self._tags)

    def set_tags(self, scalars: Sequence[str], histograms: Sequence[str]) -> None:
        """List scalar and histogram tags (shown literally); keeps the highlight."""
        self._all = (list(scalars), list(histograms))
        tags = sorted(scalars) + [HIST_PREFIX + t for t in sorted(histograms)]
        tags = [t for t in tags if matches(t, self._filter)]
        if tags == self._tags:
            return
        options = self.query_one("#scalar-tags", OptionList)
        current = self._tags[options.highlighted] if options.highlighted is not None else None
        self._tags = tags
        options.clear_options()
        options.add_options([Option(Text(safe(t)), id=t) for t in tags])
        if tags:
            options.highlighted = tags.index(current) if current in tags else 0

    @property
    def current(self) -> str:
        """The highlighted tag ("" if none)."""
        options = self.query_one("#scalar-tags", OptionList)
        i = options.highlighted
        return self._tags[i] if i is not None and i < len(self._tags) else ""

    def show_none(self, message: str) -> None:
        """Show a message instead of a chart (no tag, or none matches the filter)."""
        self.query_one("#scalar-title", Static).update(Text(message, style="dim"))
        self.query_one("#scalar-chart", LineChart).set_message("")
        self.query_one("#scalar-hist", HistogramView).display = False

    def show_scalar(
        self, tag: str, steps: Sequence[int], values: Sequence[float], step: int
    ) -> None:
        """Plot a scalar over its steps, with its value at the last step ``<= step``."""
        self.query_one("#scalar-title", Static).update(Text(safe(tag), style="bold"))
        chart = self.query_one("#scalar-chart", LineChart)
        chart.show(steps, values, cursor=step)
        hist = self.query_one("#scalar-hist", HistogramView)
        hist.set_message("")
        hist.display = False

    def show_histograms(self, tag: str, hists: Sequence[Histogram], step: int) -> None:
        """Plot a histogram tag's mean over steps and draw the one at the last step ``<= step``."""
        # an empty histogram has no mean: NaN (drawn as such), never 0
        means = [h.sum / h.num if h.num else math.nan for h in hists]
        self.query_one("#scalar-title", Static).update(Text(f"{tag} (mean)", style="bold"))
        self.query_one("#scalar-chart", LineChart).show([h.step for h in hists], means, cursor=step)
        chosen = [h for h in hists if h.step <= step] or list(hists[:1])
        view = self.query_one("#scalar-hist", HistogramView)
        view.display = True
        if chosen:
            h = chosen[-1]
            view.set_histogram(h.bucket_counts, h.min, h.max, title=f"{tag} at step {h.step}")

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        """Turn a highlight into :class:`Chosen`."""
        event.stop()
        if event.option.id is not None:
            self.post_message(self.Chosen(event.option.id))

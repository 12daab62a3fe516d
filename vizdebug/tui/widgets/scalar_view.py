"""Scalars and other tools' histograms: a tag list, a sparkline and the histogram at a step."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import OptionList, Sparkline, Static
from textual.widgets.option_list import Option

from ...events import Histogram
from ..health import fmt
from .filter_bar import matches
from .histogram_view import HistogramView

__all__ = ["ScalarView"]

HIST_PREFIX = "histogram: "


class ScalarView(Horizontal):
    """Tags on the left; the chosen tag's values over steps on the right. Posts :class:`Chosen`."""

    DEFAULT_CSS = """
    ScalarView { height: 1fr; }
    ScalarView #scalar-tags { width: 36; height: 1fr; }
    ScalarView #scalar-detail { width: 1fr; }
    ScalarView #scalar-title { height: auto; padding: 0 1; }
    ScalarView Sparkline { height: 6; margin: 0 1; }
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
            yield Sparkline([], id="scalar-spark")
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
        options.add_options([Option(Text(t), id=t) for t in tags])
        if tags:
            options.highlighted = tags.index(current) if current in tags else 0

    @property
    def current(self) -> str:
        """The highlighted tag ("" if none)."""
        options = self.query_one("#scalar-tags", OptionList)
        i = options.highlighted
        return self._tags[i] if i is not None and i < len(self._tags) else ""

    def show_scalar(
        self, tag: str, steps: Sequence[int], values: Sequence[float], step: int
    ) -> None:
        """Plot a scalar and print its value at the last step ``<= step``."""
        arr = np.asarray(values, dtype=np.float64)
        finite = arr[np.isfinite(arr)]
        fill = float(finite.min()) if finite.size else 0.0
        self.query_one("#scalar-spark", Sparkline).data = np.nan_to_num(
            arr, nan=fill, posinf=fill, neginf=fill
        ).tolist()
        i = int(np.searchsorted(np.asarray(steps), step, side="right")) - 1
        title = Text(tag, style="bold")
        if i >= 0:
            title.append(f"  step {steps[i]}: ", style="dim")
            title.append(fmt(float(arr[i]), 12), style="bold")
        title.append(f"  ({len(arr)} points)", style="dim")
        self.query_one("#scalar-title", Static).update(title)
        hist = self.query_one("#scalar-hist", HistogramView)
        hist.set_message("")
        hist.display = False

    def show_histograms(self, tag: str, hists: Sequence[Histogram], step: int) -> None:
        """Plot a histogram tag's mean over steps and draw the one at the last step ``<= step``."""
        means = [h.sum / h.num if h.num else 0.0 for h in hists]
        self.query_one("#scalar-spark", Sparkline).data = means
        chosen = [h for h in hists if h.step <= step] or list(hists[:1])
        title = Text(tag, style="bold")
        view = self.query_one("#scalar-hist", HistogramView)
        view.display = True
        if chosen:
            h = chosen[-1]
            title.append(f"  step {h.step}: mean {fmt(h.sum / h.num if h.num else 0.0)}", "dim")
            view.set_histogram(h.bucket_counts, h.min, h.max, title=f"{tag} at step {h.step}")
        self.query_one("#scalar-title", Static).update(title)

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        """Turn a highlight into :class:`Chosen`."""
        event.stop()
        if event.option.id is not None:
            self.post_message(self.Chosen(event.option.id))

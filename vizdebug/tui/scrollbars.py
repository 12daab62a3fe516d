"""Scrollbars drawn in whole cells: no partial-block glyphs ("▁▁", "▃▃", "▊") at the edges.

Textual draws a thumb's ends with eighth blocks for smoothness; in terminals and captures
where the scrollbar's colours are lost (tmux copy, screen readers, SVG text) those read as
stray glyphs at the right edge. A thumb of whole cells says the same without them.
"""

from __future__ import annotations

from typing import ClassVar

from textual.scrollbar import ScrollBar, ScrollBarRender

__all__ = ["WholeCellScrollBarRender", "use_whole_cell_scrollbars"]


class WholeCellScrollBarRender(ScrollBarRender):
    """A :class:`~textual.scrollbar.ScrollBarRender` whose thumb ends on cell boundaries."""

    VERTICAL_BARS: ClassVar[list[str]] = [" "]
    HORIZONTAL_BARS: ClassVar[list[str]] = [" "]


def use_whole_cell_scrollbars() -> None:
    """Make every Textual scrollbar of this process draw whole cells (the TUI's own process)."""
    ScrollBar.renderer = WholeCellScrollBarRender

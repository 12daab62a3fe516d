"""Inspect tensors from any source: shape, dtype, statistics and a sliceable value grid.

Fed with plain numpy arrays (``set_tensors``), so snapshots on disk and a live debugger's
fetched tensors use the same widget.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import numpy as np
import numpy.typing as npt
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from ...stats import reference_stats
from ...ui.safe import safe
from ..health import NONFINITE_STYLES, fmt
from .histogram_view import HistogramView
from .value_grid import ValueGrid

__all__ = ["TensorInspector", "default_index", "parse_index"]


def default_index(shape: tuple[int, ...]) -> str:
    """The index expression that shows the last two dimensions at index 0 of the others."""
    if len(shape) <= 2:
        return ", ".join(":" for _ in shape)
    return ", ".join(["0"] * (len(shape) - 2) + [":", ":"])


def parse_index(text: str, shape: tuple[int, ...]) -> tuple[tuple[int | slice, ...], list[int]]:
    """Parse ``"0, :, 2:10"`` into an index and the dimensions it leaves free.

    Missing trailing entries mean ``:``. At most two dimensions may stay free.

    Returns:
        The index tuple and the free dimensions (tensor axes shown as rows, columns).

    Raises:
        ValueError: A malformed entry, an index out of range or more than two free dimensions.
    """
    parts = [p.strip() for p in text.split(",")] if text.strip() else []
    if len(parts) > len(shape):
        raise ValueError(f"{len(parts)} entries for a {len(shape)}-d tensor")
    parts += [":"] * (len(shape) - len(parts))
    index: list[int | slice] = []
    free: list[int] = []
    for dim, (part, size) in enumerate(zip(parts, shape, strict=True)):
        if ":" in part:
            bits = part.split(":")
            if len(bits) > 3:
                raise ValueError(f"bad slice {part!r} for dimension {dim}")
            try:
                nums = [int(b) if b.strip() else None for b in bits]
            except ValueError:
                raise ValueError(f"bad slice {part!r} for dimension {dim}") from None
            if len(nums) == 3 and nums[2] is not None and nums[2] <= 0:
                raise ValueError(f"slice step must be positive in {part!r}")
            index.append(slice(*nums))
            free.append(dim)
        else:
            try:
                i = int(part)
            except ValueError:
                raise ValueError(f"bad index {part!r} for dimension {dim}") from None
            if not -size <= i < size:
                raise ValueError(f"index {i} out of range for dimension {dim} of size {size}")
            index.append(i)
    if len(free) > 2:
        raise ValueError(
            f"{len(free)} dimensions left free; give an integer for all but two (e.g. "
            f"{default_index(shape)!r})"
        )
    return tuple(index), free


class TensorInspector(Horizontal):
    """A tensor list, the selected tensor's statistics and histogram, and its value grid."""

    DEFAULT_CSS = """
    TensorInspector { height: 1fr; }
    TensorInspector #tensor-list { width: 36; height: 1fr; }
    TensorInspector #tensor-detail { width: 1fr; }
    TensorInspector #tensor-stats { height: auto; padding: 0 1; }
    TensorInspector #tensor-index { width: 1fr; }
    TensorInspector #index-info { height: auto; padding: 0 1; }
    TensorInspector HistogramView { height: 7; }
    TensorInspector ValueGrid { height: 1fr; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._tensors: dict[str, npt.NDArray[Any]] = {}
        self._selected = ""

    def compose(self) -> ComposeResult:
        """The tensor list on the left, details on the right."""
        tensors = OptionList(id="tensor-list", markup=False)
        tensors.border_title = "Tensors"
        yield tensors
        with Vertical(id="tensor-detail"):
            yield Static("no tensors", id="tensor-stats")
            yield HistogramView(id="tensor-hist")
            yield Input(placeholder="index, e.g. 0, :, :", id="tensor-index")
            yield Static("", id="index-info")
            yield ValueGrid(id="tensor-grid")

    @property
    def tensors(self) -> dict[str, npt.NDArray[Any]]:
        """The tensors offered."""
        return dict(self._tensors)

    @property
    def selected(self) -> str:
        """Name of the tensor shown ("" if none)."""
        return self._selected

    def set_tensors(self, tensors: Mapping[str, npt.NDArray[Any]], *, title: str) -> None:
        """Offer tensors for inspection (names shown literally) and show the first."""
        self._tensors = {k: np.asarray(v) for k, v in tensors.items()}
        options = self.query_one("#tensor-list", OptionList)
        options.border_title = Text(safe(title))
        options.clear_options()
        for name, arr in self._tensors.items():
            prompt = Text(safe(name))
            prompt.append(f"\n  {list(arr.shape)} {arr.dtype}", style="dim")
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                prompt.append(" nonfinite", style="bold red")
            options.add_option(Option(prompt, id=name))
        if self._tensors:
            options.highlighted = 0
            self.select(next(iter(self._tensors)))
        else:
            self.set_message("no tensors")

    def set_message(self, message: str) -> None:
        """Show a message instead of a tensor (for example: no snapshot at this step)."""
        self._tensors = {}
        self._selected = ""
        self.query_one("#tensor-list", OptionList).clear_options()
        self.query_one("#tensor-stats", Static).update(Text(safe(message)))
        self.query_one("#tensor-hist", HistogramView).set_message("")
        self.query_one("#index-info", Static).update("")
        self.query_one("#tensor-grid", ValueGrid).clear(columns=True)

    def select(self, name: str) -> None:
        """Show one of the offered tensors with its default index."""
        arr = self._tensors.get(name)
        if arr is None:
            return
        self._selected = name
        text = Text(safe(name), style="bold")
        text.append(f"  shape {list(arr.shape)}  dtype {arr.dtype}\n")
        hist = self.query_one("#tensor-hist", HistogramView)
        if arr.dtype.kind in "fiub":
            s = reference_stats(arr)
            # With no finite values there is no mean, ..., l2 (a dash, whatever was computed).
            finite = s.numel - s.nan - s.posinf - s.neginf > 0
            for label, value in (
                ("mean", s.mean),
                ("std", s.std),
                ("min", s.min),
                ("max", s.max),
                ("l2", s.l2),
            ):
                text.append(f"{label} ", style="dim")
                text.append(f"{fmt(value if finite else None)}  ")
            text.append("\n")
            for label, count, kind in (
                ("nan", s.nan, "nan"),
                ("+inf", s.posinf, "posinf"),
                ("-inf", s.neginf, "neginf"),
                ("zeros", s.zeros, ""),
            ):
                text.append(f"{label} ", style="dim")
                style = NONFINITE_STYLES[kind][0] if count and kind else ""
                text.append(f"{count}  ", style=style)
            hist.set_histogram(s.hist_counts, s.hist_lo, s.hist_hi, title="histogram")
        else:
            hist.set_message(f"no statistics for dtype {arr.dtype}")
        self.query_one("#tensor-stats", Static).update(text)
        index = self.query_one("#tensor-index", Input)
        index.value = default_index(arr.shape)
        self.apply_index(index.value)

    def apply_index(self, text: str) -> bool:
        """Show the slice ``text`` of the selected tensor; returns False on a bad index."""
        arr = self._tensors.get(self._selected)
        if arr is None:
            return False
        info = self.query_one("#index-info", Static)
        try:
            index, free = parse_index(text, arr.shape)
        except ValueError as exc:
            info.update(Text(safe(f"bad index: {exc}"), style="bold red"))
            return False
        part = arr[index] if index else arr
        offsets = [cast(slice, index[d]).indices(arr.shape[d]) for d in free]
        grid = self.query_one("#tensor-grid", ValueGrid)
        kw: dict[str, int] = {}
        if len(free) == 2:
            kw = {
                "row_offset": offsets[0][0],
                "row_step": offsets[0][2],
                "col_offset": offsets[1][0],
                "col_step": offsets[1][2],
            }
        elif len(free) == 1:
            kw = {"col_offset": offsets[0][0], "col_step": offsets[0][2]}
        grid.show_array(part, **kw)
        shown = (
            "rows = dim {}, columns = dim {}".format(*free)
            if len(free) == 2
            else (f"columns = dim {free[0]}" if free else "a single value")
        )
        note = f"showing {list(np.shape(part))}: {shown}"
        if grid.truncated:
            note += (
                f" (first {min(500, grid.row_count)} rows x {grid.shown_cols} of "
                f"{grid.total_cols} columns; slice to see the rest)"
            )
        line = Text(note, style="dim")
        if arr.dtype.kind == "f" and not np.isfinite(part).all():
            line.append("   legend: ", style="dim")
            for kind, label in (("nan", "nan"), ("posinf", "+inf"), ("neginf", "-inf")):
                line.append(f" {label} ", style=NONFINITE_STYLES[kind][1])
                line.append(" ")
        info.update(line)
        return True

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        """Show the highlighted tensor."""
        event.stop()
        if event.option_index != event.option_list.highlighted:
            return  # a stale message from before the list was refilled (a new snapshot)
        if event.option.id is not None and event.option.id != self._selected:
            self.select(event.option.id)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Apply a typed index."""
        event.stop()
        self.apply_index(event.value)

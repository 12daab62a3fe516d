"""What the live debugger and the offline snapshot stepper share: a position, tensors, values.

Layout: the :class:`~vizdebug.tui.widgets.live_status.LiveStatus` lines on top, the tensors
available at the position on the left (selecting one loads it), and the
:class:`~vizdebug.tui.widgets.TensorInspector` on the right (its own tensor list is hidden: the
left list is the one that matters here). Subclasses say how a tensor is loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy.typing as npt
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, OptionList, Static
from textual.widgets.option_list import Option

from ...ui.safe import safe
from ..widgets import MessageBar, TensorInspector
from ..widgets.breakpoint_list import BreakpointList
from ..widgets.live_status import LiveStatus
from .help import CLOSE_HINT, HelpScreen

__all__ = ["StepHelpScreen", "StepScreen"]


class StepHelpScreen(HelpScreen):
    """The help screen of a stepping view: its own keys.

    Args:
        title: Heading.
        keys: (keys, what they do) rows.
    """

    def __init__(self, title: str, keys: Sequence[tuple[str, str]]) -> None:
        super().__init__()
        self.heading = title
        self.keys = list(keys)

    def compose(self) -> ComposeResult:
        """The key table."""
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold cyan", no_wrap=True)
        table.add_column()
        for key, what in self.keys:
            table.add_row(key, what)
        box = VerticalScroll()
        box.border_subtitle = CLOSE_HINT
        with box:
            heading = Text(self.heading, style="bold")
            heading.append(f"    ({CLOSE_HINT})", style="dim")
            yield Static(heading)
            yield Static(table)


class StepScreen(Screen[None]):
    """Base of the live and offline stepping views."""

    DEFAULT_CSS = """
    StepScreen #step-body { height: 1fr; }
    StepScreen #step-left { width: 34; border-right: vkey $primary 40%; }
    StepScreen #step-tensors { height: 1fr; border: round $primary 50%; }
    StepScreen #breakpoints { border: round $primary 50%; }
    StepScreen TensorInspector #tensor-list { display: none; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Back"),
        Binding("question_mark", "help", "Help"),
    ]

    #: Heading and (keys, what they do) rows of the help screen.
    HELP_TITLE = "Stepping — keys"
    HELP_KEYS: ClassVar[tuple[tuple[str, str], ...]] = ()
    #: Whether the breakpoint list is shown.
    WITH_BREAKPOINTS = False

    def __init__(self) -> None:
        super().__init__()
        self._shown_tensor = ""
        # set while the list's highlight moves programmatically (the load is already started)
        self._highlighting: str | None = None

    def compose(self) -> ComposeResult:
        """Status, messages, tensor list (and breakpoints), inspector, footer."""
        yield Header()
        yield LiveStatus(id="live-status")
        yield MessageBar(id="step-messages")
        with Horizontal(id="step-body"):
            with Vertical(id="step-left"):
                tensors = OptionList(id="step-tensors", markup=False)
                tensors.border_title = "Tensors here"
                yield tensors
                if self.WITH_BREAKPOINTS:
                    yield BreakpointList(id="breakpoints")
            yield TensorInspector(id="step-inspector")
        yield Footer()

    # -- for subclasses ------------------------------------------------------------------

    def load_tensor(self, name: str) -> None:
        """Load tensor ``name`` of the current position and call :meth:`show_tensor`."""
        raise NotImplementedError

    @property
    def tensor_names(self) -> list[str]:
        """The tensors listed at the current position."""
        options = self.query_one("#step-tensors", OptionList)
        return [str(options.get_option_at_index(i).id) for i in range(options.option_count)]

    @property
    def shown_tensor(self) -> str:
        """The tensor last handed to the inspector ("" if none)."""
        return self._shown_tensor

    def set_tensor_names(self, names: Sequence[str], *, prefer: Sequence[str] = ()) -> None:
        """List the tensors at the position and load a preferred one (or the first)."""
        options = self.query_one("#step-tensors", OptionList)
        options.clear_options()
        for name in names:
            options.add_option(Option(Text(safe(name)), id=name))
        if not names:
            return
        pick = next((p for p in prefer if p in names), names[0])
        self._highlighting = pick
        options.highlighted = list(names).index(pick)
        self.load_tensor(pick)

    def clear_tensors(self, message: str) -> None:
        """Empty the tensor list and show ``message`` in the inspector."""
        self.query_one("#step-tensors", OptionList).clear_options()
        self.query_one(TensorInspector).set_message(message)
        self._shown_tensor = ""

    def show_tensor(self, name: str, array: npt.NDArray[Any], *, title: str) -> None:
        """Hand one tensor to the inspector."""
        self.query_one(TensorInspector).set_tensors({name: array}, title=title)
        self._shown_tensor = name

    def message(self, text: str, *, severity: str = "warning") -> None:
        """Show a persistent message above the panels ("" hides it)."""
        bar = self.query_one("#step-messages", MessageBar)
        if text:
            bar.show_message(text, severity=severity)
        else:
            bar.clear_message()

    # -- events and actions --------------------------------------------------------------

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        """Load the tensor the user moved to."""
        if event.option_list.id != "step-tensors":
            return
        event.stop()
        name = event.option.id
        if name is None or name == self._highlighting:
            self._highlighting = None
            return
        self.load_tensor(name)

    def action_close(self) -> None:
        """Back to the previous screen."""
        self.dismiss()

    def action_help(self) -> None:
        """Show this view's keys."""
        self.app.push_screen(StepHelpScreen(self.HELP_TITLE, self.HELP_KEYS))

"""The help screen (``?``): every key binding and what the colours mean."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from ..health import NONFINITE_STYLES

__all__ = ["CLOSE_HINT", "KEYS", "HelpScreen"]

#: (keys, what they do), shown on the help screen.
KEYS: tuple[tuple[str, str], ...] = (
    ("← / →", "previous / next recorded step"),
    ("Home / End", "first / last step (End follows a live run)"),
    ("1 … 5", "Health, Series, Anomalies, Inspector, Scalars tab"),
    ("Tab / Shift+Tab", "move focus between panels"),
    ("↑ / ↓, mouse", "move in a list, table or tree; click to select"),
    ("Enter", "on an anomaly: jump to its step and module"),
    ("t", "cycle the tensor role shown (output, grad_output, weight, grad, ...)"),
    ("s", "show this step's tensor snapshot, or jump to the next step with one"),
    ("a", "jump to the next anomaly"),
    ("/", "filter modules and tags by name (Enter keeps the filter, Escape clears it)"),
    ("r", "rescan the log directory for runs"),
    ("l", "attach the live debugger to the highlighted live run (⏯)"),
    ("d", "step through the run's flight-recorder snapshots, module by module"),
    ("Inspector index", "type e.g. 0, :, 2:10 and Enter: the two ':' dimensions are shown"),
    ("?", "this help"),
    ("q", "quit"),
)

#: How to close the help, said on the help screen itself.
CLOSE_HINT = "Escape, q or ? closes this help"

COLOURS = (
    (" nan ", NONFINITE_STYLES["nan"][1], "NaN values (red text in tables: the tensor has NaN)"),
    (" +inf ", NONFINITE_STYLES["posinf"][1], "+Inf values (orange text: the tensor has +Inf)"),
    (" -inf ", NONFINITE_STYLES["neginf"][1], "-Inf values (magenta text: the tensor has -Inf)"),
    ("! ▲ ▼", "bold red", "in a chart: a step whose value is NaN, +Inf, -Inf (own colours)"),
    ("red", "bold red", "magnitudes above 1e4 (exploding)"),
    ("yellow", "yellow", "over 90% exact zeros in an activation, or a gradient norm below 1e-8"),
    ("-", "", "no such statistic: a tensor with no finite values has no mean, l2, ..."),
    ("● green", "green", "a run still being written (tailed live)"),
)


class HelpScreen(ModalScreen[None]):
    """Modal list of keys; any of Escape, q or ? closes it."""

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll {
        width: 84; max-width: 100%; height: auto; max-height: 90%;
        border: thick $primary; background: $surface; padding: 1 2;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "app.pop_screen", "Close help"),
    ]

    def compose(self) -> ComposeResult:
        """The key table and the colour legend."""
        keys = Table.grid(padding=(0, 2))
        keys.add_column(style="bold cyan", no_wrap=True)
        keys.add_column()
        for key, what in KEYS:
            keys.add_row(key, what)
        legend = Table.grid(padding=(0, 2))
        legend.add_column(no_wrap=True)
        legend.add_column()
        for label, style, what in COLOURS:
            legend.add_row(Text(label, style=style), what)
        box = VerticalScroll()
        box.border_subtitle = CLOSE_HINT
        with box:
            title = Text("vizdebug tui — keys", style="bold")
            title.append(f"    ({CLOSE_HINT})", style="dim")
            yield Static(title)
            yield Static(keys)
            yield Static(Text("\nColours", style="bold"))
            yield Static(legend)

"""The ``vizdebug tui`` application."""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

from textual.app import App
from textual.binding import Binding, BindingType

from ..runs.layout import default_root
from .data import RunStore
from .screens import HelpScreen, RunScreen

__all__ = ["VizdebugApp"]


class VizdebugApp(App[None]):
    """Browse, tail and inspect vizdebug runs (and other tools' event files) in a terminal.

    Args:
        path: A log directory, a run directory or one event file; None for
            ``$VIZDEBUG_LOGDIR`` or ``./runs``.
        poll_interval: Seconds between checks for appended events (live tail).
    """

    CSS_PATH = "app.tcss"
    TITLE = "vizdebug"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(
        self, path: str | os.PathLike[str] | None = None, *, poll_interval: float = 0.1
    ) -> None:
        super().__init__()
        root = Path(path) if path is not None else default_root()
        if root.is_file():  # one event file: its run
            root = root.parent
        self.root = root
        self.poll_interval = poll_interval

    def on_mount(self) -> None:
        """Show the run screen."""
        self.push_screen(RunScreen(self.root, poll_interval=self.poll_interval))

    @property
    def run_screen(self) -> RunScreen:
        """The main screen (under the help screen when that is open)."""
        for screen in reversed(self.screen_stack):
            if isinstance(screen, RunScreen):
                return screen
        raise LookupError("the run screen is not mounted yet")

    @property
    def store(self) -> RunStore | None:
        """The open run (None before one is opened)."""
        try:
            return self.run_screen.store
        except LookupError:
            return None

    def action_help(self) -> None:
        """Show the help screen."""
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

"""The ``vizdebug tui`` application."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from textual.app import App
from textual.binding import Binding, BindingType

from ..runs.layout import default_root
from .data import RunStore
from .live_marks import LiveMarker
from .screens import HelpScreen, RunScreen
from .scrollbars import use_whole_cell_scrollbars

if TYPE_CHECKING:
    from ..live import LiveRun

__all__ = ["VizdebugApp"]


class VizdebugApp(App[None]):
    """Browse, tail and inspect vizdebug runs (and other tools' event files) in a terminal.

    Args:
        path: A log directory, a run directory or one event file; None for
            ``$VIZDEBUG_LOGDIR`` or ``./runs``.
        poll_interval: Seconds between checks for appended events (live tail).
        attach: Live runs to attach to at start: one opens the live debugger, several a picker.
    """

    CSS_PATH = "app.tcss"
    TITLE = "vizdebug"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
        Binding("l", "attach", "Attach live", show=False),
        Binding("d", "step_snapshot", "Step snapshot", show=False),
    ]

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        poll_interval: float = 0.1,
        attach: Sequence[LiveRun] = (),
    ) -> None:
        super().__init__()
        root = Path(path) if path is not None else default_root()
        if root.is_file():  # one event file: its run
            root = root.parent
        self.root = root
        self.poll_interval = poll_interval
        self.attach_to = list(attach)
        self.live_marker = LiveMarker(self, root)

    def on_mount(self) -> None:
        """Show the run screen (and the live debugger when asked to attach)."""
        use_whole_cell_scrollbars()
        self.push_screen(RunScreen(self.root, poll_interval=self.poll_interval))
        self.live_marker.start()
        if len(self.attach_to) == 1:
            self.open_live(self.attach_to[0])
        elif self.attach_to:
            from .screens.prompt import LivePicker

            self.push_screen(LivePicker(self.attach_to), self._picked)

    def _picked(self, live: LiveRun | None) -> None:
        if live is not None:
            self.open_live(live)

    def open_live(self, live: LiveRun, *, control: bool = True) -> None:
        """Show the live debugger attached to ``live``."""
        from .screens.live_screen import LiveScreen

        self.push_screen(LiveScreen(live, control=control))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Attach and snapshot stepping only from the run screen."""
        if action in ("attach", "step_snapshot"):
            return isinstance(self.screen, RunScreen)
        return True

    def action_attach(self) -> None:
        """Attach the live debugger to the highlighted run (or the open one)."""
        from .live_actions import attach_selected

        attach_selected(self)

    def action_step_snapshot(self) -> None:
        """Step through the open run's snapshots, starting at the cursor step's."""
        from .live_actions import step_snapshots

        step_snapshots(self)

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

"""The runs of a log directory, live ones marked."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual.message import Message
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from ...ui.safe import safe

__all__ = ["RunEntry", "RunsList"]


@dataclass(frozen=True)
class RunEntry:
    """One run as the list shows it.

    Attributes:
        path: The run directory.
        label: Its name relative to the log directory.
        live: Whether a process is still writing it.
        steps: Steps of the run: 1 + the highest step seen (0 if unknown).
        anomalies: Anomalies recorded.
        warning: Why the run could not be read whole ("" if it could).
    """

    path: Path
    label: str
    live: bool = False
    steps: int = 0
    anomalies: int = 0
    warning: str = ""


class RunsList(OptionList):
    """Selectable list of runs; posts :class:`RunsList.RunChosen`."""

    DEFAULT_CSS = """
    RunsList { height: auto; max-height: 12; }
    """

    class RunChosen(Message):
        """The user picked a run."""

        def __init__(self, path: Path) -> None:
            super().__init__()
            self.path = path

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, markup=False)
        self.border_title = "Runs"
        self._entries: list[RunEntry] = []

    @property
    def entries(self) -> list[RunEntry]:
        """The runs shown."""
        return list(self._entries)

    def set_runs(self, entries: Sequence[RunEntry], *, current: Path | None = None) -> None:
        """Replace the list, keeping the highlighted run (else ``current``) highlighted."""
        if list(entries) == self._entries:
            return
        old = self._entries
        was = old[self.highlighted].path if self.highlighted is not None and old else None
        self._entries = list(entries)
        self.clear_options()
        for entry in entries:
            prompt = Text()
            prompt.append("● " if entry.live else "  ", style="green")
            prompt.append(safe(entry.label))
            extra = f"  {entry.steps} steps" if entry.steps else ""
            if entry.anomalies:
                prompt.append(extra)
                prompt.append(f"  {entry.anomalies}!", style="bold red")
            else:
                prompt.append(extra, style="dim")
            if entry.warning:
                prompt.append("  ⚠ not read whole", style="bold yellow")
            self.add_option(Option(prompt, id=str(entry.path)))
        paths = [e.path for e in entries]
        for keep in (was, current):
            if keep in paths:
                self.highlighted = paths.index(keep)
                break

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        """Turn a selection into :class:`RunChosen`."""
        event.stop()
        if event.option.id is not None:
            self.post_message(self.RunChosen(Path(event.option.id)))

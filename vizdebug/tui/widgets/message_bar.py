"""A one-or-two-line bar for what the user must know: no runs, unreadable records."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from ...ui.safe import safe

__all__ = ["MessageBar"]


class MessageBar(Static):
    """Shows a message (plain text, never markup); hidden while there is none."""

    DEFAULT_CSS = """
    MessageBar { height: auto; max-height: 4; padding: 0 1; display: none; }
    MessageBar.-error { background: $error 30%; }
    MessageBar.-warning { background: $warning 25%; }
    """

    def show_message(self, text: str, *, severity: str = "warning") -> None:
        """Show ``text``; ``severity`` is "warning" or "error"."""
        self.update(Text(safe(text)))
        self.set_class(severity == "error", "-error")
        self.set_class(severity != "error", "-warning")
        self.display = True

    def clear_message(self) -> None:
        """Hide the bar."""
        self.update("")
        self.display = False

    @property
    def text(self) -> str:
        """The message shown ("" when hidden)."""
        return str(self.content) if self.display else ""

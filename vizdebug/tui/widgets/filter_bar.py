"""The ``/`` filter line (as in k9s and lazygit): narrows the module tree, health table and tags."""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import Input

__all__ = ["FilterBar", "matches"]


def matches(name: str, text: str) -> bool:
    """Whether ``name`` passes the filter ``text`` (case-insensitive substring; "" passes all)."""
    return text.casefold() in name.casefold()


class FilterBar(Input):
    """A one-line filter, hidden until ``/``. Posts :class:`Changed` as the user types.

    Enter keeps the filter and hands focus back; Escape clears it and hides the bar.
    """

    DEFAULT_CSS = """
    FilterBar { display: none; height: 1; border: none; padding: 0 1; background: $boost; }
    FilterBar.-shown { display: block; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "clear", "Clear filter"),
    ]

    class Done(Message):
        """The user finished editing (Enter or Escape); focus goes back to the views."""

    def __init__(self, *, id: str | None = None) -> None:
        hint = "/ filter modules and tags (Enter: keep, Escape: clear)"
        super().__init__(placeholder=hint, id=id)
        # Focusable only while shown (else the screen's first focus lands on the hidden bar).
        self.can_focus = False

    def open(self) -> None:
        """Show the bar and focus it."""
        self.add_class("-shown")
        self.can_focus = True
        self.focus()

    def _hide(self) -> None:
        self.remove_class("-shown")
        self.can_focus = False

    def action_clear(self) -> None:
        """Clear the filter, hide the bar and hand focus back."""
        self.value = ""
        self._hide()
        self.post_message(self.Done())

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Keep the filter (the bar stays, showing it, while it is not empty)."""
        event.stop()
        if not self.value:
            self._hide()
        self.post_message(self.Done())

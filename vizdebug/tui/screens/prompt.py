"""Small modal dialogs of the live debugger: a one-line prompt and a live-run picker."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from ...live import LiveRun
from ...ui.safe import safe

__all__ = ["LivePicker", "PromptScreen"]

_CSS = """
{name} {{ align: center middle; }}
{name} > Vertical {{
    width: 80; height: auto; max-height: 80%;
    border: thick $primary; background: $surface; padding: 1 2;
}}
"""


class PromptScreen(ModalScreen[str | None]):
    """Ask for one line of text; Enter returns it, Escape returns None.

    Args:
        title: The question.
        placeholder: An example answer.
    """

    DEFAULT_CSS = _CSS.format(name="PromptScreen")
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, *, placeholder: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.placeholder = placeholder

    def compose(self) -> ComposeResult:
        """The question and an input."""
        with Vertical():
            yield Static(Text(self.title_text, style="bold"))
            yield Input(placeholder=self.placeholder, id="prompt-input")

    def on_mount(self) -> None:
        """Focus the input."""
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Return the text typed."""
        event.stop()
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        """Return nothing."""
        self.dismiss(None)


class LivePicker(ModalScreen[LiveRun | None]):
    """Choose one of several live runs to attach to.

    Args:
        runs: The live runs (from :func:`vizdebug.live.find_live_runs`).
    """

    DEFAULT_CSS = _CSS.format(name="LivePicker")
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, runs: Sequence[LiveRun]) -> None:
        super().__init__()
        self.runs = list(runs)

    def compose(self) -> ComposeResult:
        """The runs, one an option."""
        with Vertical():
            yield Static(Text("Several live runs: attach to which?", style="bold"))
            options = OptionList(id="live-runs", markup=False)
            for i, run in enumerate(self.runs):
                prompt = Text(safe(run.run or run.run_dir.name), style="bold")
                prompt.append(f"  pid {run.pid}  {run.run_dir}", style="dim")
                options.add_option(Option(prompt, id=str(i)))
            yield options

    def on_mount(self) -> None:
        """Focus the list, first run highlighted."""
        options = self.query_one(OptionList)
        options.highlighted = 0
        options.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        """Return the chosen run."""
        event.stop()
        if event.option.id is not None:
            self.dismiss(self.runs[int(event.option.id)])

    def action_cancel(self) -> None:
        """Return nothing."""
        self.dismiss(None)

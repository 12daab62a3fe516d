"""The step cursor's status line: which step, which module, which role."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from ...ui.safe import safe

__all__ = ["StepBar"]


class StepBar(Static):
    """One line: ``step 120 (121/5000) · module fc1 (output) · live``."""

    DEFAULT_CSS = """
    StepBar { height: 1; padding: 0 1; background: $boost; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        #: The step the bar shows (-1 before the first); benchmarks poll it.
        self.rendered_step = -1

    def show(
        self, *, step: int | None, index: int, total: int, module: str, role: str, live: bool
    ) -> None:
        """Render the cursor state (module names are shown literally)."""
        text = Text()
        if step is None:
            text.append("no steps recorded yet", style="dim")
        else:
            text.append("step ", style="dim")
            text.append(str(step), style="bold")
            text.append(f" ({index + 1}/{total})", style="dim")
        text.append("  ·  module ", style="dim")
        text.append(safe(module) or "-", style="bold")
        if role:
            text.append(f" ({safe(role)})", style="dim")
        if live:
            text.append("  ·  ● live", style="green")
        self.update(text)
        self.rendered_step = -1 if step is None else step

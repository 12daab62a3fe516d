"""The step cursor's status line: which step, which module, which role."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from ...ui.safe import safe

__all__ = ["StepBar"]


class StepBar(Static):
    """One line: ``step 120 of 5000 · 121 recorded · module fc1 (output) · live``.

    "of N" is the run's step count (1 + the highest step seen, the figure the runs list
    shows); "recorded" counts the steps with statistics.
    """

    DEFAULT_CSS = """
    StepBar { height: 1; padding: 0 1; background: $boost; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        #: The step the bar shows (-1 before the first); benchmarks poll it.
        self.rendered_step = -1

    def show(
        self,
        *,
        step: int | None,
        steps: int,
        recorded: int,
        module: str,
        role: str,
        live: bool,
        has_stats: bool = True,
    ) -> None:
        """Render the cursor state (module names are shown literally).

        Args:
            step: The cursor step (None before any).
            steps: The run's step count.
            recorded: Steps with statistics.
            module, role: The selection.
            live: Whether the run is still being written.
            has_stats: Whether the cursor step has statistics (else the views show the
                last recorded step before it, and the bar says so).
        """
        text = Text()
        if step is None:
            text.append("no steps recorded yet", style="dim")
        else:
            text.append("step ", style="dim")
            text.append(str(step), style="bold")
            text.append(f" of {steps} · {recorded} recorded", style="dim")
            if not has_stats:
                text.append(" · no statistics at this step", style="yellow")
        text.append("  ·  module ", style="dim")
        text.append(safe(module) or "-", style="bold")
        if role:
            text.append(f" ({safe(role)})", style="dim")
        if live:
            text.append("  ·  ● live", style="green")
        self.update(text)
        self.rendered_step = -1 if step is None else step

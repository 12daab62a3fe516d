"""Where a paused training stands: step, phase, module, enclosing modules, why it paused."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.text import Text
from textual.widgets import Static

from ...ui.safe import safe

__all__ = ["STATES", "LiveStatus", "chain_of"]

#: What the status line can say about the training process.
STATES = ("connecting", "running", "paused", "disconnected", "offline")

_STATE_STYLE = {
    "connecting": ("… connecting", "dim"),
    "running": ("▶ running", "bold green"),
    "paused": ("❚❚ paused", "bold yellow"),
    "disconnected": ("■ disconnected", "bold red"),
    "offline": ("◆ snapshot (offline)", "bold cyan"),
}


def chain_of(module: str) -> tuple[str, ...]:
    """The modules enclosing a dotted ``module`` name, outermost ("" = the model) first."""
    parts = module.split(".") if module else []
    return ("", *(".".join(parts[:i]) for i in range(1, len(parts))))


class LiveStatus(Static):
    """Four lines: the state, the position, the chain of enclosing modules and the reason.

    Names are shown literally (never interpreted as markup). Tests and benchmarks read
    :attr:`position`, :attr:`state` and :attr:`renders`.
    """

    DEFAULT_CSS = """
    LiveStatus { height: auto; min-height: 4; padding: 0 1; background: $boost; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.state = "connecting"
        self.position: dict[str, Any] | None = None
        self.reason = ""
        self.control = ""
        #: The training step while running (None: unknown or paused).
        self.step: int | None = None
        #: How many times the widget was updated (benchmarks wait for it to change).
        self.renders = 0

    @property
    def module(self) -> str | None:
        """The module of the position shown (None without a position)."""
        return None if self.position is None else str(self.position.get("module", ""))

    def show(
        self,
        *,
        state: str,
        position: Mapping[str, Any] | None,
        reason: str = "",
        control: str = "",
        run: str = "",
        step: int | None = None,
    ) -> None:
        """Render the state and position (a :class:`~vizdebug.live.Position` as JSON).

        Args:
            state: One of :data:`STATES`.
            position: Step, phase, module, module_type, chain, call, index; None if unknown.
            reason: Why training paused.
            control: "controlling", "observing" or "".
            run: The run's name.
            step: The training step while running (shown when there is no position).
        """
        self.state = state
        self.position = dict(position) if position is not None else None
        self.reason = reason
        self.control = control
        self.step = step
        label, style = _STATE_STYLE.get(state, (state, "bold"))
        text = Text(label, style=style)
        if control:
            text.append("  ·  ", style="dim")
            text.append(control, style="bold" if control == "controlling" else "bold magenta")
        if run:
            text.append("  ·  run ", style="dim")
            text.append(safe(run))
        text.append("\n")
        pos = self.position
        if pos is None:
            if state == "running" and step is not None:
                text.append("step ", style="dim")
                text.append(str(step), style="bold")
                text.append("  ·  training runs (p pauses at the next hook point)", style="dim")
            elif state == "running":
                text.append("training runs (p pauses at the next hook point)", style="dim")
            else:
                text.append("-")
            text.append("\n\n", style="dim")
        else:
            module = str(pos.get("module", ""))
            text.append("step ", style="dim")
            text.append(str(pos.get("step", "?")), style="bold")
            text.append("  ·  ", style="dim")
            text.append(safe(pos.get("phase", "")), style="bold")
            text.append("  ·  module ", style="dim")
            text.append(safe(module) or "(model)", style="bold cyan")
            mtype = str(pos.get("module_type", ""))
            if mtype:
                text.append(f" ({safe(mtype)})")
            if pos.get("call"):
                text.append(f"  call {pos['call']}", style="dim")
            text.append("\n")
            chain = pos.get("chain")
            chain = list(chain) if isinstance(chain, list | tuple) else list(chain_of(module))
            text.append("in ", style="dim")
            text.append(" / ".join(safe(c) or "(model)" for c in chain) if chain else "-")
            text.append("\n")
        if reason:
            text.append("reason ", style="dim")
            text.append(safe(reason), style="bold red" if "NaN" in reason else "")
        self.update(text)
        self.renders += 1

"""The breakpoints set on a live run; Delete clears the highlighted one."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from ...ui.safe import safe

__all__ = ["BreakpointList", "describe_breakpoint"]

_OPS = {"abs_gt": "|x| >", "grad_norm_gt": "grad norm >", "zero_frac_gt": "zero fraction >"}


def describe_breakpoint(bp: Mapping[str, Any]) -> str:
    """A breakpoint as the user wrote it: ``nan``, ``step:100``, ``|x| > 10 @fc*``, ``… (once)``."""
    kind, value, module = bp.get("kind"), bp.get("value"), str(bp.get("module", "*"))
    if kind == "nan":
        text = "nan"
    elif kind == "step":
        text = f"step:{value}"
    elif kind == "module":
        text = f"module:{value}"
    else:
        text = f"{_OPS.get(str(kind), str(kind))} {value:g}" if isinstance(value, float) else ""
        text = text or f"{kind} {value}"
    text += f" @{module}" if module != "*" and kind not in ("step", "module") else ""
    return text + (" (once)" if bp.get("once") is True else "")


class BreakpointList(OptionList):
    """Lists breakpoints (``status()["breakpoints"]``); posts :class:`BreakpointList.Clear`."""

    DEFAULT_CSS = """
    BreakpointList { height: auto; min-height: 3; max-height: 10; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("delete,backspace", "clear_selected", "Clear breakpoint"),
    ]

    class Clear(Message):
        """The user asked to remove breakpoint ``break_id``."""

        def __init__(self, break_id: int) -> None:
            super().__init__()
            self.break_id = break_id

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, markup=False)
        self.border_title = "Breakpoints (b add, Del clear)"
        self._ids: list[int] = []

    @property
    def break_ids(self) -> list[int]:
        """The ids shown, in order."""
        return list(self._ids)

    def set_breakpoints(self, breakpoints: Sequence[Mapping[str, Any]]) -> None:
        """Replace the list (keeps the highlight where it can)."""
        ids = [int(b.get("id", 0)) for b in breakpoints]
        if ids == self._ids:
            return
        old = self.highlighted
        self._ids = ids
        self.clear_options()
        for bp in breakpoints:
            prompt = Text(f"#{bp.get('id')} ", style="dim")
            prompt.append(safe(describe_breakpoint(bp)))
            self.add_option(Option(prompt, id=str(bp.get("id"))))
        if ids:
            self.highlighted = min(old or 0, len(ids) - 1)

    def action_clear_selected(self) -> None:
        """Ask to clear the highlighted breakpoint."""
        if self.highlighted is not None and 0 <= self.highlighted < len(self._ids):
            self.post_message(self.Clear(self._ids[self.highlighted]))

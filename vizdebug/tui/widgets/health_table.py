"""A row per module: its latest activation, gradient and weight statistics, colour-coded."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.message import Message
from textual.widgets import DataTable

from ...ui.safe import safe
from ..data import Latest, RunStore
from ..health import fmt, problems, severity_style, stat, styled

__all__ = ["HealthRow", "HealthTable", "health_rows"]

#: Flags come right after the name: what went wrong stays in view at 80 columns.
COLUMNS = ("module", "flags", "act mean", "act std", "act |max|", "zeros", "grad l2", "weight l2")

HealthRow = tuple[str, Latest | None, Latest | None, str, Latest | None]


def health_rows(store: RunStore, names: Sequence[str], step: int | None) -> list[HealthRow]:
    """``(name, output, gradient, gradient role, weight)`` per name, at ``step``.

    The gradient is the output gradient (``grad_output``) or, for a parameter, ``grad``.
    """
    rows: list[HealthRow] = []
    for name in names:
        roles = store.roles_of(name)
        if not roles:
            continue
        out = store.at(name, "output", step) if "output" in roles else None
        grole = "grad_output" if "grad_output" in roles else "grad"
        grad = store.at(name, grole, step) if grole in roles else None
        weight = store.at(name, "weight", step) if "weight" in roles else None
        rows.append((name, out, grad, grole, weight))
    return rows


def _cells(row: HealthRow) -> list[Text]:
    name, out, grad, grole, weight = row
    cells = [Text(safe(name)) if name else Text("(root)", style="dim")]
    if out is not None:
        lo, hi = stat(out, "min"), stat(out, "max")
        biggest = max(abs(lo), abs(hi)) if lo is not None and hi is not None else None
        numel = out.get("numel")
        zeros = out.get("zeros") / numel if numel else float("nan")
        cells += [
            styled(fmt(stat(out, "mean")), out, "output"),
            styled(fmt(stat(out, "std")), out, "output"),
            styled(fmt(biggest), out, "output"),
            styled(f"{zeros:.0%}" if numel else "-", out, "output"),
        ]
    else:
        cells += [Text("-", style="dim")] * 4
    # A statistic over no finite values is a dash (never 0), coloured by the tensor's health.
    cells.append(styled(fmt(stat(grad, "l2")), grad, grole) if grad else Text("-", style="dim"))
    cells.append(
        styled(fmt(stat(weight, "l2")), weight, "weight") if weight else Text("-", style="dim")
    )
    flags = Text()
    for stats, role in ((out, "output"), (grad, grole), (weight, "weight")):
        if stats is None:
            continue
        for label, severity in problems(stats, role):
            flags.append(f"{label}({role}) ", style=severity_style(severity))
    flags.rstrip()
    cells.insert(1, flags)
    return cells


class HealthTable(DataTable[Text]):
    """Health of every recorded module at the cursor step. Posts :class:`Highlighted`."""

    class Highlighted(Message):
        """The cursor moved to a module's row."""

        def __init__(self, module: str) -> None:
            super().__init__()
            self.module = module

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self._names: list[str] = []
        #: The step the rows show (None: none yet).
        self.shown_step: int | None = None

    def on_mount(self) -> None:
        """Add the columns."""
        for col in COLUMNS:
            self.add_column(col, key=col)

    @property
    def names(self) -> list[str]:
        """Module names in row order."""
        return list(self._names)

    def show_rows(self, rows: Sequence[HealthRow], *, step: int | None) -> None:
        """Replace the rows (statistics at ``step``), keeping the cursor on the same module."""
        current = self._names[self.cursor_row] if 0 <= self.cursor_row < len(self._names) else None
        self.clear()
        self._names = [r[0] for r in rows]
        self.add_rows(_cells(r) for r in rows)
        if current in self._names:
            self.move_cursor(row=self._names.index(current), animate=False)
        self.shown_step = step

    def select_name(self, name: str) -> None:
        """Move the cursor to a module's row (no-op for an unknown name)."""
        if name in self._names:
            row = self._names.index(name)
            if row != self.cursor_row:
                self.move_cursor(row=row, animate=False)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        """Turn a highlight into :class:`Highlighted`."""
        event.stop()
        if 0 <= event.cursor_row < len(self._names):
            self.post_message(self.Highlighted(self._names[event.cursor_row]))

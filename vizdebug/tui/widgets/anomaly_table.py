"""Every anomaly of a run; Enter jumps to its step and module."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.message import Message
from textual.widgets import DataTable

from ...events import Anomaly
from ...ui.safe import safe

__all__ = ["MESSAGE_WIDTH", "AnomalyTable", "describe"]

COLUMNS = ("step", "kind", "module", "phase", "role", "nan", "inf", "message")
#: Characters of a message shown in its row; the detail under the table shows all of it.
MESSAGE_WIDTH = 60


def _first_line(message: str, width: int) -> str:
    line = message.splitlines()[0] if message else ""
    return line if len(line) <= width and line == message else line[: width - 1] + "…"


def describe(a: Anomaly) -> Text:
    """The whole anomaly, for the detail pane (every field literal, the message wrapped)."""
    text = Text()
    text.append(f"step {a.step}  ", style="bold")
    text.append(safe(a.kind), style="bold red")
    text.append(f"  in {safe(_where(a))}", style="bold")
    if getattr(a, "module_type", ""):
        text.append(f" ({safe(a.module_type)})", style="dim")
    text.append(
        f"  {safe(a.phase)} {safe(a.role)}  nan {a.nan}  +inf {a.posinf}  -inf {a.neginf}\n"
    )
    text.append(safe(a.message))
    return text


def _where(a: Anomaly) -> str:
    """The module's name; ``(root)`` for the root module, ``?`` where the origin is unknown."""
    return a.module or ("(root)" if getattr(a, "module_type", "") else "?")


class AnomalyTable(DataTable[Text]):
    """Anomalies in file order. Posts :class:`Jump` on Enter or click."""

    class Highlighted(Message):
        """The cursor moved to an anomaly's row."""

        def __init__(self, anomaly: Anomaly) -> None:
            super().__init__()
            self.anomaly = anomaly

    class Jump(Message):
        """Go to an anomaly's step and module."""

        def __init__(self, anomaly: Anomaly) -> None:
            super().__init__()
            self.anomaly = anomaly

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self._anomalies: list[Anomaly] = []

    def on_mount(self) -> None:
        """Add the columns."""
        for col in COLUMNS:
            self.add_column(col, key=col)

    @property
    def anomalies(self) -> list[Anomaly]:
        """The anomalies shown, in row order."""
        return list(self._anomalies)

    def add_anomalies(self, anomalies: Sequence[Anomaly]) -> None:
        """Append rows (every field shown literally, never as markup)."""
        for a in anomalies:
            self._anomalies.append(a)
            self.add_row(
                Text(str(a.step), style="bold"),
                Text(safe(a.kind), style="bold red"),
                Text(safe(_where(a))),
                Text(safe(a.phase)),
                Text(safe(a.role)),
                Text(str(a.nan)),
                Text(str(a.posinf + a.neginf)),
                # one line per row: the whole message is under the table (wrapped)
                Text(safe(_first_line(a.message, MESSAGE_WIDTH))),
            )

    @property
    def current(self) -> Anomaly | None:
        """The anomaly under the cursor (None without rows)."""
        row = self.cursor_row
        return self._anomalies[row] if 0 <= row < len(self._anomalies) else None

    def reset(self) -> None:
        """Remove every row."""
        self._anomalies = []
        self.clear()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        """Turn a highlight into :class:`Highlighted` (the screen shows the whole anomaly)."""
        event.stop()
        if 0 <= event.cursor_row < len(self._anomalies):
            self.post_message(self.Highlighted(self._anomalies[event.cursor_row]))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Turn Enter on a row into :class:`Jump`."""
        event.stop()
        if 0 <= event.cursor_row < len(self._anomalies):
            self.post_message(self.Jump(self._anomalies[event.cursor_row]))

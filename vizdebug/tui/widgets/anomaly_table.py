"""Every anomaly of a run; Enter jumps to its step and module."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.message import Message
from textual.widgets import DataTable

from ...events import Anomaly
from ...ui.safe import safe

__all__ = ["AnomalyTable"]

COLUMNS = ("step", "kind", "module", "phase", "role", "nan", "inf", "message")


class AnomalyTable(DataTable[Text]):
    """Anomalies in file order. Posts :class:`Jump` on Enter or click."""

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
                Text(safe(a.module) or "?"),
                Text(safe(a.phase)),
                Text(safe(a.role)),
                Text(str(a.nan)),
                Text(str(a.posinf + a.neginf)),
                Text(safe(a.message)),
            )

    def reset(self) -> None:
        """Remove every row."""
        self._anomalies = []
        self.clear()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Turn Enter on a row into :class:`Jump`."""
        event.stop()
        if 0 <= event.cursor_row < len(self._anomalies):
            self.post_message(self.Jump(self._anomalies[event.cursor_row]))

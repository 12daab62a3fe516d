"""The dashboard's text logs: the ``anomalies`` and ``notes`` panes.

A :class:`LogPane` collects HTML lines (:meth:`LogPane.add`, no I/O) and sends them
(:meth:`LogPane.send`): the first send creates the pane with what it keeps, later ones append.
A pane shows at most ``max_lines`` entries; later ones are counted, and one line says so. After
the server was away (:meth:`LogPane.reconnected`) the pane is checked before it is appended to
and recreated if it is gone.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from . import windows as W
from .client import VisdomClient

__all__ = ["LogPane"]


@dataclass
class LogPane:
    """One appended text pane.

    Attributes:
        win, title: The Visdom window id and title.
        empty: What the pane shows before its first entry.
        max_lines: Most entries the pane shows.
        kept: The latest entries sent, to recreate the pane with.
        pending: Entries waiting to be sent.
        shown: Entries sent so far.
        capped: Entries not shown because the pane was full.
        state: ``new`` (create next), ``ok`` (append) or ``unverified`` (check first).
    """

    win: str
    title: str
    empty: str
    max_lines: int
    kept: deque[str] = field(init=False)
    pending: list[str] = field(default_factory=list)
    shown: int = 0
    capped: int = 0
    cap_noted: bool = False
    state: str = "new"

    def __post_init__(self) -> None:
        self.kept = deque(maxlen=self.max_lines)

    def add(self, html: str) -> None:
        """Queue an entry, or count it when the pane is full."""
        if self.shown + len(self.pending) >= self.max_lines:
            self.capped += 1
            return
        self.pending.append(html)

    def reconnected(self) -> None:
        """The server was away: check the pane before appending to it."""
        if self.state == "ok":
            self.state = "unverified"

    def send(self, client: VisdomClient, env: str, *, force: bool) -> int:
        """Send the pending entries; returns how many were sent.

        Args:
            client: The Visdom client.
            env: The environment.
            force: Create (or check) the pane even with nothing pending.
        """
        note = self.capped > 0 and not self.cap_noted
        if not self.pending and not note and not (force and self.state != "ok"):
            return 0
        lines = self.pending
        if note:
            lines = [
                *lines,
                f"<i>This pane shows the first {self.max_lines} entries; later ones are only "
                "in the run directory (vizdebug show RUN).</i>",
            ]
        if self.state == "unverified":
            self.state = "ok" if client.exists(env, self.win) else "new"
        if self.state == "new":
            html = "<br>".join([*self.kept, *lines]) or self.empty
            client.create(W.text_payload(env, self.win, title=self.title, html=html))
            self.state = "ok"
        elif lines:
            client.update(W.text_append_payload(env, self.win, "<br>".join(lines)))
        self.kept.extend(lines)
        self.cap_noted = self.cap_noted or note
        sent = len(self.pending)
        self.shown += sent
        self.pending = []
        return sent

"""The dashboard's line windows: one per scalar tag, scalar group or statistics chunk.

:meth:`LineWindow.for_key` names and titles a window from its key in the
:class:`~vizdebug_visdom.aggregate.PointBuffer` (``("scalar", tag)``,
``("group", prefix, chunk)`` or ``("stats", role, stat, chunk)``). :meth:`LineWindow.send`
takes the window's pending points and sends them: it creates the window the first time and
appends after that (``append=True``, never recreating it; a new line gets its own trace), after
the server was away it first asks the server which lines the window holds, and when the server
refuses a request it keeps the points for a retry, dropping them (counted) after
:data:`MAX_WINDOW_ERRORS` refusals in a row.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from html import escape
from typing import Any, cast

from . import windows as W
from .aggregate import PointBuffer
from .client import VisdomClient, VisdomRequestError

__all__ = ["MAX_WINDOW_ERRORS", "LineWindow"]

#: Request errors in a row after which a window's pending points are dropped.
MAX_WINDOW_ERRORS = 3


@dataclass
class LineWindow:
    """One line window and what the server is known to hold in it.

    Attributes:
        key: The window's key in the point buffer.
        win, title, ylabel: The Visdom window id, title and y-axis label.
        legend: Whether the window shows a legend (one line per module or tag).
        order: Line names in the order of the window's traces.
        state: ``new`` (create next), ``ok`` (append) or ``unverified`` (check first).
        errors: Refused requests in a row.
    """

    key: Hashable
    win: str
    title: str
    ylabel: str
    legend: bool
    order: list[str] = field(default_factory=list)
    state: str = "new"  # new | ok | unverified
    errors: int = 0

    @classmethod
    def for_key(cls, key: Hashable) -> LineWindow:
        """The window for a point-buffer key."""
        parts = cast(tuple[Any, ...], key)
        if parts[0] == "scalar":
            tag = escape(str(parts[1]))
            return cls(key, W.window_id("scalar", parts[1]), tag, tag, legend=False)
        if parts[0] == "group":
            _, prefix, chunk = parts
            title = escape(prefix) + (f" (part {chunk + 1})" if chunk else "")
            return cls(key, W.window_id("group", prefix, chunk), title, escape(prefix), True)
        _, role, stat, chunk = parts
        title = f"{escape(str(role))}: {W.STAT_LABELS[stat]}"
        if chunk:
            title += f" (part {chunk + 1})"
        return cls(key, W.window_id("stats", role, stat, chunk), title, W.STAT_LABELS[stat], True)

    def send(
        self, client: VisdomClient, env: str, points: PointBuffer, max_points: int | None
    ) -> int | None:
        """Send this window's pending points (at most ``max_points`` per line).

        Returns:
            The points sent, or None when the server refused a request: what was not sent goes
            back into ``points`` for a retry, or after :data:`MAX_WINDOW_ERRORS` refusals in a
            row is dropped and counted in ``points.dropped``.

        Raises:
            VisdomUnreachableError: The server stopped answering (the points are kept).
        """
        todo = points.take(self.key, max_points)
        sent: list[str] = []
        try:
            if self.state == "unverified":
                self.order = self._server_order(client, env)
                self.state = "ok" if self.order else "new"
            if self.state == "new":
                traces = [(name, xs, ys) for name, (xs, ys) in todo.items()]
                client.create(
                    W.line_create_payload(
                        env,
                        self.win,
                        title=self.title,
                        ylabel=self.ylabel,
                        traces=traces,
                        legend=self.legend,
                    )
                )
                self.order = list(todo)
                self.state = "ok"
                sent = list(todo)
            else:
                known = set(self.order)
                if any(name in known for name in todo):
                    client.update(W.line_append_payload(env, self.win, self.order, todo))
                    sent = [name for name in todo if name in known]
                for name, (xs, ys) in todo.items():
                    if name not in known:
                        client.update(W.line_trace_payload(env, self.win, name, xs, ys))
                        self.order.append(name)
                        sent.append(name)
        except VisdomRequestError:
            # The server is up but refused (a window closed in the browser, ...): check the
            # window next time; give up on these points after a few tries.
            self.state = "unverified"
            self.errors += 1
            if self.errors < MAX_WINDOW_ERRORS:
                points.restore(self.key, {n: p for n, p in todo.items() if n not in sent})
            else:
                self.errors = 0
                points.dropped += sum(len(p[0]) for n, p in todo.items() if n not in sent)
            return None
        except Exception:
            points.restore(self.key, {n: p for n, p in todo.items() if n not in sent})
            raise
        self.errors = 0
        return sum(len(p[0]) for p in todo.values())

    def _server_order(self, client: VisdomClient, env: str) -> list[str]:
        if not client.exists(env, self.win):
            return []
        content = client.window_data(env, self.win).get("content", {})
        data = content.get("data", []) if isinstance(content, dict) else []
        return [str(t.get("name", f"\0{i}")) for i, t in enumerate(data)]

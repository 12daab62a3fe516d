"""The windows of one Visdom environment: what events go where, and sending what changed.

:class:`Dashboard` has two halves. :meth:`Dashboard.ingest` turns events into pending points,
log lines and latest panes (no I/O, cheap). :meth:`Dashboard.send` pushes what is pending
through a :class:`~vizdebug_visdom.client.VisdomClient`: it creates a window the first time,
appends to it after that (``append=True``, never recreating it) and, after the server was away,
checks each window still exists before touching it. Line windows are sent by
:class:`~vizdebug_visdom.lines.LineWindow` and the text logs by
:class:`~vizdebug_visdom.logs.LogPane`; the replaced panes and histogram windows are kept here.

Windows:

- ``run info`` and ``model`` (text, replaced when a new RunInfo / ModelStructure arrives);
- ``anomalies`` (text log, appended) and ``notes`` (text log: notes and snapshots, appended);
- one line window per scalar tag, except for tags under a ``group_scalars`` prefix
  (``update_ratio/<parameter>``): one window per prefix, one line per tag, chunked like
  statistics windows;
- per-module statistics: one window per role and statistic (``grad: L2 norm``) with one line per
  module, at most ``lines_per_window`` lines each; more modules continue in ``(part 2)``, ...
  so a 100+ module model stays readable (click a legend entry to hide a line);
- the latest histogram of a module's tensor of the chosen roles (bar windows, replaced), up to
  ``max_histograms`` windows.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from vizdebug.events import (
    Anomaly,
    Event,
    Histogram,
    ModelStructure,
    Note,
    RunInfo,
    Scalar,
    SnapshotRef,
    TensorStats,
)

from . import windows as W
from .aggregate import PointBuffer
from .client import VisdomClient
from .lines import LineWindow
from .logs import LogPane

__all__ = ["Dashboard"]

_NO_ANOMALIES = "<i>No anomalies so far.</i>"


@dataclass
class _Hist:
    win: str
    event: TensorStats | Histogram
    dirty: bool = True


@dataclass
class _Pane:
    win: str
    payload: dict[str, Any]
    dirty: bool = True


class Dashboard:
    """State and sending for one environment.

    Args:
        env: The Visdom environment (``None``: derived from the first event's run).
        stats: Statistics drawn per module (keys of :data:`~vizdebug_visdom.windows.STAT_LABELS`).
        lines_per_window: Most module lines in one statistics window.
        max_points: Most points one line gets per send (more are averaged; None: no limit).
        max_buffer: Most points held while waiting to be sent.
        max_histograms: Most histogram windows.
        histogram_roles: Roles whose histograms get windows.
        max_log_lines: Most lines a log pane shows; later ones are counted.
        group_scalars: Tag prefixes whose scalars share windows, one line per tag
            (``update_ratio/<parameter>`` from the torch adapter: one window, not hundreds).
        clock: Monotonic seconds, for send deadlines.

    Raises:
        ValueError: An unknown statistic or a non-positive limit.
    """

    def __init__(
        self,
        env: str | None,
        *,
        stats: Sequence[str],
        lines_per_window: int,
        max_points: int | None,
        max_buffer: int,
        max_histograms: int,
        histogram_roles: Sequence[str],
        max_log_lines: int,
        group_scalars: Sequence[str] = (),
        clock: Callable[[], float],
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        unknown = [s for s in stats if s not in W.STAT_LABELS]
        if unknown:
            raise ValueError(f"unknown statistics {unknown}; choose from {sorted(W.STAT_LABELS)}")
        if lines_per_window < 1 or max_log_lines < 1 or max_histograms < 0:
            raise ValueError("lines_per_window and max_log_lines must be at least 1")
        if max_points is not None and max_points < 1:
            raise ValueError(f"max_points must be at least 1 or None, got {max_points}")
        self.env = env
        self.rank, self.world_size = rank, world_size
        self.stats = tuple(stats)
        self._getters = [(s, operator.attrgetter(s)) for s in self.stats]
        self.lines_per_window = lines_per_window
        self.max_points = max_points
        self.max_histograms = max_histograms
        self.histogram_roles = frozenset(histogram_roles)
        self.clock = clock
        self.points = PointBuffer(max_buffer, compact_to=max_points)
        self._lines: dict[Hashable, LineWindow] = {}
        self._scalar_names: dict[str, tuple[Hashable, str]] = {}
        self.group_scalars = frozenset(group_scalars)
        self._groups: dict[str, dict[str, int]] = {}
        self._modules: dict[str, dict[tuple[str, int], tuple[int, str]]] = {}
        self._panes: dict[str, _Pane] = {}  # info, model: replaced
        self._hists: dict[Hashable, _Hist] = {}
        self._hist_capped = False
        self.anomalies = LogPane(
            W.window_id("log", "anomalies"), "anomalies", _NO_ANOMALIES, max_log_lines
        )
        self.notes = LogPane(W.window_id("log", "notes"), "notes", "", max_log_lines)
        self._pending_panes: list[tuple[str, RunInfo | ModelStructure]] = []
        #: Points and log lines sent since the start.
        self.points_sent = 0
        self.lines_sent = 0
        #: Requests for line windows the server refused (each one is retried after a check).
        self.request_errors = 0

    # -- ingest: no I/O --------------------------------------------------------------------

    def ingest(self, events: Sequence[Event]) -> None:
        """Buffer a batch of events."""
        add = self.points.add
        names = self._scalar_names
        for event in events:
            if isinstance(event, Scalar):
                where = names.get(event.tag)
                if where is None:
                    where = self._scalar_line(event.tag)
                add(where[0], where[1], event.step, event.value)
            elif isinstance(event, TensorStats):
                self._ingest_stats(event)
            elif isinstance(event, Anomaly):
                self.anomalies.add(W.anomaly_html(event))
            elif isinstance(event, Note):
                self.notes.add(W.note_html(event))
            elif isinstance(event, SnapshotRef):
                self.notes.add(W.snapshot_html(event))
            elif isinstance(event, RunInfo):
                self._pending_panes.append(("info", event))
            elif isinstance(event, ModelStructure):
                self._pending_panes.append(("model", event))
            elif isinstance(event, Histogram):
                self._histogram(("histogram", event.tag), event)
            if not self.env and event.run:
                self.env = W.env_name(event.run, rank=self.rank, world_size=self.world_size)

    def _scalar_line(self, tag: str) -> tuple[Hashable, str]:
        prefix, _, rest = tag.partition("/")
        if rest and prefix in self.group_scalars:
            members = self._groups.setdefault(prefix, {})
            index = members.setdefault(rest, len(members))
            where: tuple[Hashable, str] = (
                ("group", prefix, index // self.lines_per_window),
                escape(rest),
            )
        else:
            where = (("scalar", tag), escape(tag))
        self._scalar_names[tag] = where
        return where

    def _ingest_stats(self, event: TensorStats) -> None:
        role = event.role
        modules = self._modules.get(role)
        if modules is None:
            modules = self._modules[role] = {}
        key = (event.name, event.call)
        slot = modules.get(key)
        if slot is None:
            label = event.name or "(root)"
            if event.call:
                label += f" [call {event.call}]"
            slot = modules[key] = (len(modules) // self.lines_per_window, escape(label))
        chunk, line = slot
        stats = event.stats
        step = event.step
        add = self.points.add
        for stat, get in self._getters:
            add(("stats", role, stat, chunk), line, step, float(get(stats)))
        if role in self.histogram_roles and stats.hist_counts:
            self._histogram(("stats", event.name, role, event.call), event)

    def _histogram(self, key: tuple[Any, ...], event: TensorStats | Histogram) -> None:
        # Only the latest event is kept; its payload is built when it is sent.
        hist = self._hists.get(key)
        if hist is not None:
            hist.event = event
            hist.dirty = True
        elif self._hist_room():
            self._hists[key] = _Hist(W.window_id("hist", *key), event)

    @staticmethod
    def _hist_payload(env: str, hist: _Hist) -> dict[str, Any]:
        event = hist.event
        if isinstance(event, Histogram):
            return W.bar_payload(
                env,
                hist.win,
                title=f"{escape(event.tag)} (step {event.step})",
                x=list(event.bucket_limits),
                y=list(event.bucket_counts),
                xlabel="bucket (right edge)",
            )
        stats = event.stats
        n = len(stats.hist_counts)
        width = (stats.hist_hi - stats.hist_lo) / n if n else 0.0
        name = escape(event.name or "(root)")
        return W.bar_payload(
            env,
            hist.win,
            title=f"{name}: {escape(event.role)} histogram (step {event.step})",
            x=[stats.hist_lo + (i + 0.5) * width for i in range(n)],
            y=[float(c) for c in stats.hist_counts],
            xlabel="value",
        )

    def _hist_room(self) -> bool:
        if len(self._hists) < self.max_histograms:
            return True
        if not self._hist_capped:
            self._hist_capped = True
            self.notes.add(
                f"<i>Histogram windows are capped at {self.max_histograms}; later modules "
                "get none (raise max_histograms, or narrow histogram_roles).</i>"
            )
        return False

    # -- send ------------------------------------------------------------------------------

    def reconnected(self) -> None:
        """The server was away: check every window before appending; resend latest panes."""
        for line in self._lines.values():
            if line.state == "ok":
                line.state = "unverified"
        self.anomalies.reconnected()
        self.notes.reconnected()
        for pane in self._panes.values():
            pane.dirty = True
        for hist in self._hists.values():
            hist.dirty = True

    def pending(self) -> int:
        """Points and log lines waiting to be sent."""
        return len(self.points) + len(self.anomalies.pending) + len(self.notes.pending)

    def pending_windows(self) -> int:
        """Line and histogram windows with something to send."""
        return len(list(self.points.windows())) + sum(p.dirty for p in self._hists.values())

    def send(
        self,
        client: VisdomClient,
        deadline: float,
        on_window: Callable[[], None] | None = None,
    ) -> bool:
        """Send what is pending, stopping at ``deadline`` (what is left stays pending).

        Returns whether everything pending was sent. ``on_window`` is called after each line
        or histogram window sent (for a progress bar).

        Raises:
            VisdomUnreachableError: The server stopped answering (what was not sent is kept).
        """
        env = self.env or W.env_name("main")
        self.env = env
        self._build_panes(env)
        for pane in self._panes.values():
            if pane.dirty:
                client.create(pane.payload)
                pane.dirty = False
        self.lines_sent += self.anomalies.send(client, env, force=True)
        self.lines_sent += self.notes.send(client, env, force=False)
        for key in self.points.windows():
            if self.clock() > deadline:
                return False
            self._send_lines(client, env, key)
            if on_window is not None:
                on_window()
        for hist in self._hists.values():
            if hist.dirty:
                if self.clock() > deadline:
                    return False
                client.create(self._hist_payload(env, hist))
                hist.dirty = False
                if on_window is not None:
                    on_window()
        return True

    def _build_panes(self, env: str) -> None:
        for kind, event in self._pending_panes:
            if isinstance(event, RunInfo):
                html = W.run_info_html(event, env=env)
                win, title = W.window_id("pane", "info"), "run info"
            else:
                html = W.structure_html(event)
                win, title = W.window_id("pane", "model"), "model"
            self._panes[kind] = _Pane(win, W.text_payload(env, win, title=title, html=html))
        self._pending_panes.clear()

    def _send_lines(self, client: VisdomClient, env: str, key: Hashable) -> None:
        line = self._lines.get(key)
        if line is None:
            line = self._lines[key] = LineWindow.for_key(key)
        sent = line.send(client, env, self.points, self.max_points)
        if sent is None:
            self.request_errors += 1
        else:
            self.points_sent += sent

    def counts(self) -> dict[str, int]:
        """Counts for status: windows by kind, what is pending, log entries not shown."""
        return {
            "line_windows": len(self._lines),
            "histogram_windows": len(self._hists),
            "points_pending": len(self.points),
            "log_lines_pending": len(self.anomalies.pending) + len(self.notes.pending),
            "log_lines_not_shown": self.anomalies.capped + self.notes.capped,
        }

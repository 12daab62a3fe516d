"""The Visdom sink: live windows on a Visdom server, never at the cost of training.

Turn it on with ``Writer(sinks=["visdom"])``, ``vizdebug.watch(..., sinks=["visdom"])`` or
``VIZDEBUG_SINKS=visdom``; the server is ``$VIZDEBUG_VISDOM_SERVER`` (default
``http://localhost:8097``). For other options pass an instance: ``sinks=[VisdomSink(server=...,
interval=1.0)]``.

The sink runs on its own thread (:class:`vizdebug.fanout.SinkRunner`). :meth:`VisdomSink.write`
only buffers, then sends if ``interval`` seconds passed since the last send; ``flush`` sends now.
When the server is down (at start or mid-run) one warning is logged, points stay in a bounded
buffer (what overflows is counted in :attr:`VisdomSink.status`), and the sink tries again after
an exponentially growing pause, catching up from its buffer when the server answers.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from vizdebug.events import Event
from vizdebug.sinks import SinkContext

from .client import (
    DEFAULT_SERVER,
    ENV_SERVER,
    VisdomClient,
    VisdomRequestError,
    VisdomUnreachableError,
)
from .dashboard import Dashboard
from .windows import env_name

__all__ = ["VisdomSink", "VisdomStatus", "make_sink"]

log = logging.getLogger("vizdebug")

#: Longest a send may take before it stops and leaves the rest for the next one (seconds).
SEND_BUDGET = 5.0
#: Visdom's server re-diffs a whole window on every append (tens of microseconds per stored
#: point), so a long run's appends get slow. A send that took longer than SLOW_SEND seconds is
#: followed by a pause of PACE times its duration: the server (and the browsers it feeds) stays
#: responsive, and each append carries more, aggregated, points.
SLOW_SEND = 0.1
PACE = 3.0


@dataclass
class VisdomStatus:
    """What the sink did, for users and for ``vizdebug`` to report.

    Attributes:
        server, env: Where it sends.
        connected: Whether the last attempt reached the server.
        points_sent: Line points the server accepted.
        pending: Points and log lines waiting to be sent.
        dropped: Points that did not fit in the buffer (or that the server kept refusing).
        compacted: Points merged into averages to make room in a full buffer.
        outages: Times the server became unreachable.
        request_errors: Requests the server refused with an error status.
        requests: HTTP requests made.
        paced: Sends so slow (a big window on Visdom's server) that the next one waited longer.
        last_error: The last error, as text.
    """

    server: str
    env: str
    connected: bool = False
    points_sent: int = 0
    pending: int = 0
    dropped: int = 0
    compacted: int = 0
    outages: int = 0
    request_errors: int = 0
    requests: int = 0
    paced: int = 0
    last_error: str = ""


class VisdomSink:
    """Sends vizdebug events to one Visdom environment.

    Args:
        server: Visdom server URL. Default: ``$VIZDEBUG_VISDOM_SERVER`` or
            ``http://localhost:8097``.
        env: Environment name. Default: ``vizdebug_<run name>`` (sanitized; ``-r<rank>``
            appended in multi-rank jobs), the run taken from ``run`` or the first event.
        run, rank, world_size: The run this sink serves (from the sink context).
        interval: Least seconds between two sends from :meth:`write` (batching: all points
            of that interval go in one request per window).
        timeout: Seconds a connect or a reply may take.
        max_points: Most points a line gets per send; longer runs of points are averaged.
            None sends every point.
        max_buffer: Most points held while the server is slow or away. When it is full, long
            lines are averaged down first (see ``max_points``); what still does not fit is
            dropped and counted.
        stats: Per-module statistics to draw, from ``l2``, ``mean``, ``std``, ``min``, ``max``,
            ``nonfinite``, ``zero_fraction``.
        lines_per_window: Most module lines in one statistics window.
        max_histograms: Most histogram windows (the latest histogram of a module and role).
        histogram_roles: Roles that get histogram windows.
        max_log_lines: Most lines the anomaly and notes panes show.
        group_scalars: Tag prefixes whose scalars share a window, one line per tag (for
            per-parameter families such as the torch adapter's ``update_ratio/<name>``).
        backoff: First and longest pause (seconds) before retrying an unreachable server.
        save_on_close: Ask the server to save the environment to its disk on close.
        clock: Monotonic seconds; injectable for tests.

    Raises:
        ValueError: On a bad option (a malformed URL, a non-positive interval, ...).
    """

    name = "visdom"

    def __init__(
        self,
        server: str | None = None,
        *,
        env: str | None = None,
        run: str = "",
        rank: int = 0,
        world_size: int = 1,
        interval: float = 0.5,
        timeout: float = 2.0,
        max_points: int | None = 50,
        max_buffer: int = 200_000,
        stats: Sequence[str] = ("l2", "mean", "std"),
        lines_per_window: int = 20,
        max_histograms: int = 24,
        histogram_roles: Sequence[str] = ("output", "grad"),
        max_log_lines: int = 1000,
        group_scalars: Sequence[str] = ("update_ratio",),
        backoff: tuple[float, float] = (0.5, 30.0),
        save_on_close: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval < 0:
            raise ValueError(f"interval must be >= 0 seconds, got {interval}")
        if not 0 < backoff[0] <= backoff[1]:
            raise ValueError(f"backoff must be 0 < first <= longest, got {backoff}")
        server = server or os.environ.get(ENV_SERVER) or DEFAULT_SERVER
        self.client = VisdomClient(server, timeout=timeout)
        if env is not None and not env.strip():
            raise ValueError("env must be a non-empty name")
        if env is None and run:
            env = env_name(run, rank=rank, world_size=world_size)
        self.dashboard = Dashboard(
            env,
            stats=stats,
            lines_per_window=lines_per_window,
            max_points=max_points,
            max_buffer=max_buffer,
            max_histograms=max_histograms,
            histogram_roles=histogram_roles,
            max_log_lines=max_log_lines,
            group_scalars=group_scalars,
            clock=clock,
            rank=rank,
            world_size=world_size,
        )
        self.interval = interval
        self.backoff = backoff
        self.save_on_close = save_on_close
        self.clock = clock
        self._next_send = 0.0
        self._paced_until = 0.0
        self._down = False
        self._delay = backoff[0]
        self._retry_at = 0.0
        self._outages = 0
        self._dropped_mark = 0  # points dropped as of the last successful send
        self._request_errors = 0
        self._paced = 0
        self._last_error = ""
        self._connected = False
        self._closed = False

    # -- the Sink protocol -----------------------------------------------------------------

    def write(self, events: Sequence[Event]) -> None:
        """Buffer a batch; send what is pending if ``interval`` has passed."""
        if self._closed:
            return
        self.dashboard.ingest(events)
        now = self.clock()
        if now >= self._next_send and now >= self._paced_until:
            self._send(now)

    def flush(self) -> None:
        """Send what is pending now, unless the server is away or slow and its pause runs."""
        now = self.clock()
        if not self._closed and now >= self._paced_until:
            self._send(now)

    def close(self) -> None:
        """Send what is left (one attempt, bounded), save the environment, log a summary."""
        if self._closed:
            return
        self._send(self.clock(), final=True)
        if self.save_on_close and not self._down and self._connected and self.dashboard.env:
            try:
                self.client.save(self.dashboard.env)
            except (VisdomUnreachableError, VisdomRequestError) as exc:
                self._last_error = str(exc)
        self._closed = True
        self.client.close()
        status = self.status
        if status.pending or status.dropped:
            log.warning(
                "vizdebug visdom sink closed with %d points/lines not sent and %d dropped "
                "(server %s)",
                status.pending,
                status.dropped,
                status.server,
            )

    # -- sending ---------------------------------------------------------------------------

    def push(self, on_window: Callable[[], None] | None = None) -> None:
        """Send everything pending now, raising instead of backing off (for ``replay``).

        Args:
            on_window: Called after each line or histogram window sent.

        Raises:
            VisdomUnreachableError: The server does not answer.
            VisdomRequestError: The server refused a request.
        """
        while True:
            done = self.dashboard.send(self.client, self.clock() + SEND_BUDGET, on_window)
            self._connected = True
            if done and not self.dashboard.pending():
                return

    def _send(self, now: float, *, final: bool = False) -> None:
        if self._down and now < self._retry_at and not final:
            return
        try:
            if self._down:
                self.client.ping()
                self._back_up()
            self.dashboard.send(self.client, now + SEND_BUDGET)
            self._connected = True
            self._dropped_mark = self.dashboard.points.dropped
            end = self.clock()
            if end - now > SLOW_SEND:
                self._paced_until = end + PACE * (end - now)
                self._paced += 1
        except VisdomUnreachableError as exc:
            self._outage(exc, now)
        except VisdomRequestError as exc:
            self._request_errors += 1
            self._last_error = str(exc)
            if self._request_errors == 1:
                log.warning("vizdebug visdom sink: %s (counted; further ones are not logged)", exc)
        self._next_send = now + self.interval

    def _outage(self, exc: VisdomUnreachableError, now: float) -> None:
        self._last_error = str(exc)
        self._connected = False
        if not self._down:
            self._down = True
            self._outages += 1
            self._delay = self.backoff[0]
            log.warning(
                "vizdebug: %s; training goes on, the visdom sink buffers up to %d points and "
                "retries with backoff (up to %g s)",
                exc,
                self.dashboard.points.max_points,
                self.backoff[1],
            )
        else:
            self._delay = min(self._delay * 2, self.backoff[1])
        self._retry_at = now + self._delay

    def _back_up(self) -> None:
        self._down = False
        self._connected = True
        self.dashboard.reconnected()
        dropped = self.dashboard.points.dropped - self._dropped_mark
        level = logging.WARNING if dropped else logging.INFO
        log.log(
            level,
            "vizdebug: Visdom server at %s is back; catching up %d buffered points (%d dropped "
            "while it was away: the buffer holds %d)",
            self.client.server,
            len(self.dashboard.points),
            dropped,
            self.dashboard.points.max_points,
        )

    @property
    def status(self) -> VisdomStatus:
        """A snapshot of what the sink did so far."""
        dash = self.dashboard
        return VisdomStatus(
            server=self.client.server,
            env=dash.env or "",
            connected=self._connected and not self._down,
            points_sent=dash.points_sent,
            pending=dash.pending(),
            dropped=dash.points.dropped,
            compacted=dash.points.compacted,
            outages=self._outages,
            request_errors=self._request_errors + dash.request_errors,
            requests=self.client.requests,
            paced=self._paced,
            last_error=self._last_error,
        )

    @property
    def dropped(self) -> int:
        """Points that did not fit in the buffer, since the start."""
        return self.dashboard.points.dropped

    @property
    def env(self) -> str | None:
        """The Visdom environment (None until known)."""
        return self.dashboard.env


def make_sink(context: SinkContext) -> VisdomSink:
    """The ``vizdebug.sinks`` entry point ``visdom``: a :class:`VisdomSink` for the run.

    The server comes from ``$VIZDEBUG_VISDOM_SERVER`` (default ``http://localhost:8097``).
    """
    return VisdomSink(run=context.run, rank=context.rank, world_size=context.world_size)

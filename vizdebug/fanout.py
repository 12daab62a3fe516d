"""One thread per sink, so a slow or failing sink delays and breaks only itself."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from .events import Anomaly, Event
from .sinks import Sink, sink_name

__all__ = ["SinkRunner", "SinkStatus"]

log = logging.getLogger("vizdebug")

#: Consecutive failed calls after which a sink is disabled.
MAX_CONSECUTIVE_FAILURES = 50


@dataclass
class SinkStatus:
    """What happened to one sink, reported in run info and by ``vizdebug runs``."""

    name: str
    written: int = 0
    failures: int = 0
    dropped: int = 0
    disabled: bool = False
    last_error: str = ""
    _consecutive: int = field(default=0, repr=False)


class SinkRunner:
    """Feeds one sink from its own bounded queue on its own daemon thread.

    Args:
        sink: The sink.
        max_pending: Events held for the sink before the newest non-anomaly ones are dropped
            (and counted in :attr:`status`).
        block: Wait for room instead of dropping (the durable run directory): the writer
            thread then slows down, its own queue fills, and the writer's policy applies.
    """

    def __init__(self, sink: Sink, *, max_pending: int = 200_000, block: bool = False) -> None:
        self.sink = sink
        self.status = SinkStatus(sink_name(sink))
        self._max_pending = max_pending
        self._block = block
        self._pending = 0
        self._items: deque[Sequence[Event] | threading.Event | None] = deque()
        self._cond = threading.Condition()
        self._thread = threading.Thread(
            target=self._loop, name=f"vizdebug-sink-{self.status.name}", daemon=True
        )
        self._thread.start()

    def submit(self, events: Sequence[Event]) -> None:
        """Queue a batch (called from the writer thread)."""
        batch: Sequence[Event] = events
        with self._cond:
            while (
                self._block
                and self._pending
                and self._pending + len(batch) > self._max_pending
                and self._thread.is_alive()
            ):
                self._cond.wait(0.1)
            room = self._max_pending - self._pending
            if len(batch) > room:
                keep = [e for e in batch if type(e) is Anomaly]
                keep_rest = [e for e in batch if type(e) is not Anomaly][: max(room, 0)]
                self.status.dropped += len(batch) - len(keep) - len(keep_rest)
                batch = [*keep_rest, *keep]
            if batch:
                self._pending += len(batch)
                self._items.append(batch)
                self._cond.notify()

    def request_flush(self) -> threading.Event:
        """Ask the sink to flush after what is queued; the returned event is set when done."""
        done = threading.Event()
        with self._cond:
            self._items.append(done)
            self._cond.notify()
        return done

    def close(self, timeout: float | None = None) -> None:
        """Drain, flush and close the sink, waiting up to ``timeout`` seconds."""
        with self._cond:
            self._items.append(None)
            self._cond.notify()
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._items:
                    self._cond.wait()
                item = self._items.popleft()
                if item is not None and not isinstance(item, threading.Event):
                    self._pending -= len(item)
                    self._cond.notify_all()
            if item is None:
                self._call("flush")
                self._call("close")
                return
            if isinstance(item, threading.Event):
                self._call("flush")
                item.set()
                continue
            if self._call("write", item):
                self.status.written += len(item)

    def _call(self, method: str, arg: Sequence[Event] | None = None) -> bool:
        status = self.status
        if status.disabled:
            if arg is not None:
                status.dropped += len(arg)
            return False
        try:
            fn = getattr(self.sink, method)
            fn(arg) if arg is not None else fn()
        except Exception as exc:  # isolation: a sink's failure must never reach training
            status.failures += 1
            status._consecutive += 1
            status.last_error = f"{type(exc).__name__}: {exc}"
            if arg is not None:
                status.dropped += len(arg)
            if status.failures == 1:
                log.warning(
                    "vizdebug sink %r failed in %s(): %s (training continues; further "
                    "failures of this sink are counted, not logged)",
                    status.name,
                    method,
                    status.last_error,
                )
            if status._consecutive >= MAX_CONSECUTIVE_FAILURES:
                status.disabled = True
                log.error(
                    "vizdebug sink %r disabled after %d consecutive failures; last: %s",
                    status.name,
                    status._consecutive,
                    status.last_error,
                )
            return False
        status._consecutive = 0
        return True

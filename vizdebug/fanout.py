"""One thread per sink, so a slow or failing sink delays and breaks only itself.

A sink that raises is never disabled: it enters an *outage*. Its batches are held in memory
(bounded: past :data:`MAX_HELD` events only anomalies and snapshot references are kept, up to
:data:`MAX_HELD_PRECIOUS`; what is let go is counted in ``dropped``) and retried with
exponential backoff (:data:`RETRY_MIN_SECS` doubling to :data:`RETRY_MAX_SECS`, and on every
flush request). The first retry that succeeds writes what was held, in order, and ends the
outage. Each outage is logged once when it starts and once when it ends. A full disk is the
case this is for: the run directory comes back by itself when space is freed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

from .batch import EventBatch
from .events import Anomaly, Event, SnapshotRef
from .sinks import Sink, sink_name

__all__ = ["SinkRunner", "SinkStatus"]

log = logging.getLogger("vizdebug")

#: First wait before retrying a failing sink; doubled after each failed retry.
RETRY_MIN_SECS = 0.05
#: Longest wait between retries.
RETRY_MAX_SECS = 5.0
#: Events held for a failing sink; past it only anomalies and snapshot references are kept.
MAX_HELD = 20_000
#: Anomalies and snapshot references held for a failing sink; past it they are counted lost.
MAX_HELD_PRECIOUS = 10_000
_PRECIOUS = (Anomaly, SnapshotRef)


@dataclass
class SinkStatus:
    """What happened to one sink, reported in run info and by ``vizdebug runs``.

    Attributes:
        name: The sink's name.
        written: Events the sink accepted.
        failures: Calls that raised (each retry counts).
        dropped: Events lost: let go while the sink failed, or still held at close.
        disabled: Kept for readers of old run-info files; a sink is no longer disabled.
        last_error: The last exception, as text.
        outage: Whether the sink is failing now (its batches held and retried).
        outages: How many outages there were.
        held: Events held for the retry right now.
    """

    name: str
    written: int = 0
    failures: int = 0
    dropped: int = 0
    disabled: bool = False
    last_error: str = ""
    outage: bool = False
    outages: int = 0
    held: int = 0
    _since: float = field(default=0.0, repr=False)
    _dropped_before: int = field(default=0, repr=False)


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
        self._held: deque[Sequence[Event]] = deque()  # during an outage, for the retry
        self._precious = 0  # anomalies and snapshot references among them
        self._unflushed = False  # a flush failed: the retry must flush
        self._delay = RETRY_MIN_SECS
        self._retry_at = 0.0
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
                    if not self._held and not self._unflushed:
                        self._cond.wait()
                        continue
                    wait = self._retry_at - time.monotonic()
                    if wait <= 0:
                        break
                    self._cond.wait(wait)
                item = self._items.popleft() if self._items else _RETRY
                if isinstance(item, Sequence):
                    self._pending -= len(item)
                    self._cond.notify_all()
            if item is _RETRY:
                self._retry()
            elif item is None:
                self._retry()
                if not self.status.outage:
                    self._call("flush")
                self._call("close")
                self.status.dropped += self.status.held  # still held at the end: lost
                self.status.held = 0
                self._held.clear()
                return
            elif isinstance(item, threading.Event):
                if self.status.outage:
                    self._retry()  # a flush request retries at once, whatever the backoff
                elif not self._call("flush"):
                    self._unflushed = True
                    self._fail()
                item.set()
            else:
                self._batch(cast(Sequence[Event], item))

    def _batch(self, batch: Sequence[Event]) -> None:
        if self.status.outage:
            self._hold(batch)
            if time.monotonic() >= self._retry_at:
                self._retry()
        elif self._call("write", batch):
            self.status.written += len(batch)
        else:
            self._fail()
            self._hold(batch)

    def _hold(self, batch: Sequence[Event]) -> None:
        status = self.status
        if status.held + len(batch) > MAX_HELD or self._precious > MAX_HELD_PRECIOUS:
            raw: Sequence[object] = batch.raw() if isinstance(batch, EventBatch) else batch
            room = MAX_HELD_PRECIOUS - self._precious
            keep: list[Event] = [e for e in raw if isinstance(e, Anomaly | SnapshotRef)]
            keep = keep[: max(room, 0)]
            kept: Sequence[Event] = (
                EventBatch(list(keep), batch.run, batch.rank)
                if isinstance(batch, EventBatch)
                else keep
            )
            status.dropped += len(batch) - len(kept)
            batch = kept
        if batch:
            self._held.append(batch)
            status.held += len(batch)
            held: Sequence[object] = batch.raw() if isinstance(batch, EventBatch) else batch
            self._precious += sum(isinstance(e, _PRECIOUS) for e in held)

    def _fail(self) -> None:
        """Enter an outage (logged once) or push the next retry further away."""
        status = self.status
        now = time.monotonic()
        if not status.outage:
            status.outage = True
            status.outages += 1
            status._since = now
            status._dropped_before = status.dropped
            self._delay = RETRY_MIN_SECS
            log.warning(
                "vizdebug sink %r failed: %s (training continues; its events are held and "
                "retried with backoff, anomalies and snapshots kept; logged once per outage)",
                status.name,
                status.last_error,
            )
        else:
            self._delay = min(self._delay * 2, RETRY_MAX_SECS)
        self._retry_at = now + self._delay

    def _retry(self) -> None:
        """Write what is held, in order; end the outage when all of it went through."""
        status = self.status
        while self._held:
            batch = self._held[0]
            if not self._call("write", batch):
                self._fail()
                return
            self._held.popleft()
            status.held -= len(batch)
            status.written += len(batch)
            done: Sequence[object] = batch.raw() if isinstance(batch, EventBatch) else batch
            self._precious -= sum(isinstance(e, _PRECIOUS) for e in done)
        if (self._unflushed or status.outage) and not self._call("flush"):
            self._unflushed = True
            self._fail()
            return
        self._unflushed = False
        if status.outage:
            status.outage = False
            lost = status.dropped - status._dropped_before
            log.warning(
                "vizdebug sink %r works again after %.1f s; %d events lost in the outage",
                status.name,
                time.monotonic() - status._since,
                lost,
            )

    def _call(self, method: str, arg: Sequence[Event] | None = None) -> bool:
        status = self.status
        try:
            fn = getattr(self.sink, method)
            fn(arg) if arg is not None else fn()
        except Exception as exc:  # isolation: a sink's failure must never reach training
            status.failures += 1
            status.last_error = f"{type(exc).__name__}: {exc}"
            return False
        return True


#: A wake-up of the sink thread to retry what it holds.
_RETRY = object()

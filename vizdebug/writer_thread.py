"""The writer thread's half of :class:`~vizdebug.writer.Writer`: draining the queue.

:class:`WriterLoop` is the base class holding what runs on the ``vizdebug-writer`` thread: it
wakes every few milliseconds (or when woken), drains the queue, converts packed scalars
(``float(value)`` happens here, not in the caller), stamps run and rank on events, resolves
:class:`~vizdebug.queue_items.Deferred` items, saves snapshot files, answers flush requests,
and hands :class:`~vizdebug.batch.EventBatch` batches to every sink runner; every
``flush_secs`` it asks the sinks to flush and rewrites the run-info file. It is a base class
rather than a separate object so both halves read the same plain attributes (the calling
thread's hot path does not pay an extra lookup).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import yielding
from .batch import EventBatch, StatsBlock
from .events import Event, SnapshotRef
from .fanout import RETRY_MAX_SECS, RETRY_MIN_SECS, SinkRunner
from .queue_items import EVENT_BYTES, SCALAR_BYTES, FlushRequest, SnapshotRequest
from .runs.snapshots import save_snapshot

__all__ = ["WriterLoop"]

log = logging.getLogger("vizdebug")

#: Longest the writer thread sleeps between drains when nobody wakes it. Callers wake it for
#: what should not wait (flush, close, anomalies, deferred statistics, snapshots, a queue past
#: its high-water mark); scalars and notes wait for the next drain. Draining at 50 Hz cost an
#: idle watch 7.6 ms of CPU a second (a timed wait costs about 110 us on a shared VM), and every
#: wake-up takes the GIL from the training thread.
IDLE_SECS = 0.5
#: Snapshot bytes kept in memory while the disk refuses them; past it they are counted lost.
UNSAVED_MAX_BYTES = 256 << 20


class WriterLoop:
    """What the writer thread runs; :class:`~vizdebug.writer.Writer` sets the attributes."""

    run: str
    rank: int
    run_dir: Path
    flush_secs: float
    snapshot_max_bytes: int
    clock: Callable[[], float]
    _queue: deque[Any]
    _wake: threading.Event
    _closed: bool
    _runners: list[SinkRunner]
    _deq_bytes: int  # written by the writer thread only
    _written: Counter[str]  # by the writer thread
    _invalid: int
    _last_step: int
    _dropped: Counter[str]
    # snapshots the disk refused, retried with backoff (the writer thread only)
    _unsaved: deque[SnapshotRequest]
    _unsaved_bytes: int = 0
    _unsaved_delay: float = RETRY_MIN_SECS
    _unsaved_retry: float = 0.0

    def _write_info(self, status: str) -> None:
        """Rewrite the run-info file (``status``: ``"running"`` or ``"closed"``)."""
        raise NotImplementedError

    def _loop(self) -> None:
        self._unsaved = deque()
        # A run killed in its first flush interval still has its run.json.
        self._write_info(status="running")
        last_flush = time.monotonic()
        while True:
            self._wake.wait(min(IDLE_SECS, self.flush_secs))
            self._wake.clear()
            stopping = self._closed
            self._drain()
            now = time.monotonic()
            if self._unsaved and (now >= self._unsaved_retry or stopping):
                self._retry_snapshots(now)
            if now - last_flush >= self.flush_secs:
                last_flush = now
                for runner in self._runners:
                    runner.request_flush()
                self._write_info(status="running")
            if stopping and not self._queue:
                if self._unsaved:  # the disk never came back: counted, not silent
                    self._dropped["snapshot:disk"] += len(self._unsaved)
                    self._unsaved.clear()
                return

    def _drain(self) -> None:
        queue = self._queue
        batch: list[Any] = []
        freed = scalars = 0
        top = self._last_step
        while queue:
            item = queue.popleft()
            try:
                if type(item) is tuple:
                    tag, value, step, wall = item
                    freed += SCALAR_BYTES
                    batch.append((tag, float(value), step, wall))
                    scalars += 1
                    if step > top:
                        top = step
                elif isinstance(item, Event):
                    freed += EVENT_BYTES
                    batch.append(self._stamp(item))
                elif type(item) is FlushRequest:
                    self._last_step = top
                    self._dispatch(batch, scalars)
                    batch, scalars = [], 0
                    if self._unsaved:  # a flush (close's last one too) retries them first
                        self._retry_snapshots(time.monotonic())
                    item.acks = [r.request_flush() for r in self._runners]
                    item.dispatched.set()
                elif type(item) is SnapshotRequest:
                    freed += item.nbytes
                    ref = self._save_or_keep(item)
                    if ref is not None:
                        batch.append(ref)
                else:
                    self._deq_bytes += freed + int(item.nbytes)
                    freed = 0
                    resolved = list(item.resolve(self.run, self.rank))
                    scalars += sum(type(r) is tuple for r in resolved)  # packed scalars
                    batch += resolved
                    yielding.pause()
            except Exception as exc:  # a bad item must not stop the writer thread
                self._invalid += 1
                if self._invalid == 1:
                    log.warning("vizdebug writer skipped an item it could not convert: %r", exc)
            if len(batch) >= 4096:  # hand the sinks at most this many items at once
                self._deq_bytes += freed
                freed = 0
                self._last_step = top
                self._dispatch(batch, scalars)
                batch, scalars = [], 0
        self._deq_bytes += freed
        self._last_step = top
        self._dispatch(batch, scalars)

    def _stamp(self, event: Event) -> Event:
        changes: dict[str, Any] = {}
        if event.run != self.run:
            changes["run"] = self.run
        if event.rank != self.rank:
            changes["rank"] = self.rank
        if not event.wall_time:
            changes["wall_time"] = self.clock()
        return dataclasses.replace(event, **changes) if changes else event

    def _save_or_keep(self, item: SnapshotRequest) -> SnapshotRef | None:
        """Save a snapshot; when the disk refuses, keep it (bounded) for a retry."""
        if self._unsaved:  # keep their order: an earlier one is still waiting
            self._keep(item)
            return None
        try:
            return self._save_snapshot(item)
        except OSError as exc:
            log.warning(
                "vizdebug could not write snapshot %s: %s (kept in memory and retried; "
                "logged once per outage)",
                item.relpath,
                exc,
            )
            self._unsaved_delay = RETRY_MIN_SECS
            self._unsaved_retry = time.monotonic() + self._unsaved_delay
            self._keep(item)
            return None

    def _keep(self, item: SnapshotRequest) -> None:
        if self._unsaved_bytes + item.nbytes > UNSAVED_MAX_BYTES:
            self._dropped["snapshot:disk"] += 1  # its own key: only this thread writes it
            return
        self._unsaved.append(item)
        self._unsaved_bytes += item.nbytes

    def _retry_snapshots(self, now: float) -> None:
        refs: list[Any] = []
        while self._unsaved:
            item = self._unsaved[0]
            try:
                refs.append(self._save_snapshot(item))
            except OSError:
                self._unsaved_delay = min(self._unsaved_delay * 2, RETRY_MAX_SECS)
                self._unsaved_retry = now + self._unsaved_delay
                break
            self._unsaved.popleft()
            self._unsaved_bytes -= item.nbytes
        if not self._unsaved:
            log.warning("vizdebug writes snapshots again")
        self._dispatch(refs, 0)

    def _save_snapshot(self, item: SnapshotRequest) -> SnapshotRef:
        names, nbytes = save_snapshot(
            self.run_dir, item.relpath, item.tensors, max_bytes=self.snapshot_max_bytes
        )
        return SnapshotRef(
            step=item.step,
            wall_time=item.wall_time,
            run=self.run,
            rank=self.rank,
            path=item.relpath,
            tensors=names,
            reason=item.reason,
            nbytes=nbytes,
        )

    def _dispatch(self, items: list[Any], scalars: int) -> None:
        if not items:
            return
        written = self._written
        written["Scalar"] += scalars
        if scalars != len(items):
            top = self._last_step
            for item in items:
                if type(item) is StatsBlock:
                    written["TensorStats"] += len(item.rows)
                elif type(item) is not tuple:
                    written[type(item).__name__] += 1
                if type(item) is not tuple and item.step > top:
                    top = item.step
            self._last_step = top
        batch = EventBatch(items, self.run, self.rank)
        for runner in self._runners:
            runner.submit(batch)

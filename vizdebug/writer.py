"""The common writer: the one path by which events leave the training process.

The calling thread only appends to a queue (a ``collections.deque``: no lock, no wake-up per
event). A background thread drains it every few milliseconds, turns raw items into events,
writes snapshots, and hands batches to one :class:`~vizdebug.fanout.SinkRunner` per sink. The
run-directory sink (TensorBoard event files) is always first and always on.

Memory is bounded by ``max_queue_bytes``. When the queue is full, ``when_full="drop_newest"``
(the default) drops the incoming event and counts it by kind; ``"block"`` makes the caller wait.
Anomalies are never dropped.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import os
import platform
import socket
import sys
import threading
import time
import weakref
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

from . import __version__
from .batch import EventBatch
from .errors import WriterClosedError
from .events import (
    Anomaly,
    Event,
    ModelStructure,
    ModuleInfo,
    Note,
    RunInfo,
    SnapshotRef,
    Stats,
    TensorStats,
)
from .fanout import SinkRunner, SinkStatus
from .runs.layout import new_run_dir, write_info
from .runs.snapshots import save_snapshot, snapshot_name
from .runs.store import EventFileSink
from .sinks import Sink, SinkContext, create_sinks

__all__ = ["Deferred", "Writer"]

log = logging.getLogger("vizdebug")

_SCALAR_BYTES = 96
_EVENT_BYTES = 512
_POLL_SECS = 0.02
_LIVE: weakref.WeakSet[Writer] = weakref.WeakSet()


class Deferred(Protocol):
    """Work an adapter hands to the writer thread (for example a device-to-host copy).

    ``resolve`` runs on the writer thread and returns the events; ``nbytes`` is what the item
    holds in memory while queued.
    """

    nbytes: int

    def resolve(self, run: str, rank: int) -> Iterable[Event]:
        """Produce the events."""
        ...


class _Snapshot:
    __slots__ = ("nbytes", "reason", "relpath", "step", "tensors", "wall_time")

    def __init__(
        self, tensors: Mapping[str, Any], step: int, reason: str, relpath: str, wall: float
    ) -> None:
        self.tensors = dict(tensors)
        self.step = step
        self.reason = reason
        self.relpath = relpath
        self.wall_time = wall
        self.nbytes = sum(int(getattr(t, "nbytes", 0) or 0) for t in self.tensors.values())


class _Flush:
    __slots__ = ("acks", "dispatched")

    def __init__(self) -> None:
        self.dispatched = threading.Event()
        self.acks: list[threading.Event] = []


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


class Writer:
    """Write vizdebug events to a run directory and to any number of sinks.

    Args:
        logdir: The run directory. Default: a new ``<root>/<YYYYmmdd-HHMMSS>-<host>`` where
            root is ``$VIZDEBUG_LOGDIR`` or ``./runs``.
        sinks: Extra sinks, by entry-point name or as objects; None reads ``$VIZDEBUG_SINKS``.
        flush_secs: How often buffered events reach the disk; a killed process loses at most
            about this much.
        max_queue_bytes: Memory the queue may hold before ``when_full`` applies.
        when_full: ``"drop_newest"`` (count and drop incoming non-anomaly events) or ``"block"``.
        framework: Recorded in run info ("torch", "keras", ...).
        versions: Extra package versions to record in run info.
        rank, world_size: Default: ``$RANK`` and ``$WORLD_SIZE``, else 0 and 1.
        snapshot_max_bytes: Cap on the tensor data of one snapshot file.
        clock: Returns seconds since the epoch; injectable for tests.

    Raises:
        ValueError: On a bad option value.
        SinkNotFoundError: A sink name is not registered.
    """

    def __init__(
        self,
        logdir: str | os.PathLike[str] | None = None,
        *,
        sinks: Sequence[str | Sink] | None = None,
        flush_secs: float = 2.0,
        max_queue_bytes: int = 64 << 20,
        when_full: Literal["drop_newest", "block"] = "drop_newest",
        framework: str = "",
        versions: Mapping[str, str] | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        snapshot_max_bytes: int = 256 << 20,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if flush_secs <= 0:
            raise ValueError(f"flush_secs must be positive, got {flush_secs}")
        if max_queue_bytes <= 0:
            raise ValueError(f"max_queue_bytes must be positive, got {max_queue_bytes}")
        if when_full not in ("drop_newest", "block"):
            raise ValueError(f"when_full must be 'drop_newest' or 'block', got {when_full!r}")
        self.rank = _env_int("RANK", 0) if rank is None else rank
        self.world_size = _env_int("WORLD_SIZE", 1) if world_size is None else world_size
        self.run_dir = Path(logdir) if logdir is not None else new_run_dir()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.run = self.run_dir.name
        self.flush_secs = flush_secs
        self.max_queue_bytes = max_queue_bytes
        self.when_full = when_full
        self.framework = framework
        self.snapshot_max_bytes = snapshot_max_bytes
        self.clock = clock
        #: The step stamped on events written without one.
        self.step = 0
        context = SinkContext(self.run, self.run_dir, self.rank, self.world_size)
        extra = create_sinks(sinks, context)
        # The durable store never drops: when it falls behind it holds up the writer thread,
        # and the writer's own queue-full policy decides (drop newest, counted, or block).
        self._runners = [SinkRunner(EventFileSink(self.run_dir, self.rank), block=True)]
        self._runners += [SinkRunner(s) for s in extra]
        self._queue: deque[Any] = deque()
        self._enq_bytes = 0  # written by callers only
        self._deq_bytes = 0  # written by the writer thread only
        self._dropped: Counter[str] = Counter()  # by callers
        self._written: Counter[str] = Counter()  # by the writer thread
        self._invalid = 0
        self._last_step = -1
        self._closed = False
        self._wake = threading.Event()
        self._start = clock()
        self._info = RunInfo(
            step=0,
            wall_time=self._start,
            run=self.run,
            rank=self.rank,
            framework=framework,
            versions={
                "python": platform.python_version(),
                "vizdebug": __version__,
                **(versions or {}),
            },
            host=socket.gethostname(),
            pid=os.getpid(),
            world_size=self.world_size,
            start_time=self._start,
            argv=tuple(sys.argv),
        )
        self._enq_bytes += _EVENT_BYTES
        self._queue.append(self._info)
        self._thread = threading.Thread(target=self._loop, name="vizdebug-writer", daemon=True)
        self._thread.start()
        _LIVE.add(self)

    # -- the calling thread: enqueue only -------------------------------------------------

    def _admit(self, nbytes: int, kind: str) -> bool:
        if self._closed:
            raise WriterClosedError("this Writer is closed; create a new one to keep writing")
        if self._enq_bytes - self._deq_bytes + nbytes <= self.max_queue_bytes:
            self._enq_bytes += nbytes
            return True
        return self._full(nbytes, kind)

    def _full(self, nbytes: int, kind: str) -> bool:
        self._wake.set()
        if self.when_full == "block":
            while self._enq_bytes - self._deq_bytes + nbytes > self.max_queue_bytes:
                if not self._thread.is_alive():
                    break
                time.sleep(0.001)
            self._enq_bytes += nbytes
            return True
        self._dropped[kind] += 1
        return False

    def scalar(
        self, tag: str, value: float, step: int | None = None, *, wall_time: float | None = None
    ) -> None:
        """Record a scalar.

        Args:
            tag: Name, e.g. ``"loss"`` or ``"train/accuracy"``.
            value: A number, or anything with ``__float__`` (converted on the writer thread, so
                a 0-d device tensor does not force a host sync here).
            step: Default: :attr:`step`.
            wall_time: Default: now.

        Raises:
            TypeError: ``tag`` is not a string or ``value`` is not a number.
            WriterClosedError: The writer is closed.
        """
        # The hot path: a few type checks, one compare and one deque append.
        if type(tag) is not str:
            raise TypeError(f"tag must be a str, got {type(tag).__name__}")
        vt = type(value)
        if vt is not float and vt is not int and not hasattr(value, "__float__"):
            raise TypeError(f"value of {tag!r} must be a number, got {vt.__name__}")
        if self._closed:
            raise WriterClosedError("this Writer is closed; create a new one to keep writing")
        if self._enq_bytes - self._deq_bytes + _SCALAR_BYTES > self.max_queue_bytes:
            if not self._full(_SCALAR_BYTES, "scalar"):
                return
        else:
            self._enq_bytes += _SCALAR_BYTES
        self._queue.append(
            (
                tag,
                value,
                self.step if step is None else step,
                wall_time or self.clock(),
            )
        )

    def scalars(self, values: Mapping[str, float], step: int | None = None) -> None:
        """Record several scalars of one step."""
        for tag, value in values.items():
            self.scalar(tag, value, step)

    def write(self, event: Event) -> None:
        """Enqueue a ready event; run and rank are stamped, a ``step`` of -1 gets :attr:`step`.

        Raises:
            TypeError: ``event`` is not a vizdebug event.
        """
        if not isinstance(event, Event):
            raise TypeError(f"expected a vizdebug event, got {type(event).__name__}")
        if event.step < 0:
            event = dataclasses.replace(event, step=self.step)
        if type(event) is Anomaly:
            if self._closed:
                raise WriterClosedError("this Writer is closed; create a new one to keep writing")
            self._enq_bytes += _EVENT_BYTES
            self._queue.append(event)
            self._wake.set()
        elif self._admit(_EVENT_BYTES, type(event).__name__.lower()):
            self._queue.append(event)

    def stats(self, name: str, role: str, stats: Stats, step: int | None = None) -> None:
        """Record the statistics of one tensor (see :func:`vizdebug.stats.reference_stats`)."""
        self.write(TensorStats(step=self._step(step), name=name, role=role, stats=stats))

    def anomaly(self, kind: str, *, step: int | None = None, **fields: Any) -> None:
        """Record an anomaly (never dropped); ``fields`` are those of :class:`Anomaly`."""
        self.write(Anomaly(step=self._step(step), kind=kind, **fields))

    def note(self, tag: str, text: str, step: int | None = None) -> None:
        """Record a line of text."""
        self.write(Note(step=self._step(step), tag=tag, text=text))

    def structure(
        self, framework: str, modules: Sequence[ModuleInfo], step: int | None = None
    ) -> None:
        """Record a model's module tree."""
        self.write(
            ModelStructure(step=self._step(step), framework=framework, modules=tuple(modules))
        )

    def snapshot(
        self, tensors: Mapping[str, Any], step: int | None = None, *, reason: str = "snapshot"
    ) -> str:
        """Save tensors (numpy arrays or framework tensors) as a safetensors file.

        The copy to the host and the file write happen on the writer thread; tensors must not
        be modified in place afterwards (pass clones). Returns the file's path relative to the
        run directory; a :class:`~vizdebug.events.SnapshotRef` event follows.
        """
        s = self._step(step)
        relpath = snapshot_name(s, self.rank, reason)
        item = _Snapshot(tensors, s, reason, relpath, self.clock())
        if self._admit(item.nbytes, "snapshot"):
            self._queue.append(item)
        return relpath

    def defer(self, item: Deferred) -> None:
        """Enqueue work to be turned into events on the writer thread."""
        if self._admit(int(item.nbytes), "deferred"):
            self._queue.append(item)

    def _step(self, step: int | None) -> int:
        return self.step if step is None else step

    # -- control -------------------------------------------------------------------------

    def flush(self, timeout: float | None = 30.0) -> None:
        """Block until everything enqueued so far is written and flushed by every sink.

        The run directory is always waited for; other sinks for at most ``timeout`` seconds.
        """
        if self._closed or not self._thread.is_alive():
            return
        request = _Flush()
        self._queue.append(request)
        self._wake.set()
        request.dispatched.wait()
        request.acks[0].wait()
        deadline = None if timeout is None else time.monotonic() + timeout
        for ack in request.acks[1:]:
            ack.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        """Flush, stop the writer thread and close every sink. Idempotent."""
        if self._closed:
            return
        if self._thread.is_alive():
            final = dataclasses.replace(
                self._info, step=self.step, wall_time=self.clock(), dropped=dict(self._dropped)
            )
            self._enq_bytes += _EVENT_BYTES
            self._queue.append(final)
        self.flush()
        self._closed = True
        self._wake.set()
        self._thread.join()
        for runner in self._runners:
            runner.close(timeout=30.0 if runner is self._runners[0] else 5.0)
        self._write_info(status="closed")
        _LIVE.discard(self)

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    @property
    def dropped(self) -> dict[str, int]:
        """Events dropped by the queue-full policy, by kind."""
        return dict(self._dropped)

    @property
    def sink_status(self) -> list[SinkStatus]:
        """Per-sink counts: written, failures, dropped, disabled."""
        return [r.status for r in self._runners]

    # -- the writer thread -----------------------------------------------------------------

    def _loop(self) -> None:
        last_flush = time.monotonic()
        while True:
            self._wake.wait(_POLL_SECS)
            self._wake.clear()
            stopping = self._closed
            self._drain()
            now = time.monotonic()
            if now - last_flush >= self.flush_secs:
                last_flush = now
                for runner in self._runners:
                    runner.request_flush()
                self._write_info(status="running")
            if stopping and not self._queue:
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
                    freed += _SCALAR_BYTES
                    batch.append((tag, float(value), step, wall))
                    scalars += 1
                    if step > top:
                        top = step
                elif isinstance(item, Event):
                    freed += _EVENT_BYTES
                    batch.append(self._stamp(item))
                elif type(item) is _Flush:
                    self._last_step = top
                    self._dispatch(batch, scalars)
                    batch, scalars = [], 0
                    item.acks = [r.request_flush() for r in self._runners]
                    item.dispatched.set()
                elif type(item) is _Snapshot:
                    freed += item.nbytes
                    batch.append(self._save_snapshot(item))
                else:
                    self._deq_bytes += freed + int(item.nbytes)
                    freed = 0
                    batch.extend(item.resolve(self.run, self.rank))
            except Exception as exc:  # a bad item must not stop the writer thread
                self._invalid += 1
                if self._invalid == 1:
                    log.warning("vizdebug writer skipped an item it could not convert: %r", exc)
            if len(batch) >= 4096:
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

    def _save_snapshot(self, item: _Snapshot) -> SnapshotRef:
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
                if type(item) is not tuple:
                    written[type(item).__name__] += 1
                    if item.step > top:
                        top = item.step
            self._last_step = top
        batch = EventBatch(items, self.run, self.rank)
        for runner in self._runners:
            runner.submit(batch)

    def _write_info(self, status: str) -> None:
        info = self._info
        data = {
            "run": self.run,
            "rank": self.rank,
            "world_size": self.world_size,
            "framework": self.framework,
            "versions": dict(info.versions),
            "host": info.host,
            "pid": info.pid,
            "start_time": info.start_time,
            "argv": list(info.argv),
            "status": status,
            "last_update": self.clock(),
            "last_step": self._last_step,
            "events": sum(self._written.values()),
            "events_by_kind": dict(self._written),
            "anomalies": self._written.get("Anomaly", 0),
            "dropped": dict(self._dropped),
            "invalid": self._invalid,
            "sinks": {
                s.name: {
                    "written": s.written,
                    "failures": s.failures,
                    "dropped": s.dropped,
                    "disabled": s.disabled,
                    "last_error": s.last_error,
                }
                for s in self.sink_status
            },
        }
        try:
            write_info(self.run_dir, self.rank, data)
        except OSError as exc:
            log.warning("vizdebug could not update run info in %s: %s", self.run_dir, exc)


@atexit.register
def _close_all() -> None:
    for writer in list(_LIVE):
        try:
            writer.close()
        except Exception as exc:  # at exit, report and go on closing the others
            log.warning("vizdebug could not close a writer at exit: %s", exc)

"""The common writer: the one path by which events leave the training process.

The calling thread only appends to a queue (a ``collections.deque``: no lock, no wake-up per
scalar). A background thread drains it when woken (flush, close, anomalies, deferred
statistics, snapshots, a queue past a quarter of its budget) or twice a second, turns raw items
into events, writes snapshots, and hands batches to one :class:`~vizdebug.fanout.SinkRunner`
per sink. The run-directory sink (TensorBoard event files) is always first and always on.

Memory is bounded by ``max_queue_bytes``. When the queue is full, ``when_full="drop_newest"``
(the default) drops the incoming event and counts it by kind; ``"block"`` makes the caller wait.
Anomalies are never dropped.

This module holds the calling thread's half (enqueueing, flush, close, the ``atexit`` hook);
the writer thread's loop is :class:`~vizdebug.writer_thread.WriterLoop`, what the queue holds is
in :mod:`vizdebug.queue_items` and the run-info event and ``run.json`` document are built by
:mod:`vizdebug.run_info`.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import os
import threading
import time
import weakref
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from .errors import WriterClosedError
from .events import Anomaly, Event, ModelStructure, ModuleInfo, Note, Stats, TensorStats
from .fanout import SinkRunner, SinkStatus
from .queue_items import EVENT_BYTES, SCALAR_BYTES, Deferred, FlushRequest, SnapshotRequest
from .run_info import info_document, start_info, write_run_info
from .runs.layout import new_run_dir
from .runs.snapshots import snapshot_name
from .runs.store import EventFileSink
from .sinks import Sink, SinkContext, create_sinks
from .writer_thread import WriterLoop

__all__ = ["Deferred", "Writer"]

log = logging.getLogger("vizdebug")

_LIVE: weakref.WeakSet[Writer] = weakref.WeakSet()


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


class Writer(WriterLoop):
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
        # past it, enqueueing wakes the writer thread (which otherwise drains twice a second)
        self._high_water = max_queue_bytes // 4
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
        self._info = start_info(
            run=self.run,
            rank=self.rank,
            world_size=self.world_size,
            framework=framework,
            versions=versions,
            start=self._start,
        )
        self._enq_bytes += EVENT_BYTES
        self._queue.append(self._info)
        self._thread = threading.Thread(target=self._loop, name="vizdebug-writer", daemon=True)
        self._thread.start()
        _LIVE.add(self)

    # -- the calling thread: enqueue only -------------------------------------------------

    def _admit(self, nbytes: int, kind: str) -> bool:
        if self._closed:
            raise WriterClosedError("this Writer is closed; create a new one to keep writing")
        if self._enq_bytes - self._deq_bytes + nbytes <= self._high_water:
            self._enq_bytes += nbytes
            return True
        return self._crowded(nbytes, kind)

    def _crowded(self, nbytes: int, kind: str) -> bool:
        """The queue is past its high-water mark: wake the writer thread, admit unless full."""
        self._wake.set()
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
        if self._dropped[kind] == 1:  # never silent: the first loss of each kind is said at once
            log.warning(
                "vizdebug: the writer's queue is full (max_queue_bytes=%d): %s items are being "
                "dropped and counted in run.json; raise max_queue_bytes or use when_full='block'",
                self.max_queue_bytes,
                kind,
            )
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
        if self._enq_bytes - self._deq_bytes + SCALAR_BYTES > self._high_water:
            if not self._crowded(SCALAR_BYTES, "scalar"):
                return
        else:
            self._enq_bytes += SCALAR_BYTES
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
            self._enq_bytes += EVENT_BYTES
            self._queue.append(event)
            self._wake.set()
        elif self._admit(EVENT_BYTES, type(event).__name__.lower()):
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
        item = SnapshotRequest(tensors, s, reason, relpath, self.clock())
        if reason == "anomaly":  # an anomaly's evidence bypasses the budget, as anomalies do
            if self._closed:
                raise WriterClosedError("this Writer is closed; create a new one to keep writing")
            self._enq_bytes += item.nbytes
            self._queue.append(item)
            self._wake.set()
        elif self._admit(item.nbytes, "snapshot"):
            self._queue.append(item)
            self._wake.set()
        return relpath

    def defer(self, item: Deferred) -> None:
        """Enqueue work to be turned into events on the writer thread.

        An item that declares ``wait_for_room`` (seconds, or None: as long as the writer thread
        runs) is not dropped by ``when_full="drop_newest"``: the caller waits until it fits in
        half the budget (the other half stays free for items that are dropped when full) -- or,
        for an item larger than that, until the queue is empty. Past the wait it is dropped and
        counted like any other.
        """
        nbytes = int(item.nbytes)
        wait = getattr(item, "wait_for_room", False)
        admitted = self._admit(nbytes, "deferred") if wait is False else self._wait(nbytes, wait)
        if admitted:
            self._queue.append(item)
            self._wake.set()  # statistics hold memory until resolved: no waiting for a drain

    def _wait(self, nbytes: int, timeout: float | None) -> bool:
        """Back-pressure for one item: wait for room (see :meth:`defer`); False if dropped."""
        if self._closed:
            raise WriterClosedError("this Writer is closed; create a new one to keep writing")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            pending = self._enq_bytes - self._deq_bytes
            if pending + nbytes <= self.max_queue_bytes // 2 or pending <= 0:
                self._enq_bytes += nbytes
                return True
            self._wake.set()
            if not self._thread.is_alive() or (
                deadline is not None and time.monotonic() >= deadline
            ):
                self._dropped["deferred"] += 1
                return False
            time.sleep(0.001)

    def _step(self, step: int | None) -> int:
        return self.step if step is None else step

    # -- control -------------------------------------------------------------------------

    def flush(self, timeout: float | None = 30.0) -> None:
        """Block until everything enqueued so far is written and flushed by every sink.

        The run directory is always waited for; other sinks for at most ``timeout`` seconds.
        """
        if self._closed or not self._thread.is_alive():
            return
        request = FlushRequest()
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
            self._enq_bytes += EVENT_BYTES
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

    # -- run info ------------------------------------------------------------------------

    def _write_info(self, status: str) -> None:
        document = info_document(
            self._info,
            run=self.run,
            rank=self.rank,
            world_size=self.world_size,
            framework=self.framework,
            status=status,
            now=self.clock(),
            last_step=self._last_step,
            written=self._written,
            dropped=self._dropped,
            invalid=self._invalid,
            sinks=self.sink_status,
        )
        write_run_info(self.run_dir, self.rank, document)


@atexit.register
def _close_all() -> None:
    for writer in list(_LIVE):
        try:
            writer.close()
        except Exception as exc:  # at exit, report and go on closing the others
            log.warning("vizdebug could not close a writer at exit: %s", exc)

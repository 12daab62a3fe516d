"""Statistics off the training thread: a worker that turns recorded tensors into rows.

On CPU the training thread only hands over a reference to each tensor (and its version
counter), in chunks: every hand-over wakes the worker, and a worker awake competes with the
training thread for the GIL. The worker thread, on the second core, takes everything queued at
once and computes the rows in one call that releases the GIL
(:class:`~vizdebug.torch.cpubatch.CpuBatch`), and may branch on finiteness there because it is
not the training thread. At the end of a step the training thread enqueues a
:class:`StatsBatch` both here and in the writer; the writer thread's ``resolve`` waits for the
worker to finish that step and hands the sinks the one small matrix as a
:class:`~vizdebug.batch.StatsBlock`.

In-place safety: before an in-place op writes a queued tensor, the watch's
:class:`~vizdebug.torch.inplace.WriteGuard` hands the entry a copy (:meth:`StatsWorker.swap`),
or waits for the read under way. A tensor whose version counter still moved before the worker
read it (a write the guard cannot see) is not reported; a note says so.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import torch

from .. import yielding
from ..adapters import step_stats
from ..batch import PackedScalar, StatsBlock
from ..events import Event, Note
from ..stats import HIST_BINS
from .cpubatch import CpuBatch, Flat
from .devstats import cpu_row, dtype_name
from .flat import Parts

__all__ = ["Entry", "StatsBatch", "StatsWorker"]

log = logging.getLogger("vizdebug")

_QUEUED, _BUSY, _DONE = 0, 1, 2


@dataclass(slots=True, eq=False)
class Entry:
    """One tensor to get statistics for (``dtype`` and ``shape`` filled in by the worker).

    With ``parts``, ``tensor`` is a flat copy of several parameters (:mod:`.flat`) and the
    entry stands for one row per part, named and shaped by ``parts`` (``name`` then only
    names the group in notes).
    """

    name: str
    role: str
    call: int
    dtype: str
    shape: tuple[int, ...]
    tensor: torch.Tensor | None
    version: int = 0
    #: The row: a 1-D tensor, or (``index >= 0``) the matrix of a worker batch holding it.
    row: torch.Tensor | None = None
    index: int = -1
    state: int = _QUEUED
    problem: str = ""
    parts: Parts | None = None
    #: Called with the tensor once the worker has read it (a flat copy's group takes it back).
    recycle: Callable[[torch.Tensor], None] | None = None
    #: Makes ``tensor`` just before it is read (the worker copies the parameters, or writes
    #: their update, :mod:`.flat`); None from it: not recorded, with a note.
    fill: Callable[[], torch.Tensor | None] | None = None

    @property
    def rows(self) -> int:
        """The statistics rows this entry stands for."""
        return 1 if self.parts is None else len(self.parts)


@dataclass(eq=False)
class StatsBatch:
    """All statistics of one step; a :class:`vizdebug.writer.Deferred` item."""

    step: int
    wall_time: float
    entries: list[Entry]
    bins: int = HIST_BINS
    nbytes: int = 0
    matrix: torch.Tensor | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        # What the writer holds is the step's statistics matrix, not the tensors: those are
        # the worker's, which reads them as they become ready and lets the training thread
        # run at most ``max_lag`` steps ahead (its bound on memory; a recorded ResNet-18 step
        # held 140 MB of copies that, counted here, overflowed the queue and were dropped).
        self.nbytes = sum(e.rows for e in self.entries) * (12 + self.bins) * 8

    def finish(self) -> None:
        """Gather the rows into one matrix (worker thread or training thread)."""
        parts: list[torch.Tensor] = []
        picks: list[int] = []
        offsets: dict[int, int] = {}
        size = 0
        for e in self.entries:
            e.tensor = None
            row = e.row
            if row is None:
                continue
            if e.index < 0:  # a row of its own
                parts.append(row.unsqueeze(0))
                picks.append(size)
                size += 1
                continue
            at = offsets.get(id(row))
            if at is None:  # a worker batch's matrix, met first
                at = offsets[id(row)] = size
                parts.append(row)
                size += row.shape[0]
            if e.parts is None:
                picks.append(at + e.index)
            else:  # one row per part, consecutive
                picks += range(at + e.index, at + e.index + len(e.parts))
        if parts:
            whole = parts[0] if len(parts) == 1 else torch.cat(parts)
            if picks != list(range(size)):
                whole = whole[torch.tensor(picks)]
            self.matrix = whole
        self.done.set()

    def resolve(self, run: str, rank: int) -> Iterator[Event | PackedScalar | StatsBlock]:
        """Wait for the worker, copy the matrix to the host and build the events."""
        self.done.wait(120.0)
        matrix = self.matrix
        if matrix is None:
            yield from self._notes(run, rank)
            return
        host = (matrix if matrix.device.type == "cpu" else matrix.cpu()).numpy()
        rows: list[tuple[str, str, int, str, tuple[int, ...]]] = []
        for e in self.entries:
            if e.row is None:
                continue
            if e.parts is None:
                rows.append((e.name, e.role, e.call, e.dtype, e.shape))
            else:
                rows += [
                    (name, e.role, e.call, e.dtype, shape)
                    for name, shape in zip(e.parts.names, e.parts.shapes, strict=True)
                ]
        yield from step_stats(self.step, self.wall_time, run, rank, rows, host)
        yield from self._notes(run, rank)

    def _notes(self, run: str, rank: int) -> Iterable[Event]:
        for e in self.entries:
            if e.problem:
                yield Note(
                    step=self.step,
                    wall_time=self.wall_time,
                    run=run,
                    rank=rank,
                    tag="vizdebug/torch",
                    text=f"{e.name} ({e.role}, call {e.call}): {e.problem}",
                )


class StatsWorker:
    """A daemon thread computing statistics rows of queued entries, in order.

    Args:
        bins: Histogram bins.
        max_lag: Steps the worker may fall behind before :meth:`end_step` waits for it.
    """

    def __init__(self, *, bins: int = HIST_BINS, max_lag: int = 1, chunk: int = 32) -> None:
        self.bins = bins
        self.max_lag = max_lag
        self.chunk = chunk
        self._held: list[Entry] = []
        self._queue: queue.SimpleQueue[list[Entry] | StatsBatch | None] = queue.SimpleQueue()
        self._lock = threading.Condition()
        self._pending = 0
        #: Entries handed to the thread (training thread's count) and read (the worker's):
        #: one writer each, no lock on the training thread's hand-over.
        self._handed = 0
        self._read = 0
        self._failed = 0
        self._failed_batches = 0
        self._thread = threading.Thread(target=self._loop, name="vizdebug-torch-stats", daemon=True)
        self._thread.start()

    def submit(self, entry: Entry) -> None:
        """Queue an entry (training thread).

        Entries are handed over ``chunk`` at a time (and at :meth:`flush`): every hand-over
        wakes the worker, which then competes with the training thread for the GIL.
        """
        self._held.append(entry)
        if len(self._held) >= self.chunk:
            self.flush()

    def flush(self) -> None:
        """Hand the entries submitted so far to the worker (training thread)."""
        if self._held:
            self._handed += len(self._held)
            self._queue.put(self._held)
            self._held = []

    def swap(self, entry: Entry, copy: torch.Tensor) -> None:
        """Before an in-place op writes ``entry``'s tensor: read ``copy`` instead if the read
        is still to come, wait for a read under way, nothing for one already done."""
        if entry.tensor is None:
            return
        with self._lock:
            if entry.state == _QUEUED:
                entry.tensor = copy
                entry.version = copy._version
            while entry.state == _BUSY:
                self._lock.wait()

    def wait_read(self, entry: Entry) -> None:
        """Wait until the worker has read ``entry`` (training thread)."""
        self.flush()
        with self._lock:
            while entry.state != _DONE and self._thread.is_alive():
                self._lock.wait(1.0)

    def wait_idle(self) -> None:
        """Wait until every entry handed over so far is read (before tensors change in place)."""
        self.flush()
        with self._lock:
            while self._read < self._handed and self._thread.is_alive():
                self._lock.wait(1.0)

    def end_step(self, batch: StatsBatch) -> None:
        """Close a step: the worker stacks its rows after the last entry (training thread)."""
        self.flush()
        with self._lock:
            self._pending += 1
            while self._pending > self.max_lag and self._thread.is_alive():
                self._lock.wait(1.0)
        self._queue.put(batch)

    def close(self) -> None:
        """Finish what is queued and stop the thread."""
        self.flush()
        self._queue.put(None)
        self._thread.join()

    def _loop(self) -> None:
        rows = CpuBatch()
        while True:
            items = [self._queue.get()]
            while True:  # everything queued so far: one batch, one GIL hand-back
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            entries = [e for i in items if isinstance(i, list) for e in i]
            # an entry made on this thread (``fill``) starts a run of its own: the tensors
            # before it are read first (its fill may write into one of them, or reuse one)
            start = 0
            for k in range(1, len(entries) + 1):
                if k == len(entries) or entries[k].fill is not None:
                    self._compute(entries[start:k], rows)
                    start = k
            for item in items:
                if isinstance(item, StatsBatch):
                    item.finish()
                    with self._lock:
                        self._pending -= 1
                        self._lock.notify_all()
            if any(i is None for i in items):  # close(): everything before it is done
                return

    def _compute(self, entries: list[Entry], rows: CpuBatch) -> None:
        # Two loops over the entries, each under the lock: every line of Python here holds the
        # GIL the training thread waits for (a millisecond of it a step cost ~7% of a step).
        for e in entries:
            if e.fill is not None:
                self._fill(e)
        todo: list[torch.Tensor | Flat] = []
        count = 0  # rows so far
        with self._lock:
            for e in yielding.offering(entries):
                e.state = _BUSY
                t = e.tensor
                if t is not None:
                    e.dtype = dtype_name(t)  # metadata read here, off the training thread
                    e.shape = tuple(t.shape)
                    if t._version == e.version:
                        e.index = count
                        if e.parts is None:
                            todo.append(t)
                            count += 1
                        else:  # a row per part, no view of each
                            todo.append((t, e.parts.sizes))
                            count += len(e.parts)
        try:
            matrix: torch.Tensor | None = rows.rows(todo, self.bins)
        except Exception as exc:  # the batch failed: each tensor on its own (slower)
            matrix = None
            self._failed_batches += 1
            if self._failed_batches == 1:
                log.warning("vizdebug: statistics computed one tensor at a time: %r", exc)
        with self._lock:
            for e in yielding.offering(entries):
                e.state = _DONE
                t = e.tensor
                if t is None:
                    continue
                if t._version != e.version:
                    e.row = None  # changed before or under the read
                    e.index = -1
                    e.problem = "modified in place before its statistics were computed"
                elif matrix is not None:
                    e.row = matrix  # no per-row views: finish() gathers once
                elif e.parts is not None:
                    e.row = self._part_rows(t, e.parts)
                    e.index = 0
                    if e.row is None:
                        e.problem = "statistics could not be computed"
                else:
                    e.row = self._row(t, e.name)
                    e.index = -1
                e.tensor = None
                if e.recycle is not None:
                    e.recycle(t)
            self._read += len(entries)
            self._lock.notify_all()

    def _fill(self, e: Entry) -> None:
        """Make an entry's tensor before it is read (a copy of the parameters, an update)."""
        fill, e.fill = e.fill, None
        try:
            t = fill() if fill is not None else e.tensor
        except Exception as exc:  # a failed copy must not stop the worker
            t = None
            e.problem = f"not recorded: {exc!r}"
        if t is None:
            e.problem = e.problem or "not recorded: changed shape, dtype or device under the watch"
            e.tensor = None
            return
        e.tensor = t
        e.version = t._version

    def _part_rows(self, t: torch.Tensor, parts: Parts) -> torch.Tensor | None:
        """The rows of a flat entry's parts, one tensor at a time (the batch failed)."""
        rows = []
        for name, part in zip(parts.names, torch.split(t, parts.sizes), strict=True):
            row = self._row(part, name)
            if row is None:
                return None
            rows.append(row)
        return torch.stack(rows)

    def _row(self, t: torch.Tensor, name: str) -> torch.Tensor | None:
        try:
            return torch.tensor(cpu_row(t, bins=self.bins), dtype=torch.float64)
        except Exception as exc:  # a failed row must not stop the worker
            self._failed += 1
            if self._failed == 1:
                log.warning("vizdebug could not compute statistics of %s: %r", name, exc)
            return None

"""A run held in memory for the TUI, with its statistics kept packed.

:class:`RunStore` reads a run directory with :class:`~vizdebug.runs.RunReader`
(``expand_stats=False``) and keeps every :class:`~vizdebug.runs.codec.StatsBlock` packed: blocks
that share a row layout (the same ``(name, role, call, dtype, shape)`` rows, which is what a
model writes step after step) go into one :class:`Segment` of growable numpy arrays, so a
200-module, 5,000-step run costs a few thousand array copies, not a million dataclasses.

:meth:`RunStore.poll` does the file reading and is meant for a worker thread; every accessor
takes the store's lock, so the UI thread can read while a poll appends.
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..events import Anomaly, Histogram, ModelStructure, Note, RunInfo, Scalar, SnapshotRef
from ..runs.codec import StatsBlock
from ..runs.reader import ReadProblem, RunReader, is_event_file
from ..stats import COLUMNS

__all__ = ["Delta", "Latest", "RunStore", "Segment", "Series", "is_run_dir"]

#: Index of each fixed statistics column in a packed row.
COL = {name: i for i, name in enumerate(COLUMNS)}
NFIX = len(COLUMNS)

Row = tuple[str, str, int, str, tuple[int, ...]]
Key = tuple[str, str]


def is_run_dir(path: Path) -> bool:
    """Whether ``path`` is a directory holding event files itself (a run, not a log dir)."""
    try:
        return path.is_dir() and any(is_event_file(p) for p in path.iterdir())
    except OSError:
        return False


class Segment:
    """The steps of a run that share one row layout, as growable arrays.

    Attributes:
        rows: ``(name, role, call, dtype, shape)`` per row.
        index: ``(name, role)`` to row number (the last call of a module called several times).
        bins: Number of histogram bins.
        n: Number of steps held.
    """

    def __init__(self, rows: tuple[Row, ...], bins: int) -> None:
        self.rows = rows
        self.index: dict[Key, int] = {(r[0], r[1]): i for i, r in enumerate(rows)}
        self.bins = bins
        self.n = 0
        cap = 16
        self._steps = np.zeros(cap, dtype=np.int64)
        self._fixed = np.zeros((cap, len(rows), NFIX), dtype=np.float64)
        # Histogram counts as float32: exact below 2**24 per bin, and a third less memory.
        self._hist = np.zeros((cap, len(rows), bins), dtype=np.float32)

    def append(self, step: int, matrix: npt.NDArray[np.float64]) -> None:
        """Add one step's matrix (``len(rows)`` rows of COLUMNS + counts)."""
        if self.n == len(self._steps):
            cap = 2 * self.n
            steps = np.zeros(cap, dtype=np.int64)
            steps[: self.n] = self._steps
            fixed = np.zeros((cap, *self._fixed.shape[1:]), dtype=np.float64)
            fixed[: self.n] = self._fixed
            hist = np.zeros((cap, *self._hist.shape[1:]), dtype=np.float32)
            hist[: self.n] = self._hist
            self._steps, self._fixed, self._hist = steps, fixed, hist
        self._steps[self.n] = step
        self._fixed[self.n] = matrix[:, :NFIX]
        self._hist[self.n] = matrix[:, NFIX:]
        self.n += 1

    @property
    def steps(self) -> npt.NDArray[np.int64]:
        """Step of each held matrix, in file order."""
        return self._steps[: self.n]

    def column(self, row: int, col: int) -> npt.NDArray[np.float64]:
        """One statistic of one row over the held steps."""
        return self._fixed[: self.n, row, col]

    def fixed_at(self, i: int, row: int) -> npt.NDArray[np.float64]:
        """The fixed columns of one row at the ``i``-th held step."""
        return np.asarray(self._fixed[i, row], dtype=np.float64)

    def hist_at(self, i: int, row: int) -> npt.NDArray[np.float32]:
        """The histogram counts of one row at the ``i``-th held step."""
        return np.asarray(self._hist[i, row], dtype=np.float32)


@dataclass(frozen=True)
class Series:
    """One statistic of one tensor over steps."""

    steps: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]


@dataclass(frozen=True)
class Latest:
    """The statistics of one tensor at one step.

    Attributes:
        step: The step.
        dtype, shape: As recorded.
        fixed: The :data:`~vizdebug.stats.COLUMNS` values.
        hist: Histogram counts over ``[fixed[hist_lo], fixed[hist_hi]]``.
    """

    step: int
    dtype: str
    shape: tuple[int, ...]
    fixed: npt.NDArray[np.float64]
    hist: npt.NDArray[np.float32]

    def get(self, column: str) -> float:
        """One fixed statistic by name (see :data:`~vizdebug.stats.COLUMNS`)."""
        return float(self.fixed[COL[column]])


@dataclass
class Delta:
    """What one :meth:`RunStore.poll` added."""

    items: int = 0
    stats_steps: int = 0
    anomalies: int = 0
    new_names: bool = False
    structures: int = 0
    snapshots: int = 0
    scalars: int = 0
    problems: int = 0

    @property
    def empty(self) -> bool:
        """Whether nothing was added."""
        return self.items == 0 and self.problems == 0


@dataclass
class RunStore:
    """A run directory loaded for display; :meth:`poll` tails it.

    Attributes:
        path: The run directory.
        segments: Packed statistics by row layout.
        names: Every recorded tensor name, in first-seen order.
        steps: The steps the cursor visits, sorted: every step with statistics (or, without
            any, with scalars or histograms) and every step with an anomaly or a snapshot.
        last_step: Highest step of any event read (-1 before one); see :attr:`step_count`.
        anomalies, structures, snapshots, notes, run_infos: Events of those kinds.
        scalars: Scalar (steps, values) lists by tag.
        histograms: Other tools' histograms by tag.
        problems: Records that could not be read.
        events: Events read (each tensor's statistics count as one).
        polls: Completed calls of :meth:`poll`.
    """

    path: Path
    segments: dict[tuple[tuple[Row, ...], int], Segment] = field(default_factory=dict)
    names: dict[str, None] = field(default_factory=dict)
    roles: dict[str, dict[str, None]] = field(default_factory=lambda: defaultdict(dict))
    steps: list[int] = field(default_factory=list)
    anomalies: list[Anomaly] = field(default_factory=list)
    structures: list[ModelStructure] = field(default_factory=list)
    snapshots: list[SnapshotRef] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    run_infos: list[RunInfo] = field(default_factory=list)
    scalars: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)
    histograms: dict[str, list[Histogram]] = field(default_factory=lambda: defaultdict(list))
    events: int = 0
    polls: int = 0
    last_step: int = -1
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _reader: RunReader | None = field(default=None, repr=False)
    _step_set: set[int] = field(default_factory=set, repr=False)
    _other_steps: set[int] = field(default_factory=set, repr=False)
    _last_segment: Segment | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        """The run directory's name."""
        return self.path.name

    @property
    def problems(self) -> list[ReadProblem]:
        """Records that could not be read (file, offset, message)."""
        return list(self._reader.problems) if self._reader else []

    def unread_tails(self) -> list[tuple[str, int, int]]:
        """``(file, offset, size)`` of each event file that ends in an incomplete record.

        Normal for a moment while a writer is mid-write; in a run nobody writes any more, the
        file was cut (a killed process, a full disk) and could not be read whole.
        """
        # RunReader keeps where each file's reading stopped in its (private) file states.
        states = getattr(self._reader, "_files", {}) if self._reader else {}
        out = []
        for path, state in list(states.items()):
            offset = int(getattr(getattr(state, "reader", None), "offset", 0))
            try:
                size = path.stat().st_size
            except OSError:
                continue
            if size > offset and not getattr(state, "broken", False):
                out.append((path.name, offset, size))
        return out

    @property
    def lock(self) -> threading.RLock:
        """Held while a poll appends; take it to read several fields consistently."""
        return self._lock

    def poll(self) -> Delta:
        """Read what was appended to the run's files since the last call (blocking I/O).

        Never raises for bad data: unreadable records become :attr:`problems`.
        """
        if self._reader is None:
            self._reader = RunReader(self.path, expand_stats=False)
        before = len(self._reader.problems)
        items = self._reader.poll()
        delta = Delta(items=len(items), problems=len(self._reader.problems) - before)
        with self._lock:
            self.polls += 1
            for item in items:
                self._add(item, delta)
        return delta

    def _add(self, item: Any, delta: Delta) -> None:
        step = getattr(item, "step", -1)
        # run info carries the writer's step counter at open/close, not a training step
        if isinstance(step, int) and step > self.last_step and not isinstance(item, RunInfo):
            self.last_step = step
        if isinstance(item, StatsBlock):
            self.events += len(item.rows)
            bins = item.matrix.shape[1] - NFIX
            last = self._last_segment
            if last is not None and last.rows is item.rows and last.bins == bins:
                seg: Segment | None = last  # the decoder reuses the rows of a repeated header
            else:
                seg = self.segments.get((item.rows, bins))
            if seg is None:
                seg = self.segments[(item.rows, bins)] = Segment(item.rows, bins)
                for name, role, *_ in item.rows:
                    if name not in self.names:
                        self.names[name] = None
                        delta.new_names = True
                    self.roles[name][role] = None
            self._last_segment = seg
            seg.append(item.step, item.matrix)
            if item.step not in self._step_set:
                self._step_set.add(item.step)
                if item.step not in self._other_steps:  # else already a cursor step
                    self._insert_step(item.step)
                delta.stats_steps += 1
            return
        self.events += 1
        if isinstance(item, Scalar):
            steps, values = self.scalars.setdefault(item.tag, ([], []))
            steps.append(item.step)
            values.append(item.value)
            self._other_step(item.step)
            delta.scalars += 1
        elif isinstance(item, Histogram):
            self.histograms[item.tag].append(item)
            self._other_step(item.step)
            delta.scalars += 1
        elif isinstance(item, Anomaly):
            self.anomalies.append(item)
            self._visit_step(item.step)
            delta.anomalies += 1
        elif isinstance(item, ModelStructure):
            self.structures.append(item)
            delta.structures += 1
        elif isinstance(item, SnapshotRef):
            self.snapshots.append(item)
            self._visit_step(item.step)
            delta.snapshots += 1
        elif isinstance(item, Note):
            self.notes.append(item)
        elif isinstance(item, RunInfo):
            self.run_infos.append(item)

    def _insert_step(self, step: int) -> None:
        if not self.steps or step > self.steps[-1]:
            self.steps.append(step)
        else:
            bisect.insort(self.steps, step)

    def _visit_step(self, step: int) -> None:
        # An anomaly's or a snapshot's step is a place to go even when its statistics were
        # not recorded (a snapshot of the step after the NaN): `s` and `a` must reach it.
        if step >= 0 and step not in self._step_set and step not in self._other_steps:
            self._other_steps.add(step)
            self._insert_step(step)

    def _other_step(self, step: int) -> None:
        # Runs without vizdebug statistics (other tools' files) step through their scalars.
        if self._step_set or step in self._other_steps:
            return  # (a step first visited for an anomaly stays: it was inserted then)
        self._other_steps.add(step)
        self._insert_step(step)

    # -- queries (UI thread) ---------------------------------------------------------------

    @property
    def live_names(self) -> list[str]:
        """A snapshot of :attr:`names`."""
        with self._lock:
            return list(self.names)

    def roles_of(self, name: str) -> list[str]:
        """Roles recorded for a tensor name."""
        with self._lock:
            return list(self.roles.get(name, ()))

    def series(self, name: str, role: str, column: str) -> Series:
        """One statistic of ``(name, role)`` over every step that recorded it, by step."""
        col = COL[column]
        parts_s: list[npt.NDArray[np.int64]] = []
        parts_v: list[npt.NDArray[np.float64]] = []
        with self._lock:
            for seg in self.segments.values():
                row = seg.index.get((name, role))
                if row is not None and seg.n:
                    parts_s.append(seg.steps.copy())
                    parts_v.append(seg.column(row, col).copy())
        if not parts_s:
            return Series(np.zeros(0, dtype=np.int64), np.zeros(0))
        if len(parts_s) == 1:
            return Series(parts_s[0], parts_v[0])
        steps = np.concatenate(parts_s)
        order = np.argsort(steps, kind="stable")
        return Series(steps[order], np.concatenate(parts_v)[order])

    def at(self, name: str, role: str, step: int | None = None) -> Latest | None:
        """Statistics of ``(name, role)`` at the last recorded step ``<= step`` (None: latest)."""
        best: tuple[int, Segment, int, int] | None = None
        with self._lock:
            for seg in self.segments.values():
                row = seg.index.get((name, role))
                if row is None or not seg.n:
                    continue
                steps = seg.steps
                if step is None:
                    i = seg.n - 1
                    if steps[i] < steps.max():  # out-of-order writes: take the largest step
                        i = int(np.argmax(steps))
                else:
                    i = int(np.searchsorted(steps, step, side="right")) - 1
                    if i < 0:
                        continue
                s = int(steps[i])
                if best is None or s > best[0]:
                    best = (s, seg, i, row)
            if best is None:
                return None
            s, seg, i, row = best
            r = seg.rows[row]
            return Latest(s, r[3], r[4], seg.fixed_at(i, row).copy(), seg.hist_at(i, row).copy())

    @property
    def step_count(self) -> int:
        """Steps of the run: 1 + the highest step seen in its event files (0 before any)."""
        return self.last_step + 1

    @property
    def recorded(self) -> int:
        """Distinct steps with statistics rows."""
        with self._lock:
            return len(self._step_set)

    def has_stats(self, step: int) -> bool:
        """Whether statistics were recorded at ``step``."""
        with self._lock:
            return step in self._step_set

    def snapshots_at(self, step: int) -> list[SnapshotRef]:
        """The snapshots recorded at ``step``."""
        with self._lock:
            return [s for s in self.snapshots if s.step == step]

    def step_index(self, step: int) -> int:
        """Index of the last recorded step ``<= step`` in :attr:`steps` (0 if none)."""
        with self._lock:
            return max(0, bisect.bisect_right(self.steps, step) - 1)

"""The batch of events a sink receives: scalars and statistics stay packed until a sink looks.

Most events a run writes are scalars and tensor statistics. The run-directory sink encodes
them straight from their packed forms (:meth:`EventBatch.raw`): a scalar as a tuple, one step's
statistics as one :class:`StatsBlock` matrix, written as it is. Any other sink that indexes or
iterates the batch gets ordinary frozen :class:`~vizdebug.events.Scalar` and
:class:`~vizdebug.events.TensorStats` events, built once and shared. (Building an object per
tensor on the writer thread took the GIL from the training thread: on the digits CNN with
everything recorded every step the writer's Python cost a quarter of a step.)
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import overload

import numpy as np
import numpy.typing as npt

from .events import Event, TensorStats, make_scalar
from .stats import COLUMNS, stats_from_row

__all__ = ["EventBatch", "PackedScalar", "StatsBlock"]

#: A scalar before it becomes an event: ``(tag, value, step, wall_time)``.
PackedScalar = tuple[str, float, int, float]


@dataclass(frozen=True)
class StatsBlock:
    """Tensor statistics of one step, still packed: what adapters emit and readers return.

    Attributes:
        step, wall_time, run, rank: As on every event.
        rows: ``(name, role, call, dtype, shape)`` per row of ``matrix``.
        matrix: float64, one row per tensor: :data:`~vizdebug.stats.COLUMNS` then counts.
    """

    step: int
    wall_time: float
    run: str
    rank: int
    rows: tuple[tuple[str, str, int, str, tuple[int, ...]], ...]
    matrix: npt.NDArray[np.float64]

    def events(self) -> list[TensorStats]:
        """Unpack into :class:`~vizdebug.events.TensorStats` events."""
        if not self.rows:
            return []
        width = len(COLUMNS)
        heads = self.matrix[:, :width].tolist()
        counts = np.rint(self.matrix[:, width:]).astype(np.int64).tolist()  # all rows at once
        return [
            TensorStats(
                step=self.step,
                wall_time=self.wall_time,
                run=self.run,
                rank=self.rank,
                name=name,
                role=role,
                call=call,
                stats=stats_from_row(heads[i], dtype, shape, counts[i]),
            )
            for i, (name, role, call, dtype, shape) in enumerate(self.rows)
        ]


class EventBatch(Sequence[Event]):
    """An immutable sequence of events, some of them still packed scalars.

    Args:
        items: Events and packed scalars, in order.
        run, rank: Stamped on the scalars when they are unpacked.
    """

    __slots__ = ("_events", "_items", "_len", "_lock", "rank", "run")

    def __init__(self, items: list[Event | PackedScalar | StatsBlock], run: str, rank: int) -> None:
        self._items = items
        self._len = len(items) + sum(len(i.rows) - 1 for i in items if type(i) is StatsBlock)
        self._events: list[Event] | None = None
        self._lock = threading.Lock()
        self.run = run
        self.rank = rank

    def raw(self) -> list[Event | PackedScalar | StatsBlock]:
        """The items as queued: events, scalars as ``(tag, value, step, wall_time)`` and
        statistics as :class:`StatsBlock`."""
        return self._items

    def events(self) -> list[Event]:
        """Every item as an event (built on first use, then shared by all sinks)."""
        events = self._events
        if events is None:
            with self._lock:
                if self._events is None:
                    run, rank = self.run, self.rank
                    built: list[Event] = []
                    for i in self._items:
                        if isinstance(i, tuple):
                            built.append(make_scalar(i[2], i[3], run, rank, i[0], i[1]))
                        elif isinstance(i, StatsBlock):
                            built += i.events()
                        else:
                            built.append(i)
                    self._events = built
                events = self._events
        return events

    def __len__(self) -> int:
        return self._len

    @overload
    def __getitem__(self, index: int) -> Event: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Event]: ...

    def __getitem__(self, index: int | slice) -> Event | Sequence[Event]:
        return self.events()[index]

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events())

"""The values of one step on their way to the writer thread.

The training step returns its described tensors packed in one vector
(:func:`vizdebug.tf.ops.pack`) and one int32 vector of shapes; :func:`stats_items` cuts them
into :class:`StatsItem` chunks of bounded size (the values stay a tensor: no host copy in the
training thread), and :meth:`StatsItem.resolve` -- run by the writer thread -- copies them to
numpy once per step, computes the statistics (:func:`vizdebug.hoststats.host_rows`: the C
kernel, without the GIL) and builds the events. The chunks ask the writer for back-pressure
(``wait_for_room``) rather than being dropped: a recorded step waits for the writer instead of
losing its statistics, and the queue holds at most its budget.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..adapters import step_stats
from ..batch import PackedScalar, StatsBlock
from ..events import Event
from ..hoststats import host_rows
from ..stats import HIST_BINS

__all__ = ["Row", "StatsItem", "stats_items"]


@dataclass(frozen=True, slots=True)
class Row:
    """What one packed tensor (one statistics row) describes.

    Attributes:
        name: Layer name (``"outer.inner"``) or weight name (``"dense.kernel"``).
        role: One of :data:`vizdebug.events.ROLES`.
        call: Call index of a layer within the step (shared layers are called more than once).
        dtype: The tensor's dtype name.
        rank: Number of dimensions (how many entries of the shape vector belong to it).
    """

    name: str
    role: str
    call: int
    dtype: str
    rank: int


class _Source:
    """One step's packed values, shared by its chunks; copied to numpy once, on the writer
    thread, and let go when its last chunk is resolved."""

    __slots__ = ("host", "left", "values")

    def __init__(self, values: Any, chunks: int) -> None:
        self.values: Any = values
        self.host: np.ndarray[Any, Any] | None = None
        self.left = chunks

    def take(self, lo: int, hi: int) -> np.ndarray[Any, Any]:
        if self.host is None:
            v = self.values
            self.host = np.asarray(v.numpy() if hasattr(v, "numpy") else v)
            self.values = None
        part = self.host[lo:hi]
        self.left -= 1
        if self.left <= 0:
            self.host = None
        return part


class StatsItem:
    """A :class:`vizdebug.writer.Deferred` item: consecutive rows of one step's values.

    Build them with :func:`stats_items`, which cuts a step into chunks of bounded size.

    Args:
        step: The step.
        wall_time: When it was recorded.
        meta: ``(name, role, call, dtype, shape)`` of each row.
        source: The step's packed values.
        span: The element range of these rows within the packed values.
        bins: Histogram bins.
        wait_for_room: How long the caller may wait for room in the writer's queue (seconds;
            None: as long as the writer thread runs) instead of the item being dropped: the
            queue applies back-pressure (see :meth:`vizdebug.writer.Writer.defer`).
    """

    def __init__(
        self,
        step: int,
        wall_time: float,
        meta: Sequence[tuple[str, str, int, str, tuple[int, ...]]],
        source: _Source,
        span: tuple[int, int],
        itemsize: int,
        bins: int = HIST_BINS,
        wait_for_room: float | None = None,
    ) -> None:
        self.step = step
        self.wall_time = wall_time
        self.meta = list(meta)
        self.source: _Source | None = source
        self.span = span
        self.bins = bins
        self.wait_for_room = wait_for_room
        self.nbytes = (span[1] - span[0]) * itemsize + 256

    def resolve(self, run: str, rank: int) -> Iterator[Event | PackedScalar | StatsBlock]:
        """Copy to the host, compute each tensor's statistics, build the events."""
        source, self.source = self.source, None
        if source is None:
            return
        host = source.take(*self.span)
        sizes = [math.prod(m[4]) for m in self.meta]
        matrix = host_rows(host, sizes, bins=self.bins)
        yield from step_stats(self.step, self.wall_time, run, rank, self.meta, matrix)


def stats_items(
    step: int,
    wall_time: float,
    rows: Sequence[Row],
    values: Any,
    shapes: Any,
    *,
    bins: int = HIST_BINS,
    chunk_bytes: int = 8 << 20,
    wait_for_room: float | None = None,
) -> list[StatsItem]:
    """One step's values as writer items of at most ``chunk_bytes`` each (a bigger tensor
    alone), cut between rows; a weight stays with its update (their ratio is computed together).

    Only the small shape vector is read here; the values stay a tensor until the writer
    thread resolves the first chunk.

    Args:
        step, wall_time: Of the step.
        rows: The row descriptions, in packing order.
        values: Every described tensor flattened and concatenated (float32 or float64 tensor
            or array; see :func:`vizdebug.tf.ops.pack`).
        shapes: Concatenated shapes (int32 tensor or array).
        bins: Histogram bins.
        chunk_bytes: Target size of one item.
        wait_for_room: See :class:`StatsItem`.
    """
    dims = [int(d) for d in (shapes.numpy() if hasattr(shapes, "numpy") else shapes)]
    itemsize = int(np.dtype(_numpy_dtype(values)).itemsize)
    meta, at = [], 0
    for r in rows:
        shape = tuple(dims[at : at + r.rank])
        at += r.rank
        meta.append((r.name, r.role, r.call, r.dtype, shape))
    cuts: list[tuple[int, int, int, int]] = []  # row and element ranges
    row0 = el0 = el = 0
    for i, m in enumerate(meta):
        size = math.prod(m[4])
        if i > row0 and m[1] != "update" and (el + size - el0) * itemsize > chunk_bytes:
            cuts.append((row0, i, el0, el))
            row0, el0 = i, el
        el += size
    if len(meta) > row0:
        cuts.append((row0, len(meta), el0, el))
    source = _Source(values, len(cuts))
    return [
        StatsItem(step, wall_time, meta[r0:r1], source, (e0, e1), itemsize, bins, wait_for_room)
        for r0, r1, e0, e1 in cuts
    ]


def _numpy_dtype(values: Any) -> Any:
    dtype = values.dtype
    return getattr(dtype, "as_numpy_dtype", dtype)

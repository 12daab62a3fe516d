"""The values of one step on their way to the writer thread.

The training step returns its described tensors either as they are (a list: the Keras record
pass) or packed in one vector (:func:`vizdebug.tf.ops.pack`) with one int32 vector of shapes;
:func:`stats_items` cuts them into :class:`StatsItem` chunks of bounded size (the values stay
tensors: no host copy in the training thread), and :meth:`StatsItem.resolve` -- run by the
writer thread -- computes the statistics (the C kernel of :mod:`vizdebug.hoststats`, without
the GIL) and builds the events. A list is read where each tensor lies (a zero-copy view of a
host tensor), and each chunk lets go of its own tensors once resolved; a packed vector is
copied to numpy once per step and let go with its last chunk. The chunks ask the writer for
back-pressure (``wait_for_room``) rather than being dropped: a recorded step waits for the
writer instead of losing its statistics, and the queue holds at most its budget.
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
from ..hoststats import host_rows, host_rows_each
from ..stats import HIST_BINS

__all__ = ["Row", "StatsItem", "host_view", "stats_items"]


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
        source: The step's packed values, or these rows' own tensors (one each).
        span: The element range of these rows within the packed values (unused for tensors).
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
        source: _Source | list[Any],
        span: tuple[int, int],
        itemsize: int,
        bins: int = HIST_BINS,
        wait_for_room: float | None = None,
        *,
        nbytes: int | None = None,
    ) -> None:
        self.step = step
        self.wall_time = wall_time
        self.meta = list(meta)
        self.source: _Source | list[Any] | None = source
        self.span = span
        self.bins = bins
        self.wait_for_room = wait_for_room
        size = (span[1] - span[0]) * itemsize if nbytes is None else nbytes
        self.nbytes = size + 256

    def resolve(self, run: str, rank: int) -> Iterator[Event | PackedScalar | StatsBlock]:
        """Copy to the host, compute each tensor's statistics, build the events."""
        source, self.source = self.source, None
        if source is None:
            return
        if isinstance(source, list):
            matrix = host_rows_each([host_view(t) for t in source], bins=self.bins)
        else:
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

    Packed values: only the small shape vector is read here; the values stay a tensor until
    the writer thread resolves the first chunk. A list: nothing is read here.

    Args:
        step, wall_time: Of the step.
        rows: The row descriptions, in packing order.
        values: Every described tensor flattened and concatenated (float32 or float64 tensor
            or array; see :func:`vizdebug.tf.ops.pack`), or a list of the tensors themselves
            (float32 or float64, one per row).
        shapes: Concatenated shapes (int32 tensor or array); None with a list.
        bins: Histogram bins.
        chunk_bytes: Target size of one item.
        wait_for_room: See :class:`StatsItem`.
    """
    if isinstance(values, list | tuple):
        return _tensor_items(step, wall_time, rows, list(values), bins, chunk_bytes, wait_for_room)
    dims = [int(d) for d in (shapes.numpy() if hasattr(shapes, "numpy") else shapes)]
    itemsize = int(np.dtype(_numpy_dtype(values)).itemsize)
    meta, at = [], 0
    for r in rows:
        shape = tuple(dims[at : at + r.rank])
        at += r.rank
        meta.append((r.name, r.role, r.call, r.dtype, shape))
    cuts = _cuts(meta, [math.prod(m[4]) * itemsize for m in meta], chunk_bytes)
    source = _Source(values, len(cuts))
    return [
        StatsItem(step, wall_time, meta[r0:r1], source, (e0, e1), itemsize, bins, wait_for_room)
        for r0, r1, e0, e1 in cuts
    ]


def _cuts(
    meta: Sequence[tuple[str, str, int, str, tuple[int, ...]]],
    sizes: Sequence[int],
    chunk_bytes: int,
) -> list[tuple[int, int, int, int]]:
    """Row ranges (and their element ranges, for packed values) of at most ``chunk_bytes``."""
    cuts: list[tuple[int, int, int, int]] = []
    row0 = b0 = b = 0
    el0 = el = 0
    for i, m in enumerate(meta):
        if i > row0 and m[1] != "update" and b + sizes[i] - b0 > chunk_bytes:
            cuts.append((row0, i, el0, el))
            row0, b0, el0 = i, b, el
        b += sizes[i]
        el += math.prod(m[4])
    if len(meta) > row0:
        cuts.append((row0, len(meta), el0, el))
    return cuts


def _tensor_items(
    step: int,
    wall_time: float,
    rows: Sequence[Row],
    tensors: list[Any],
    bins: int,
    chunk_bytes: int,
    wait_for_room: float | None,
) -> list[StatsItem]:
    """:func:`stats_items` of a list of tensors: each chunk holds its own rows' tensors."""
    if len(tensors) != len(rows):
        raise ValueError(f"{len(rows)} rows but {len(tensors)} tensors")
    meta = [
        (r.name, r.role, r.call, r.dtype, tuple(int(d) for d in t.shape))
        for r, t in zip(rows, tensors, strict=True)
    ]
    nbytes = [math.prod(m[4]) * int(np.dtype(_numpy_dtype(t)).itemsize)
              for m, t in zip(meta, tensors, strict=True)]  # fmt: skip
    items = []
    for r0, r1, _, _ in _cuts(meta, nbytes, chunk_bytes):
        part = tensors[r0:r1]
        size = sum(nbytes[r0:r1])
        items.append(StatsItem(step, wall_time, meta[r0:r1], part, (0, 0), 1, bins,
                               wait_for_room, nbytes=size))  # fmt: skip
    return items


def host_view(t: Any) -> np.ndarray[Any, Any]:
    """A numpy view of a host tensor without a copy where it allows one (else a copy)."""
    if isinstance(t, np.ndarray):
        return t
    try:
        return np.asarray(memoryview(t))  # an EagerTensor on the CPU exports its buffer
    except (TypeError, ValueError, BufferError):
        return np.asarray(t.numpy() if hasattr(t, "numpy") else t)


def _numpy_dtype(values: Any) -> Any:
    dtype = values.dtype
    return getattr(dtype, "as_numpy_dtype", dtype)

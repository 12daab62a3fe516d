"""The values of one step on their way to the writer thread.

The training step returns its described tensors packed in one vector
(:func:`vizdebug.tf.ops.pack`) and one int32 vector of shapes; :class:`StatsItem` holds them (as
tensors: no host copy in the training thread) together with the row descriptions, and
:meth:`StatsItem.resolve` -- run by the writer thread -- copies them to numpy, computes the
statistics (:func:`vizdebug.hoststats.host_rows`: the C kernel, without the GIL) and builds
the events.
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

__all__ = ["Row", "StatsItem"]


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


class StatsItem:
    """A :class:`vizdebug.writer.Deferred` item: one step's values, still as tensors.

    Args:
        step: The step.
        wall_time: When it was recorded.
        rows: The row descriptions, in packing order.
        values: Every described tensor flattened and concatenated (float32 or float64 tensor
            or array; see :func:`vizdebug.tf.ops.pack`).
        shapes: Concatenated shapes (int32 tensor or array).
        bins: Histogram bins.
    """

    def __init__(
        self,
        step: int,
        wall_time: float,
        rows: Sequence[Row],
        values: Any,
        shapes: Any,
        bins: int = HIST_BINS,
    ) -> None:
        self.step = step
        self.wall_time = wall_time
        self.rows = tuple(rows)
        self.values = values
        self.shapes = shapes
        self.bins = bins
        size = int(np.prod(values.shape)) * np.dtype(_numpy_dtype(values)).itemsize
        self.nbytes = size + 256

    def resolve(self, run: str, rank: int) -> Iterator[Event | PackedScalar | StatsBlock]:
        """Copy to the host, compute each tensor's statistics, build the events."""
        host = np.asarray(self.values.numpy() if hasattr(self.values, "numpy") else self.values)
        dims = [
            int(d) for d in (self.shapes.numpy() if hasattr(self.shapes, "numpy") else self.shapes)
        ]
        self.values = self.shapes = None
        meta = []
        sizes = []
        at = 0
        for r in self.rows:
            shape = tuple(dims[at : at + r.rank])
            at += r.rank
            sizes.append(math.prod(shape))
            meta.append((r.name, r.role, r.call, r.dtype, shape))
        matrix = host_rows(host, sizes, bins=self.bins)
        yield from step_stats(self.step, self.wall_time, run, rank, meta, matrix)


def _numpy_dtype(values: Any) -> Any:
    dtype = values.dtype
    return getattr(dtype, "as_numpy_dtype", dtype)

"""The statistics of one step on their way to the writer thread.

The training step returns one float64 matrix (:func:`vizdebug.tf.ops.stats_matrix`) and one
int32 vector of shapes; :class:`StatsItem` holds them (as tensors: no host copy in the training
thread) together with the row descriptions, and :meth:`StatsItem.resolve` -- run by the writer
thread -- copies them to numpy and builds the events.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ..adapters import step_stats
from ..events import Event
from ..stats import HIST_BINS, stats_from_row

__all__ = ["Row", "StatsItem", "fix_row"]


def fix_row(row: list[float]) -> list[float]:
    """Moments of a tensor without finite values are NaN, its histogram range (0, 0).

    The graph never makes NaN constants (``enable_check_numerics`` would flag them), so this
    happens here, on the host.
    """
    if row[0] - row[1] - row[2] - row[3] <= 0:
        row[5:9] = [math.nan] * 4
        row[9] = 0.0
        row[10] = row[11] = 0.0
    return row


@dataclass(frozen=True, slots=True)
class Row:
    """What one row of the statistics matrix describes.

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
    """A :class:`vizdebug.writer.Deferred` item: one step's statistics, still as tensors.

    Args:
        step: The step.
        wall_time: When it was recorded.
        rows: The row descriptions, in matrix order.
        matrix: ``[len(rows), 12 + bins]`` float64 tensor (or array).
        shapes: Concatenated shapes (int32 tensor or array).
        bins: Histogram bins.
    """

    def __init__(
        self,
        step: int,
        wall_time: float,
        rows: Sequence[Row],
        matrix: Any,
        shapes: Any,
        bins: int = HIST_BINS,
    ) -> None:
        self.step = step
        self.wall_time = wall_time
        self.rows = tuple(rows)
        self.matrix = matrix
        self.shapes = shapes
        self.nbytes = len(self.rows) * (12 + bins) * 8 + 256

    def resolve(self, run: str, rank: int) -> Iterator[Event]:
        """Copy to the host and build the :class:`TensorStats` (and update-ratio scalars)."""
        host = self.matrix.numpy() if hasattr(self.matrix, "numpy") else self.matrix
        dims = [
            int(d) for d in (self.shapes.numpy() if hasattr(self.shapes, "numpy") else self.shapes)
        ]
        self.matrix = self.shapes = None
        rows = []
        at = 0
        for i, r in enumerate(self.rows):
            shape = tuple(dims[at : at + r.rank])
            at += r.rank
            stats = stats_from_row(fix_row(host[i].tolist()), r.dtype, shape)
            rows.append((r.name, r.role, r.call, stats))
        yield from step_stats(self.step, self.wall_time, run, rank, rows)

"""What the framework adapters share: schedule defaults and checks, name globs, NaN errors.

Framework-free; ``vizdebug.torch`` and ``vizdebug.keras`` import it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from .batch import PackedScalar, StatsBlock
from .errors import VizdebugError
from .stats import COLUMNS
from .ui.safe import safe

__all__ = [
    "DEFAULT_EVERY",
    "DEFAULT_FIRST",
    "WHAT",
    "NonFiniteError",
    "NonFiniteWarning",
    "check_schedule",
    "globs",
    "step_stats",
]

#: Everything an adapter can record.
WHAT = frozenset({"activations", "gradients", "weights", "updates"})
#: Default schedule: every 100th step, and always the first 5. A step that records everything
#: costs 0.3-0.6 of a step more on the benchmark models (the statistics themselves run on a
#: worker thread): every 100th keeps that under 1% (see BENCHMARKS.md).
DEFAULT_EVERY = 100
DEFAULT_FIRST = 5

_L2 = COLUMNS.index("l2")


class NonFiniteError(VizdebugError, FloatingPointError):
    """Raised with ``on_anomaly="raise"`` when a NaN or Inf appeared.

    Attributes:
        finding: Where it appeared first (the adapter's ``Finding``).
    """

    def __init__(self, finding: Any) -> None:
        super().__init__(safe(finding.message))
        self.finding = finding


class NonFiniteWarning(RuntimeWarning):
    """Issued with ``on_anomaly="warn"`` when a NaN or Inf appeared.

    Its text names modules from user code, so it is made terminal-safe (see ``vizdebug.ui.safe``).
    """

    def __init__(self, message: object = "") -> None:
        super().__init__(safe(message))


def globs(value: str | Sequence[str] | None, what: str) -> tuple[str, ...]:
    """Normalize an ``include``/``exclude`` option to a tuple of glob strings.

    Raises:
        TypeError: An entry is not a string.
    """
    if value is None:
        return ()
    items = (value,) if isinstance(value, str) else tuple(value)
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"{what} must be a glob string or a list of them, got {item!r}")
    return items


def check_schedule(
    every: object, first: object, what: Iterable[str] | str | None
) -> frozenset[str]:
    """Validate ``every``, ``first`` and ``what``; returns the chosen ``what``.

    Raises:
        ValueError: A bad value.
    """
    if not isinstance(every, int) or isinstance(every, bool) or every < 1:
        raise ValueError(f"every must be a positive int, got {every!r}")
    if not isinstance(first, int) or isinstance(first, bool) or first < 0:
        raise ValueError(f"first must be a non-negative int, got {first!r}")
    chosen = set(WHAT if what is None else ((what,) if isinstance(what, str) else what))
    if not chosen <= WHAT:
        raise ValueError(f"what: unknown {sorted(chosen - WHAT)}; choose from {sorted(WHAT)}")
    return frozenset(chosen)


def step_stats(
    step: int,
    wall_time: float,
    run: str,
    rank: int,
    rows: Sequence[tuple[str, str, int, str, tuple[int, ...]]],
    matrix: npt.NDArray[np.float64],
) -> list[PackedScalar | StatsBlock]:
    """One step's statistics as a :class:`~vizdebug.batch.StatsBlock`, followed by the
    ``update_ratio/<param>`` scalars they give: |update| / |weight|, pairing each ``update``
    row with the ``weight`` row of the same name (none where that weight's norm is 0, missing or
    not finite). The scalars are packed
    (:data:`~vizdebug.batch.PackedScalar`, as the writer queues them): a tuple is fifty times
    cheaper to build than a :class:`~vizdebug.events.Scalar`, and one per parameter per step
    adds up on a thread that shares the GIL with training.

    Args:
        step, wall_time, run, rank: Of the step.
        rows: ``(name, role, call, dtype, shape)`` per row of ``matrix``.
        matrix: float64, one row per tensor: :data:`~vizdebug.stats.COLUMNS` then counts.
    """
    l2 = matrix[:, _L2].tolist() if len(rows) else []
    weight_l2 = {r[0]: l2[i] for i, r in enumerate(rows) if r[1] == "weight"}
    # No ratio where the weight's norm is 0 (a zero-initialised bias), missing or not finite:
    # vizdebug never manufactures a NaN, an Inf or a misleading 0 itself; the update's own
    # norm stays in its statistics row.
    ratios: list[PackedScalar | StatsBlock] = [
        (f"update_ratio/{name}", l2[i] / w, step, wall_time)
        for i, (name, role, _call, _dtype, _shape) in enumerate(rows)
        if role == "update" and _usable(w := weight_l2.get(name, math.nan))
    ]
    return [StatsBlock(step, wall_time, run, rank, tuple(rows), matrix), *ratios]


def _usable(norm: float) -> bool:
    """Whether a weight norm can divide: finite and not zero."""
    return norm > 0.0 and math.isfinite(norm)

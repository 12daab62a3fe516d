"""What the framework adapters share: schedule defaults and checks, name globs, NaN errors.

Framework-free; ``vizdebug.torch`` and ``vizdebug.keras`` import it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from .errors import VizdebugError
from .events import Event, Scalar, Stats, TensorStats

__all__ = [
    "DEFAULT_EVERY",
    "DEFAULT_FIRST",
    "WHAT",
    "NonFiniteError",
    "NonFiniteWarning",
    "check_schedule",
    "globs",
    "step_stats",
    "update_ratios",
]

#: Everything an adapter can record.
WHAT = frozenset({"activations", "gradients", "weights", "updates"})
#: Default schedule: every 100th step, and always the first 5. A step that records everything
#: costs the training thread 0.4-0.6 of a step more on the benchmark models (the statistics
#: themselves run on a worker thread): every 100th keeps that under 1% (see BENCHMARKS.md).
DEFAULT_EVERY = 100
DEFAULT_FIRST = 5


class NonFiniteError(VizdebugError, FloatingPointError):
    """Raised with ``on_anomaly="raise"`` when a NaN or Inf appeared.

    Attributes:
        finding: Where it appeared first (the adapter's ``Finding``).
    """

    def __init__(self, finding: Any) -> None:
        super().__init__(finding.message)
        self.finding = finding


class NonFiniteWarning(RuntimeWarning):
    """Issued with ``on_anomaly="warn"`` when a NaN or Inf appeared."""


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


def update_ratios(stats: Iterable[TensorStats]) -> list[Scalar]:
    """``update_ratio/<param>`` scalars: |update| / |weight| from one step's statistics.

    Pairs each ``update`` row with the ``weight`` row of the same name (NaN without one).
    """
    weight_l2: dict[str, float] = {}
    updates: list[TensorStats] = []
    for e in stats:
        if e.role == "weight":
            weight_l2[e.name] = e.stats.l2
        elif e.role == "update":
            updates.append(e)
    out = []
    for u in updates:
        w = weight_l2.get(u.name, math.nan)
        out.append(
            Scalar(
                step=u.step,
                wall_time=u.wall_time,
                run=u.run,
                rank=u.rank,
                tag=f"update_ratio/{u.name}",
                value=u.stats.l2 / w if w else math.nan,
            )
        )
    return out


def step_stats(
    step: int,
    wall_time: float,
    run: str,
    rank: int,
    rows: Iterable[tuple[str, str, int, Stats]],
) -> list[Event]:
    """One step's ``TensorStats`` events from ``(name, role, call, stats)`` rows, followed by
    the ``update_ratio/*`` scalars they give (see :func:`update_ratios`)."""
    events = [
        TensorStats(
            step=step,
            wall_time=wall_time,
            run=run,
            rank=rank,
            name=name,
            role=role,
            call=call,
            stats=stats,
        )
        for name, role, call, stats in rows
    ]
    return [*events, *update_ratios(events)]

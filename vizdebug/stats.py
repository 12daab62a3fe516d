"""The statistics contract and its numpy reference implementation.

Adapters compute the same numbers on the tensor's device (see ``vizdebug.torch``) and are tested
against :func:`reference_stats`. The packed row layout (:data:`COLUMNS`) is how a batch of
statistics travels from an adapter to the writer and how it is stored on disk: one float64 row
per tensor, ``len(COLUMNS)`` fixed columns followed by the histogram counts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from .events import Stats

__all__ = [
    "COLUMNS",
    "HIST_BINS",
    "HIST_SAMPLE",
    "histogram_range",
    "reference_stats",
    "scale_counts",
    "stats_from_row",
]

#: Default number of histogram bins.
HIST_BINS = 32

#: Above this many elements the adapters' fast paths bin a fixed random sample of this size.
HIST_SAMPLE = 1 << 15

#: Fixed columns of a packed statistics row; the histogram counts follow them.
COLUMNS: tuple[str, ...] = (
    "numel",
    "nan",
    "posinf",
    "neginf",
    "zeros",
    "min",
    "max",
    "mean",
    "std",
    "l2",
    "hist_lo",
    "hist_hi",
)


def histogram_range(lo: float, hi: float) -> tuple[float, float]:
    """The histogram range for finite values spanning ``[lo, hi]``.

    A degenerate range (all finite values equal) is widened by 0.5 on each side, as
    ``numpy.histogram`` does; no finite value gives ``(0, 0)`` and an all-zero histogram.
    """
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return 0.0, 0.0
    if lo == hi:
        return lo - 0.5, hi + 0.5
    return lo, hi


def reference_stats(
    array: npt.ArrayLike, *, bins: int = HIST_BINS, dtype: str | None = None
) -> Stats:
    """Compute the statistics of a tensor with numpy, in float64.

    Args:
        array: Anything ``numpy.asarray`` accepts; floating, integer or bool values.
        bins: Number of histogram bins (at least 1).
        dtype: Name to record as the dtype (defaults to the array's dtype name); adapters pass
            the framework's dtype, e.g. ``"bfloat16"``.

    Returns:
        The :class:`~vizdebug.events.Stats` of the array.

    Raises:
        ValueError: If ``bins`` is smaller than 1.
        TypeError: If the array holds complex or non-numeric values.
    """
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    a = np.asarray(array)
    if a.dtype.kind not in "fiub":
        raise TypeError(f"statistics need real numbers, got an array of dtype {a.dtype}")
    name = dtype or a.dtype.name
    x = a.astype(np.float64, copy=False).ravel()
    nan = int(np.isnan(x).sum())
    posinf = int(np.isposinf(x).sum())
    neginf = int(np.isneginf(x).sum())
    zeros = int((x == 0).sum())
    finite = x[np.isfinite(x)]
    if finite.size:
        lo, hi = float(finite.min()), float(finite.max())
        mean = float(finite.mean())
        std = float(finite.std())
        l2 = float(np.sqrt(np.square(finite).sum()))
    else:
        lo = hi = mean = std = math.nan
        l2 = 0.0
    hlo, hhi = histogram_range(lo, hi)
    if finite.size:
        counts, _ = np.histogram(finite, bins=bins, range=(hlo, hhi))
    else:
        counts = np.zeros(bins, dtype=np.int64)
    return Stats(
        numel=int(a.size),
        dtype=name,
        shape=tuple(int(s) for s in a.shape),
        nan=nan,
        posinf=posinf,
        neginf=neginf,
        zeros=zeros,
        min=lo,
        max=hi,
        mean=mean,
        std=std,
        l2=l2,
        hist_lo=hlo,
        hist_hi=hhi,
        hist_counts=tuple(int(c) for c in counts),
    )


def stats_to_row(stats: Stats) -> list[float]:
    """Pack statistics into one row in :data:`COLUMNS` order, histogram counts last."""
    return [
        float(stats.numel),
        float(stats.nan),
        float(stats.posinf),
        float(stats.neginf),
        float(stats.zeros),
        stats.min,
        stats.max,
        stats.mean,
        stats.std,
        stats.l2,
        stats.hist_lo,
        stats.hist_hi,
        *stats.hist_counts,
    ]


def stats_from_row(
    row: Sequence[float],
    dtype: str,
    shape: tuple[int, ...],
    counts: Sequence[int] | None = None,
) -> Stats:
    """Unpack a row made by :func:`stats_to_row` (or by an adapter) into :class:`Stats`.

    Args:
        row: The row (its histogram part may be left out when ``counts`` is given).
        dtype, shape: Of the tensor.
        counts: The histogram counts as integers, when the caller rounded a whole matrix's
            counts at once (numpy, faster than one row at a time).
    """
    n = len(COLUMNS)
    return Stats(
        numel=int(row[0]),
        dtype=dtype,
        shape=shape,
        nan=int(row[1]),
        posinf=int(row[2]),
        neginf=int(row[3]),
        zeros=int(row[4]),
        min=float(row[5]),
        max=float(row[6]),
        mean=float(row[7]),
        std=float(row[8]),
        l2=float(row[9]),
        hist_lo=float(row[10]),
        hist_hi=float(row[11]),
        hist_counts=(
            tuple(int(round(c)) for c in row[n:])  # noqa: RUF046 - numpy scalars
            if counts is None
            else tuple(counts)
        ),
    )


def scale_counts(counts: Sequence[float], total: int) -> list[float]:
    """Counts of a sample scaled to ``total`` elements, as integers summing to ``total``."""
    have = sum(counts)
    exact = [c * total / have for c in counts]
    out = [math.floor(e) for e in exact]
    short = total - sum(out)
    for i in sorted(range(len(out)), key=lambda i: out[i] - exact[i])[:short]:
        out[i] += 1
    return [float(c) for c in out]

"""Statistics rows of host (numpy) arrays, fast: for adapters that copy a step's tensors out.

:func:`host_row` gives the same row as :func:`vizdebug.stats.reference_stats` packed with
:func:`vizdebug.stats.stats_to_row`, in a few passes instead of fifteen: an all-finite array is
summed once in float64 (a NaN or Inf shows in the sum; such an array takes the reference's
masked path), its minimum, maximum, squared norm (BLAS) and non-zeros are one pass each, and the
standard deviation comes from the two sums when they are well conditioned (else a second pass).
Above :data:`vizdebug.stats.HIST_SAMPLE` elements the histogram bins a fixed random sample and
scales the counts to the array's size (:func:`vizdebug.stats.scale_counts`), as the PyTorch
statistics worker does; every other statistic is exact.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from typing import Any

import numpy as np

from .stats import COLUMNS, HIST_BINS, HIST_SAMPLE, reference_stats, scale_counts, stats_to_row

try:
    from . import _rowkernel
except ImportError:  # built without a C compiler: host_row per array
    _rowkernel = None  # type: ignore[assignment]

__all__ = ["host_row", "host_rows", "host_rows_each"]

#: The C kernel's dtype codes (vizdebug/_rowkernel.c).
_KERNEL_CODES = {np.dtype(np.float32): 0, np.dtype(np.float64): 1}

_samples: dict[int, np.ndarray[Any, Any]] = {}


def _sample(n: int) -> np.ndarray[Any, Any]:
    """Sorted positions of a fixed random sample of ``HIST_SAMPLE`` of ``n`` elements."""
    got = _samples.get(n)
    if got is None:
        rng = np.random.default_rng(n)  # private: no user random stream is touched
        got = np.sort(rng.choice(n, HIST_SAMPLE, replace=False))
        if len(_samples) >= 64:
            _samples.clear()
        _samples[n] = got
    return got


def _binned(x: np.ndarray[Any, Any], lo: float, hi: float, bins: int) -> list[float]:
    # x - lo >= 0 as lo is the minimum: only the maximum needs clamping into the last bin
    # (numpy's closed last edge); a value on an inner edge may land in the neighbouring bin
    idx = ((x - x.dtype.type(lo)) * x.dtype.type(bins / (hi - lo))).astype(np.intp)
    np.minimum(idx, bins - 1, out=idx)
    return [float(c) for c in np.bincount(idx, minlength=bins)]


def host_rows(values: np.ndarray[Any, Any], sizes: Sequence[int], *, bins: int = HIST_BINS) -> Any:
    """The rows of consecutive parts of an array, one part per size: a float64 matrix.

    Where the C kernel is built (:mod:`vizdebug._rowkernel`, as for PyTorch's statistics
    worker) and reads the dtype (float32, float64), every row comes from one call of it,
    which runs without the GIL: the numpy passes of :func:`host_row` held it, on the writer
    thread, for most of the time a Keras step recorded everything took. Else
    :func:`host_row` per part.

    Raises:
        ValueError: The sizes add up to more than the array holds.
    """
    x = np.ascontiguousarray(values).reshape(-1)
    if sum(sizes) > x.size or any(n < 0 for n in sizes):
        raise ValueError(f"part sizes {list(sizes)[:8]} do not fit an array of {x.size} values")
    out = np.empty((len(sizes), len(COLUMNS) + bins))
    code = _KERNEL_CODES.get(x.dtype)
    if _rowkernel is None or code is None:
        off = 0
        for i, n in enumerate(sizes):
            out[i] = host_row(x[off : off + n], bins=bins)
            off += n
        return out
    specs = array("q")
    keep = []  # the samples the specs point into
    base, item, off = x.ctypes.data, x.itemsize, 0
    for n in sizes:
        if n > HIST_SAMPLE:
            sample = np.ascontiguousarray(_sample(n), dtype=np.int64)
            keep.append(sample)
            specs.extend((base + off * item, n, code, sample.ctypes.data, HIST_SAMPLE, -1))
        else:
            specs.extend((base + off * item if n else 0, n, code, 0, 0, -1))
        off += n
    _rowkernel.rows(specs, out.ctypes.data, len(sizes), bins)
    return out


def host_rows_each(arrays: Sequence[np.ndarray[Any, Any]], *, bins: int = HIST_BINS) -> Any:
    """The rows of several arrays (any shapes, float32 or float64): a float64 matrix.

    As :func:`host_rows`, one call of the C kernel without the GIL, but each array is read
    where it lies: a step's tensors need not be copied into one vector first (for a recorded
    MobileNetV2 step that copy was half a gigabyte, twice: in the step and to the host).
    """
    parts = [np.ascontiguousarray(a).reshape(-1) for a in arrays]
    out = np.empty((len(parts), len(COLUMNS) + bins))
    if _rowkernel is None or any(p.dtype not in _KERNEL_CODES for p in parts):
        for i, p in enumerate(parts):
            out[i] = host_row(p, bins=bins)
        return out
    specs = array("q")
    keep = []  # the samples the specs point into
    for p in parts:
        n, code = int(p.size), _KERNEL_CODES[p.dtype]
        if n > HIST_SAMPLE:
            sample = np.ascontiguousarray(_sample(n), dtype=np.int64)
            keep.append(sample)
            specs.extend((p.ctypes.data, n, code, sample.ctypes.data, HIST_SAMPLE, -1))
        else:
            specs.extend((p.ctypes.data if n else 0, n, code, 0, 0, -1))
    _rowkernel.rows(specs, out.ctypes.data, len(parts), bins)
    return out


def host_row(a: np.ndarray[Any, Any], *, bins: int = HIST_BINS, dtype: str = "") -> list[float]:
    """The packed statistics row (:data:`vizdebug.stats.COLUMNS` + counts) of an array.

    Args:
        a: Floating-point values, any shape.
        bins: Histogram bins.
        dtype: The dtype to describe (unused in the row; kept for the masked path).
    """
    x = a.reshape(-1)
    n = x.size
    with np.errstate(all="ignore"):  # inf - inf: the NaN is the answer
        total = float(np.add.reduce(x, dtype=np.float64)) if n else math.nan
    if not math.isfinite(total):
        return stats_to_row(reference_stats(a, bins=bins, dtype=dtype or None))
    lo, hi = float(x.min()), float(x.max())
    x64 = x if x.dtype == np.float64 else x.astype(np.float64)
    # einsum's own loop: np.dot would wake BLAS's thread pool, which spins on the cores
    # training needs
    square = float(np.einsum("i,i->", x64, x64))
    mean = total / n
    l2 = math.sqrt(square)
    ms = square / n
    var = ms - mean * mean
    # well conditioned (the mean does not dominate): at most a digit of float64's is lost;
    # else the exact two-pass form
    std = math.sqrt(var) if var > 0.1 * ms else float(np.std(x64))
    zeros = int(np.count_nonzero(x == 0))  # 6x faster than counting the non-zeros
    hlo, hhi = (lo - 0.5, hi + 0.5) if lo == hi else (lo, hi)
    if lo == hi:  # numpy's widened range puts every value in the middle bin
        hist = [0.0] * bins
        hist[bins // 2] = float(n)
    elif n > HIST_SAMPLE:
        hist = scale_counts(_binned(x[_sample(n)], lo, hi, bins), n)
    else:
        hist = _binned(x, lo, hi, bins)
    return [float(n), 0.0, 0.0, 0.0, float(zeros), lo, hi, mean, std, l2, hlo, hhi, *hist]

from __future__ import annotations

import math

import numpy as np
import pytest

from vizdebug.stats import COLUMNS, HIST_BINS, reference_stats, stats_from_row, stats_to_row


def test_basic_values_against_hand_computed() -> None:
    s = reference_stats(np.array([1.0, -2.0, 0.0, 3.0, np.nan, np.inf, -np.inf], np.float32))
    assert (s.numel, s.nan, s.posinf, s.neginf, s.zeros) == (7, 1, 1, 1, 1)
    assert s.dtype == "float32" and s.shape == (7,)
    assert (s.min, s.max) == (-2.0, 3.0)
    assert s.mean == pytest.approx(0.5)
    assert s.std == pytest.approx(np.std([1.0, -2.0, 0.0, 3.0]))
    assert s.l2 == pytest.approx(math.sqrt(14))
    assert sum(s.hist_counts) == 4  # NaN and Inf are counted apart, never in the histogram
    assert (s.hist_lo, s.hist_hi) == (-2.0, 3.0)
    assert s.hist_counts[0] == 1 and s.hist_counts[-1] == 1
    assert s.finite == 4 and s.nonfinite == 3
    assert s.zero_fraction == pytest.approx(1 / 7)


def test_all_nan_and_empty_and_scalar() -> None:
    s = reference_stats(np.full((2, 3), np.nan))
    assert s.nan == 6 and math.isnan(s.mean) and s.l2 == 0.0 and sum(s.hist_counts) == 0
    e = reference_stats(np.zeros((0, 4), np.float16))
    assert e.numel == 0 and e.shape == (0, 4) and math.isnan(e.min) and sum(e.hist_counts) == 0
    assert math.isnan(e.zero_fraction)
    z = reference_stats(np.float64(2.5))
    assert z.shape == () and z.numel == 1 and z.min == z.max == 2.5
    # a degenerate range is widened by 0.5 each side, as numpy.histogram does
    assert (z.hist_lo, z.hist_hi) == (2.0, 3.0) and sum(z.hist_counts) == 1


def test_histogram_matches_numpy_and_bins_option() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=1000)
    s = reference_stats(x, bins=10)
    counts, edges = np.histogram(x, bins=10)
    assert list(s.hist_counts) == counts.tolist()
    assert s.hist_edges() == pytest.approx(edges.tolist())
    assert len(reference_stats(x).hist_counts) == HIST_BINS
    with pytest.raises(ValueError, match="bins"):
        reference_stats(x, bins=0)
    with pytest.raises(TypeError, match="real numbers"):
        reference_stats(np.array([1 + 2j]))


def test_row_roundtrip() -> None:
    s = reference_stats(np.arange(10.0), dtype="bfloat16")
    row = stats_to_row(s)
    assert len(row) == len(COLUMNS) + HIST_BINS
    assert stats_from_row(row, s.dtype, s.shape) == s

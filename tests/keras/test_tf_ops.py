"""Statistics as TF ops (eager and inside tf.function) against the numpy reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from vizdebug.stats import HIST_BINS, reference_stats, stats_from_row
from vizdebug.tf.deferred import Row, StatsItem, fix_row
from vizdebug.tf.ops import finite_flags, skip_reason, stats_matrix, stats_row

RNG = np.random.default_rng(0)


def check(arr: np.ndarray, dtype: tf.DType = tf.float32, graph: bool = False) -> None:
    t = tf.constant(arr, dtype)
    fn = tf.function(stats_row) if graph else stats_row
    row = fix_row(fn(t).numpy().tolist())
    got = stats_from_row(row, dtype.name, tuple(arr.shape))
    ref = reference_stats(t.numpy().astype(np.float64), dtype=dtype.name)
    for f in ("numel", "nan", "posinf", "neginf", "zeros", "shape"):
        assert getattr(got, f) == getattr(ref, f), f
    for f in ("min", "max", "mean", "std", "l2", "hist_lo", "hist_hi"):
        a, b = getattr(got, f), getattr(ref, f)
        assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=2e-4, abs=1e-5), f
    diff = np.abs(np.array(got.hist_counts) - np.array(ref.hist_counts)).sum()
    assert diff <= 2 and sum(got.hist_counts) == ref.finite, (got.hist_counts, ref.hist_counts)


@pytest.mark.parametrize("dtype", [tf.float32, tf.float16, tf.bfloat16, tf.float64])
@pytest.mark.parametrize("graph", [False, True])
def test_random_tensors_match_reference(dtype: tf.DType, graph: bool) -> None:
    x = RNG.standard_normal((3, 70, 11)) * 3 + 1
    x[0, ::5] = 0
    check(x, dtype, graph)


@pytest.mark.parametrize("graph", [False, True])
def test_nan_and_inf_are_counted_and_kept_out_of_the_histogram(graph: bool) -> None:
    x = RNG.standard_normal(500)
    x[[3, 10]] = np.nan
    x[5], x[8] = np.inf, -np.inf
    check(x, graph=graph)


def test_edge_cases() -> None:
    check(np.array(2.5))
    check(np.ones(7))
    check(np.zeros((0, 3)))
    check(np.full(9, np.nan))
    check(np.array([np.inf, -np.inf]))
    # a huge degenerate tensor (numpy's histogram gives up on it): all in the middle bin
    huge = stats_from_row(fix_row(stats_row(tf.fill([4], 3e38)).numpy().tolist()), "f", (4,))
    assert huge.hist_counts[HIST_BINS // 2] == 4 and huge.min == huge.max == pytest.approx(3e38)


def test_matrix_flags_and_deferred_item() -> None:
    a, b = tf.constant([[1.0, 2.0]]), tf.constant([np.nan, 1.0])
    assert stats_matrix([a, b]).shape == (2, 12 + HIST_BINS)
    flags = finite_flags([a, b]).numpy()
    assert np.isfinite(flags[0]) and not np.isfinite(flags[1])
    rows = [Row("w", "weight", 0, "float32", 2), Row("w", "update", 0, "float32", 1)]
    item = StatsItem(7, 1.0, rows, stats_matrix([a, b]), tf.constant([1, 2, 2]))
    events = list(item.resolve("run", 0))
    assert [e.stats.shape for e in events[:2]] == [(1, 2), (2,)]
    assert events[2].tag == "update_ratio/w" and events[2].value == pytest.approx(1 / math.sqrt(5))


def test_skip_reason() -> None:
    assert skip_reason(tf.constant([1, 2])) == "int32 tensor (not floating point)"
    assert skip_reason(tf.constant([1j])) == "complex128 tensor (complex)"
    assert skip_reason("x") == "not a tensor (str)"
    assert skip_reason(tf.constant([1.0])) is None

"""The TF ops of the training step (finiteness, packing) and the host statistics they feed."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from vizdebug import hoststats
from vizdebug.batch import EventBatch
from vizdebug.hoststats import host_row, host_rows, host_rows_each
from vizdebug.stats import HIST_BINS, HIST_SAMPLE, reference_stats, stats_from_row
from vizdebug.tf.deferred import Row, host_view, stats_items
from vizdebug.tf.ops import finite_flags, pack, skip_reason

RNG = np.random.default_rng(0)


def check(arr: np.ndarray, dtype: tf.DType = tf.float32) -> None:
    """host_row and host_rows (the C kernel) of the values as the step packs them vs numpy's
    reference."""
    t = tf.constant(arr, dtype)
    flat, _ = pack([t], wide=dtype == tf.float64)
    values = flat.numpy().reshape(arr.shape)
    assert hoststats._rowkernel is not None  # the package builds it (setup.py)
    by_kernel = host_rows(flat.numpy(), [values.size])[0].tolist()
    for row in (host_row(values), by_kernel):
        _compare(stats_from_row(row, dtype.name, tuple(arr.shape)), t, dtype)


def _compare(got: object, t: tf.Tensor, dtype: tf.DType) -> None:
    ref = reference_stats(t.numpy().astype(np.float64), dtype=dtype.name)
    for f in ("numel", "nan", "posinf", "neginf", "zeros", "shape"):
        assert getattr(got, f) == getattr(ref, f), f
    for f in ("min", "max", "mean", "std", "l2", "hist_lo", "hist_hi"):
        a, b = getattr(got, f), getattr(ref, f)
        assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=2e-4, abs=1e-5), f
    diff = np.abs(np.array(got.hist_counts) - np.array(ref.hist_counts)).sum()
    assert sum(got.hist_counts) == ref.finite
    if ref.finite > HIST_SAMPLE:  # a sampled histogram: within a few per cent
        assert diff / (2 * ref.finite) <= 0.03, (got.hist_counts, ref.hist_counts)
    else:
        assert diff <= 2, (got.hist_counts, ref.hist_counts)


@pytest.mark.parametrize("dtype", [tf.float32, tf.float16, tf.bfloat16, tf.float64])
def test_random_tensors_match_reference(dtype: tf.DType) -> None:
    x = RNG.standard_normal((3, 70, 11)) * 3 + 1
    x[0, ::5] = 0
    check(x, dtype)


def test_large_tensors_sample_the_histogram_only() -> None:
    x = np.maximum(RNG.standard_normal((64, 32, 40)), 0)  # a ReLU's output: half zeros
    check(x)
    check(RNG.standard_normal(100_000) + 1e4, tf.float64)  # mean-dominated: two-pass std


def test_nan_and_inf_are_counted_and_kept_out_of_the_histogram() -> None:
    x = RNG.standard_normal(500)
    x[[3, 10]] = np.nan
    x[5], x[8] = np.inf, -np.inf
    check(x)


def test_edge_cases() -> None:
    check(np.array(2.5))
    check(np.ones(7))
    check(np.zeros((0, 3)))
    check(np.full(9, np.nan))
    check(np.array([np.inf, -np.inf]))
    # a huge degenerate tensor: every value in the middle bin, as numpy does
    huge = stats_from_row(host_row(np.full(4, 3e38, np.float32)), "f", (4,))
    assert huge.hist_counts[HIST_BINS // 2] == 4 and huge.min == huge.max == pytest.approx(3e38)


def test_flags_pack_and_deferred_item() -> None:
    a, b = tf.constant([[1.0, 2.0]]), tf.constant([np.nan, 1.0])
    flags = finite_flags([a, b]).numpy()
    assert np.isfinite(flags[0]) and not np.isfinite(flags[1])
    values, shapes = pack([a, b])
    assert values.dtype == tf.float32 and shapes.numpy().tolist() == [1, 2, 2]
    rows = [Row("w", "weight", 0, "float32", 2), Row("w", "update", 0, "float32", 1)]
    (item,) = stats_items(7, 1.0, rows, values, shapes)
    events = list(EventBatch(list(item.resolve("run", 0)), "run", 0))  # the block unpacked
    assert [e.stats.shape for e in events[:2]] == [(1, 2), (2,)]
    assert events[1].stats.nan == 1 and events[1].stats.max == 1.0
    assert events[2].tag == "update_ratio/w" and events[2].value == pytest.approx(1 / math.sqrt(5))


def test_a_step_is_cut_into_bounded_chunks_that_keep_every_row() -> None:
    tensors = [tf.fill([300], float(i)) for i in range(5)] + [tf.ones([2000])]
    values, shapes = pack(tensors)
    rows = [Row(f"l{i}", "output", 0, "float32", 1) for i in range(4)]
    rows += [Row("w", "weight", 0, "float32", 1), Row("w", "update", 0, "float32", 1)]
    items = stats_items(3, 1.0, rows, values, shapes, chunk_bytes=2500, wait_for_room=None)
    # 1200 bytes a row: two rows a chunk; the weight keeps its (oversized) update
    assert [len(i.meta) for i in items] == [2, 2, 2]
    assert all(i.nbytes <= 2500 + 256 for i in items[:2]) and items[2].wait_for_room is None
    events = [e for i in items for e in EventBatch(list(i.resolve("run", 0)), "run", 0)]
    stats = [e for e in events if hasattr(e, "stats")]
    assert [e.name for e in stats] == ["l0", "l1", "l2", "l3", "w", "w"]
    assert [e.stats.mean for e in stats[:5]] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert any(getattr(e, "tag", "") == "update_ratio/w" for e in events)
    assert list(items[0].resolve("run", 0)) == []  # resolved once


def test_skip_reason() -> None:
    assert skip_reason(tf.constant([1, 2])) == "int32 tensor (not floating point)"
    assert skip_reason(tf.constant([1j])) == "complex128 tensor (complex)"
    assert skip_reason("x") == "not a tensor (str)"
    assert skip_reason(tf.constant([1.0])) is None


def test_parts_of_one_vector_in_one_kernel_call_match_the_numpy_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parts = [RNG.standard_normal(n).astype(np.float32) for n in (0, 1, 9, HIST_SAMPLE + 5, 300)]
    parts[2][4] = np.nan
    values = np.concatenate(parts)
    sizes = [p.size for p in parts]
    kernel = host_rows(values, sizes)
    monkeypatch.setattr(hoststats, "_rowkernel", None)
    numpy_rows = host_rows(values, sizes)
    assert kernel.shape == numpy_rows.shape == (5, len(kernel[0]))
    heads = slice(0, 12)
    np.testing.assert_allclose(kernel[:, heads], numpy_rows[:, heads], rtol=2e-6, equal_nan=True)
    # histograms: exact below the sample size (up to a value on a bin edge), sampled above
    assert np.abs(kernel[[1, 2, 4], 12:] - numpy_rows[[1, 2, 4], 12:]).sum() <= 2
    assert kernel[3, 12:].sum() == pytest.approx(HIST_SAMPLE + 5)
    with pytest.raises(ValueError, match="do not fit"):
        host_rows(values, [values.size + 1])


def test_a_list_of_tensors_is_read_where_it_lies_and_matches_the_packed_path() -> None:
    """The record pass's tensors go to the writer as they are: each chunk holds its own rows'
    tensors, the writer thread reads a zero-copy view of each, and the rows equal those of
    the same tensors packed in one vector."""
    tensors = [tf.fill([300], float(i)) for i in range(4)]
    tensors += [tf.constant([[np.nan, 1.0], [2.0, np.inf]]), tf.constant(RNG.random(40_000))]
    assert tensors[5].dtype == tf.float64
    view = host_view(tensors[0])
    assert not view.flags.owndata and np.shares_memory(view, host_view(tensors[0]))
    rows = [Row(f"l{i}", "output", 0, "float32", 1) for i in range(4)]
    rows += [Row("w", "weight", 0, "float32", 2), Row("w", "update", 0, "float64", 1)]
    items = stats_items(3, 1.0, rows, tensors, None, chunk_bytes=2500, wait_for_room=None)
    # 1200 bytes a row: two rows a chunk (the 16-byte weight fits in the second); the weight
    # keeps its (oversized) update
    assert [len(i.meta) for i in items] == [2, 4]
    assert items[0].nbytes == 2400 + 256 and items[1].nbytes == 2400 + 16 + 320_000 + 256
    events = [e for i in items for e in EventBatch(list(i.resolve("run", 0)), "run", 0)]
    stats = {(e.name, e.role): e.stats for e in events if hasattr(e, "stats")}
    assert [stats[(f"l{i}", "output")].mean for i in range(4)] == [0.0, 1.0, 2.0, 3.0]
    assert stats[("w", "weight")].nan == 1 and stats[("w", "weight")].posinf == 1
    assert stats[("w", "weight")].shape == (2, 2) and stats[("w", "update")].shape == (40_000,)
    assert list(items[0].resolve("run", 0)) == []  # resolved once, its tensors let go
    assert items[0].source is None
    # the same rows as the packed path
    each = host_rows_each([host_view(t) for t in tensors])
    flat = np.concatenate([t.numpy().astype(np.float64).reshape(-1) for t in tensors])
    packed = host_rows(flat, [int(np.prod(t.shape)) for t in tensors])
    np.testing.assert_allclose(each[:, :12], packed[:, :12], rtol=1e-6, equal_nan=True)
    with pytest.raises(ValueError, match="6 rows but 5 tensors"):
        stats_items(3, 1.0, rows, tensors[:5], None)

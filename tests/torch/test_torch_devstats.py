"""On-device statistics against the numpy reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vizdebug.batch import EventBatch
from vizdebug.stats import COLUMNS, HIST_BINS, reference_stats, stats_from_row
from vizdebug.torch.cpubatch import CpuBatch, rows_of
from vizdebug.torch.devstats import HIST_SAMPLE, cpu_row, dtype_name, skip_reason, stats_row
from vizdebug.torch.worker import Entry, StatsBatch, StatsWorker


def _close(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return math.isclose(a, b, rel_tol=2e-4, abs_tol=1e-5)


def row_of(t: torch.Tensor, finite: bool | str | None) -> torch.Tensor:
    """finite="cpu": the host-assisted path (cpu_row); "batch": the worker's batched path (the
    C kernel); "script": the same by TorchScript (a machine without a C compiler)."""
    if finite == "cpu":
        return torch.tensor(cpu_row(t), dtype=torch.float64)
    if finite in ("batch", "script"):
        pad = torch.ones(3)  # not alone in its batch: rows must not mix
        return CpuBatch(native=finite == "batch").rows([pad, t, pad * 2], HIST_BINS)[1]
    return stats_row(t, finite=finite)


def check(t: torch.Tensor, finite: bool | str | None) -> None:
    row = row_of(t, finite)
    assert row.dtype == torch.float64
    assert row.shape == (len(COLUMNS) + HIST_BINS,)
    got = stats_from_row(row.tolist(), dtype_name(t), tuple(t.shape))
    arr = t.float().numpy() if t.dtype == torch.bfloat16 else t.numpy()
    ref = reference_stats(arr, dtype=dtype_name(t))
    for f in ("numel", "nan", "posinf", "neginf", "zeros", "shape", "dtype"):
        assert getattr(got, f) == getattr(ref, f), f
    for f in ("min", "max", "mean", "std", "l2", "hist_lo", "hist_hi"):
        assert _close(getattr(got, f), getattr(ref, f)), (f, getattr(got, f), getattr(ref, f))
    diff = np.abs(np.array(got.hist_counts) - np.array(ref.hist_counts)).sum()
    if finite in ("cpu", "batch", "script") and t.numel() > HIST_SAMPLE and ref.finite == t.numel():
        # a sampled histogram: the distributions differ by a few per cent at most
        assert diff / (2 * ref.finite) <= 0.03, (got.hist_counts, ref.hist_counts)
    else:
        # float32 binning may move a value sitting on a bin edge to its neighbour
        assert diff <= 2, (got.hist_counts, ref.hist_counts)
    assert sum(got.hist_counts) == ref.finite


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("finite", [True, None, "cpu", "batch", "script"])
def test_random_tensors_match_reference(dtype: torch.dtype, finite: bool | str | None) -> None:
    x = (torch.randn(3, 70, 11) * 3 + 1).to(dtype)
    x[0, ::5] = 0
    check(x, finite)


@pytest.mark.parametrize("finite", [True, "cpu", "batch", "script"])
def test_large_offset_std_is_stable(finite: bool | str) -> None:
    check(torch.randn(10_000, dtype=torch.float64) + 1e4, finite)


@pytest.mark.parametrize("path", ["cpu", "batch", "script"])
@pytest.mark.parametrize("shape", [(50_000,), (64, 32, 8, 8), (3, 1000, 700)])
def test_cpu_row_large_tensors_and_nonfinite(shape: tuple[int, ...], path: str) -> None:
    x = torch.randn(shape)
    check(x, path)
    x.view(-1)[7] = math.nan
    x.view(-1)[9] = -math.inf
    check(x, path)


@pytest.mark.parametrize("path", ["cpu", "batch", "script"])
def test_sampled_histogram_keeps_its_total_and_shape(path: str) -> None:
    x = torch.cat([torch.zeros(150_000), torch.rand(50_000) + 1.0])  # a spike and a plateau
    got = stats_from_row(row_of(x, path).tolist(), "float32", (x.numel(),))
    ref = reference_stats(x.numpy())
    assert sum(got.hist_counts) == x.numel()
    assert got.zeros == ref.zeros == 150_000  # the statistics themselves stay exact
    assert abs(got.hist_counts[0] - ref.hist_counts[0]) <= 0.02 * ref.hist_counts[0]


@pytest.mark.parametrize("finite", [True, None, "cpu", "batch", "script"])
def test_zero_dim_and_degenerate(finite: bool | str | None) -> None:
    check(torch.tensor(2.5), finite)
    check(torch.ones(7), finite)
    row = stats_from_row(row_of(torch.ones(7), finite).tolist(), "float32", (7,))
    assert (row.hist_lo, row.hist_hi) == (0.5, 1.5)


def test_empty() -> None:
    check(torch.empty(0, 3), None)
    check(torch.empty(0, 3), "cpu")
    check(torch.empty(0, 3), "batch")
    check(torch.empty(0, 3), "script")
    check(torch.empty(0, dtype=torch.float16), True)


@pytest.mark.parametrize("path", [None, "batch", "script"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_nan_and_inf_are_counted_and_kept_out_of_the_histogram(
    dtype: torch.dtype, path: str | None
) -> None:
    x = torch.randn(500).to(dtype)
    x[3] = math.nan
    x[10] = math.nan
    x[5] = math.inf
    x[8] = -math.inf
    check(x, path)


@pytest.mark.parametrize("path", [None, "batch", "script"])
def test_all_nonfinite(path: str | None) -> None:
    check(torch.full((9,), math.nan), path)
    check(torch.tensor([math.inf, -math.inf]), path)


def test_batched_rows_fall_back_for_wide_histograms() -> None:
    x = torch.randn(2000)
    row = rows_of([x], 300)[0]  # 256 bins or more: the general path
    got = stats_from_row(row.tolist(), "float32", (2000,))
    ref = reference_stats(x.numpy(), bins=300)
    assert got.hist_counts == ref.hist_counts and _close(got.std, ref.std)


def test_fast_path_is_only_for_finite_input() -> None:
    # The general path must differ from the (wrong) fast path on non-finite data.
    x = torch.tensor([1.0, math.nan, 2.0])
    assert math.isnan(stats_row(x, finite=True)[5].item())
    assert stats_row(x, finite=None)[5].item() == 1.0


def test_skip_reasons() -> None:
    assert skip_reason(torch.ones(2)) is None
    assert "int64" in (skip_reason(torch.ones(2, dtype=torch.int64)) or "")
    assert "bool" in (skip_reason(torch.ones(2, dtype=torch.bool)) or "")
    assert "complex" in (skip_reason(torch.ones(2, dtype=torch.complex64)) or "")
    assert "sparse" in (skip_reason(torch.eye(3).to_sparse()) or "")
    assert "meta" in (skip_reason(torch.empty(2, device="meta")) or "")
    assert "not a tensor" in (skip_reason(3) or "")


def test_worker_rows_match_reference_and_detect_inplace_changes() -> None:
    worker = StatsWorker()
    good = torch.randn(100)
    good[1] = math.nan
    changed = torch.randn(100)
    e1 = Entry("a", "output", 0, "float32", (100,), good, good._version)
    e2 = Entry("b", "output", 0, "float32", (100,), changed, changed._version - 1)
    worker.submit(e1)
    worker.submit(e2)
    batch = StatsBatch(3, 1.0, [e1, e2])
    worker.end_step(batch)
    events = list(EventBatch(list(batch.resolve("run", 0)), "run", 0))  # blocks unpacked
    worker.close()
    stats = [e for e in events if type(e).__name__ == "TensorStats"]
    notes = [e for e in events if type(e).__name__ == "Note"]
    assert [s.name for s in stats] == ["a"]
    ref = reference_stats(good.numpy())
    assert stats[0].stats.nan == 1 and _close(stats[0].stats.std, ref.std)
    assert stats[0].stats.hist_counts == ref.hist_counts
    assert len(notes) == 1 and "in place" in notes[0].text


@pytest.mark.parametrize("finite", [True, None, "cpu", "batch", "script"])
def test_values_on_bin_edges_bin_as_numpy(finite: bool | str | None) -> None:
    # digits pixels are k/16: with lo=0, hi=1 and 32 bins every value sits on a bin edge
    x = torch.randint(0, 17, (64, 64)).float() / 16
    x[0, 0], x[0, 1] = 0.0, 1.0
    row = row_of(x, finite).tolist()
    got = stats_from_row(row, "float32", (64, 64))
    assert list(got.hist_counts) == list(reference_stats(x.numpy()).hist_counts)


def test_eager_fallback_computes_the_scripted_rows() -> None:
    # a torch without TorchScript runs the same function eagerly (holding the GIL)
    from vizdebug.torch import cpubatch

    ts = [torch.randn(50_000), torch.randn(7, 3).relu(), torch.zeros(0), torch.randn(300).half()]
    batch = cpubatch.CpuBatch(native=False)
    scripted = batch.rows(ts, HIST_BINS)
    samples = [batch._sample(t.numel()) for t in ts]
    with torch.no_grad():
        eager = cpubatch._rows(ts, samples, HIST_BINS, batch._buf32, batch._buf64, batch._idx)
    assert torch.allclose(scripted, eager, rtol=1e-6, equal_nan=True)  # sums may differ in ulps
    assert torch.equal(scripted[:, len(COLUMNS) :], eager[:, len(COLUMNS) :])


@pytest.mark.parametrize("n", [100, 5000, 20_000, 70_000, 300_000])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
@pytest.mark.parametrize("path", ["batch", "script"])
def test_zero_counts_of_relu_outputs_at_every_size(n: int, dtype: torch.dtype, path: str) -> None:
    # half the values exactly zero, as after a ReLU; sizes cross the small-tensor, the
    # aminmax/amin+amax and the sampling thresholds of the batched path
    check(torch.randn(n).relu().to(dtype), path)


def test_views_of_one_storage_get_their_own_correct_rows() -> None:
    x = torch.randn(64, 300).relu()
    views = [x, x.view(-1), x.t(), x[:, :7], x[1:], x.view(300, 64)]
    rows = rows_of([*views, x.clone()], HIST_BINS)
    for view, row in zip([*views, x], rows, strict=True):
        single = rows_of([view.contiguous()], HIST_BINS)[0]
        assert torch.allclose(row[: len(COLUMNS)], single[: len(COLUMNS)], equal_nan=True)
        assert row[len(COLUMNS) :].sum() == view.numel()
    # a container's output is its last child's: the same row, computed once
    assert torch.equal(rows[0], rows[1]) and torch.equal(rows[0], rows[-1])


def test_batched_rows_compile_to_torchscript() -> None:
    # _compile falls back to eager code quietly (for a torch without TorchScript); here, with
    # TorchScript present, an edit the compiler rejects must fail loudly: eagerly, the worker
    # would hold the GIL through every statistic and slow the training thread
    from vizdebug.torch import cpubatch

    assert isinstance(cpubatch.CpuBatch.script(), torch.jit.ScriptFunction)


def test_the_c_kernel_is_built() -> None:
    # the package builds it wherever a C compiler is at hand (setup.py); without it the worker
    # falls back to TorchScript quietly, so a broken build must fail here
    from vizdebug.torch import cpubatch

    assert cpubatch._rowkernel is not None


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("n", [1, 7, 8, 9, 4097, HIST_SAMPLE])
def test_kernel_rows_match_numpy_at_every_lane_remainder(dtype: torch.dtype, n: int) -> None:
    # eight values a vector: sizes around it and the sampling threshold; unsampled, the kernel
    # bins in float64 as numpy.histogram does (a value within an ulp of an edge may differ)
    gen = torch.Generator().manual_seed(n)
    x = (torch.randn(n, dtype=torch.float64, generator=gen) * 2 - 0.3).to(dtype)
    if n > 8:
        x[::7] = 0
    row = CpuBatch().rows([x], HIST_BINS)[0]
    got = stats_from_row(row.tolist(), dtype_name(x), (n,))
    ref = reference_stats(x.double().numpy(), dtype=dtype_name(x))
    assert np.abs(np.subtract(got.hist_counts, ref.hist_counts)).sum() <= 2
    assert got.zeros == ref.zeros and sum(got.hist_counts) == n
    for f in ("min", "max", "mean", "std", "l2"):
        assert _close(getattr(got, f), getattr(ref, f)), f


def test_kernel_handles_subnormal_halves_and_odd_bins() -> None:
    x = torch.tensor([6e-8, -6e-8, 3e-5, 65504.0, -65504.0, 0.0], dtype=torch.float16)
    for bins in (1, 3, 300):
        row = CpuBatch().rows([x], bins)[0]
        got = stats_from_row(row.tolist(), "float16", (6,))
        ref = reference_stats(x.numpy(), bins=bins, dtype="float16")
        assert got.hist_counts == ref.hist_counts
        assert got.min == ref.min and got.max == ref.max and _close(got.mean, ref.mean)


def test_kernel_rejects_bad_specs_with_a_value_error() -> None:
    from array import array

    from vizdebug.torch import cpubatch

    kernel = cpubatch._rowkernel
    assert kernel is not None
    out = torch.empty(1, len(COLUMNS) + 4, dtype=torch.float64)
    x = torch.ones(3)
    with pytest.raises(ValueError, match="dtype code"):
        kernel.rows(array("q", [x.data_ptr(), 3, 9, 0, 0, -1]), out.data_ptr(), 1, 4)
    with pytest.raises(ValueError, match="six int64"):
        kernel.rows(array("q", [x.data_ptr(), 3, 0, 0, -1]), out.data_ptr(), 1, 4)
    with pytest.raises(ValueError, match="bins"):
        kernel.rows(array("q", [x.data_ptr(), 3, 0, 0, 0, -1]), out.data_ptr(), 1, 0)
    with pytest.raises(ValueError, match="address"):
        kernel.rows(array("q", [0, 3, 0, 0, 0, -1]), out.data_ptr(), 1, 4)
    with pytest.raises(ValueError, match="earlier tensor"):
        kernel.rows(array("q", [x.data_ptr(), 3, 0, 0, 0, 0]), out.data_ptr(), 1, 4)


def test_kernel_and_script_agree_on_a_mixed_batch() -> None:
    ts = [
        torch.randn(70_000).relu(),
        torch.randn(33, 5).t(),  # not contiguous
        torch.randn(300, dtype=torch.float64) + 1e4,
        torch.randn(40).bfloat16(),
        torch.zeros(0),
        torch.tensor(3.0),
    ]
    batch = CpuBatch()
    native = batch.rows(ts, HIST_BINS)
    again = batch.rows(ts, HIST_BINS)  # with the samples cached
    torch.testing.assert_close(again, native, rtol=0, atol=0, equal_nan=True)
    scripted = CpuBatch(native=False).rows(ts, HIST_BINS)
    heads = len(COLUMNS)
    assert torch.allclose(native[:, :heads], scripted[:, :heads], rtol=1e-5, equal_nan=True)
    assert torch.equal(native[:, heads:].sum(1), scripted[:, heads:].sum(1))
    assert (native[:, heads:] - scripted[:, heads:]).abs().sum(1).max() <= 4


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_parts_of_a_flat_tensor_get_the_rows_of_their_views(
    native: bool, dtype: torch.dtype
) -> None:
    # a flat copy of parameters (vizdebug.torch.flat) is read part by part: the same rows as
    # its views, among other tensors, also with a part over the sampling threshold and an
    # empty one; the layout's specs are worked out once and reused
    from vizdebug.torch.cpubatch import CpuBatch

    sizes = [12, 0, 50_000, 7, 1]
    flat = torch.randn(sum(sizes)).to(dtype)
    flat[20] = float("nan")  # a part holding NaN takes the kernel's exact path
    other = torch.randn(33, 3).relu()
    batch = CpuBatch(native=native)
    head = [12, 0, 7]
    for _ in range(2):
        got = batch.rows([other, (flat, sizes), other.t(), (flat[:19], head)], HIST_BINS)
        views = [other, *torch.split(flat, sizes), other.t(), *torch.split(flat[:19], head)]
        want = CpuBatch(native=native).rows(views, HIST_BINS)
        assert torch.equal(got.isnan(), want.isnan())
        assert torch.allclose(got, want, equal_nan=True)

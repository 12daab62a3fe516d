"""The sentinel's finiteness checks: the C kernel's scan, the device fallback, and both paths
through a whole watch."""

from __future__ import annotations

from array import array
from pathlib import Path

import pytest
import torch
from torch import nn

import vizdebug
from vizdebug.runs import load_run
from vizdebug.torch import finite

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
BAD = [float("nan"), float("inf"), -float("inf")]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 15, 16, 17, 4097, 40_000])
def test_the_kernel_finds_a_nonfinite_value_at_every_position_class(
    dtype: torch.dtype, n: int
) -> None:
    # lane remainders, block boundaries (16 KB) and the largest finite values of each dtype
    big = torch.finfo(dtype).max
    base = torch.linspace(-1, 1, n, dtype=torch.float64).to(dtype)
    base[0] = big
    base[-1] = -big
    assert finite.finite_flag(base) is True
    for pos in {0, n // 2, n - 1}:
        for value in BAD:
            t = base.clone()
            t[pos] = value
            assert finite.finite_flag(t) is False, (pos, value)


def test_scan_names_the_first_tensor_and_leaves_what_it_cannot_read() -> None:
    ok = torch.ones(5)
    bad = torch.ones(5, dtype=torch.float64)
    bad[3] = float("nan")
    strided = torch.ones(4, 4).t()  # not contiguous: a device reduction instead
    found, rest = finite.scan([ok, strided, torch.ones(0)])
    assert (found, rest) == (False, [strided])
    found, rest = finite.scan([ok, bad])
    assert found and rest == []
    spec = array("q", [ok.data_ptr(), 5, 0, bad.data_ptr(), 5, 1])
    assert finite._rowkernel is not None
    assert finite._rowkernel.nonfinite(spec, 2) == 1


def test_the_kernel_rejects_bad_specs() -> None:
    kernel = finite._rowkernel
    assert kernel is not None
    with pytest.raises(ValueError, match="three int64"):
        kernel.nonfinite(array("q", [0, 0]), 1)
    with pytest.raises(ValueError, match="dtype code"):
        kernel.nonfinite(array("q", [1, 1, 9]), 1)
    with pytest.raises(ValueError, match="address"):
        kernel.nonfinite(array("q", [0, 4, 0]), 1)


def test_tensors_the_kernel_cannot_read_get_a_device_flag() -> None:
    strided = torch.ones(3, 3).t()
    flag = finite.finite_flag(strided)
    assert isinstance(flag, torch.Tensor) and flag.dim() == 0
    strided[0, 1] = float("inf")
    assert finite.is_ok(finite.finite_flag(strided)) is False
    half = torch.full((4,), 60000.0, dtype=torch.float16).as_strided((2,), (2,))
    assert finite.is_ok(finite.finite_flag(half))  # summed in float32: no overflow


class SqrtAbs(nn.Module):
    """Finite forward; a NaN gradient where its input is exactly 0 (inf times sign(0))."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(x.abs())


@pytest.mark.parametrize("kernel", ["c", "device"])
@pytest.mark.parametrize("every", [1, 100])
def test_both_checks_trace_the_same_backward_anomaly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kernel: str, every: int
) -> None:
    # every=100: steps 5.. record nothing, their check reads the parameter gradients and a
    # flagged step is replayed; every=1: the output gradients' flags of a hooked step
    if kernel == "device":
        monkeypatch.setattr(finite, "_rowkernel", None)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 3), SqrtAbs(), nn.Linear(3, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.rand(2, 3)
    with vizdebug.watch(model, opt, logdir=tmp_path, on_anomaly="log", every=every, first=1):
        for step in range(4):
            if step == 2:
                with torch.no_grad():
                    model[0].weight.zero_()
                    model[0].bias.zero_()  # sqrt at exactly 0
            opt.zero_grad()
            model(x).sum().backward()
            opt.step()
    first = load_run(tmp_path).anomalies[0]
    assert (first.step, first.module, first.phase, first.role) == (2, "1", "backward", "grad_input")

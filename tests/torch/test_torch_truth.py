"""What the watch records is true on the patterns real models use: in-place ops overwriting a
recorded output, evaluation passes between steps, zero-initialised weights, a NaN loss, a NaN
overwritten by an in-place activation, a fault that does not happen again on the replay."""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import vizdebug
from vizdebug.runs import load_run
from vizdebug.stats import reference_stats
from vizdebug.torch import NonFiniteWarning


class Residual(nn.Module):
    """The in-place patterns of ResNet, MobileNetV3, DenseNet and EfficientNet in one block."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.act = nn.Hardswish(inplace=True)  # overwrites bn's output
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(4)  # its output gets `+= x`, then F.relu(inplace=True)
        self.drop = nn.Dropout(0.5, inplace=True)  # on a flattened view
        self.fc = nn.Linear(16, 3)
        self.seen: dict[str, torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn(self.conv(x))
        if torch.is_grad_enabled():
            self.seen["bn"] = out.detach().clone()
        out = self.act(out)
        out2 = self.bn2(self.conv2(out))
        if torch.is_grad_enabled():
            self.seen["bn2"] = out2.detach().clone()
        out2 += x
        out2 = F.relu(out2, inplace=True)
        flat = torch.flatten(F.adaptive_avg_pool2d(out2, 2), 1)
        if torch.is_grad_enabled():
            self.seen["flat"] = flat.detach().clone()
        return self.fc(self.drop(flat))


def _stats(run_dir: Path) -> dict[tuple[str, str, int, int], object]:
    return {(s.name, s.role, s.step, s.call): s.stats for s in load_run(run_dir).stats}


@pytest.mark.parametrize("offload", [True, False])
def test_outputs_overwritten_in_place_are_recorded_as_returned(
    tmp_path: Path, offload: bool
) -> None:
    torch.manual_seed(0)
    model = Residual()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    seen: list[dict[str, torch.Tensor]] = []
    with vizdebug.watch(model, opt, logdir=tmp_path, every=1, offload=offload) as w:
        for _ in range(3):
            opt.zero_grad()
            loss = model(torch.randn(2, 4, 8, 8)).square().mean()
            loss.backward()
            opt.step()
            w.step(loss=loss)
            seen.append(dict(model.seen))
    stats = _stats(tmp_path)
    for step, values in enumerate(seen):
        for name in ("bn", "bn2"):
            got = stats[(name, "output", step, 0)]
            want = reference_stats(values[name].numpy())
            assert got.min == pytest.approx(want.min) and got.max == pytest.approx(want.max)
            assert got.mean == pytest.approx(want.mean, abs=1e-6)
            assert got.hist_counts == want.hist_counts
    notes = [n.text for n in load_run(tmp_path).notes]
    assert not any("modified in place" in t for t in notes), notes


def test_evaluation_passes_between_steps_are_not_recorded(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with vizdebug.watch(model, opt, logdir=tmp_path, every=1) as w:
        for _ in range(3):
            opt.zero_grad()
            model(torch.randn(5, 4)).sum().backward()
            opt.step()
            with torch.no_grad():
                model(torch.randn(97, 4))  # evaluation: no_grad
            model.eval()
            model(torch.randn(33, 4))  # evaluation: eval() mode
            model.train()
        assert w.step_index == 3
    run = load_run(tmp_path)
    outputs = [s for s in run.stats if s.role == "output"]
    assert outputs and all(s.call == 0 for s in outputs)
    assert {s.stats.shape[0] for s in outputs} == {5}
    assert {s.step for s in outputs} == {0, 1, 2}


def test_update_ratio_is_never_manufactured_for_zero_weights(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with vizdebug.watch(model, opt, logdir=tmp_path, every=1):
        for _ in range(2):
            opt.zero_grad()
            model(torch.randn(3, 1, 4, 4)).square().mean().backward()
            opt.step()
    run = load_run(tmp_path)
    ratios = [s for tag, got in run.scalars.items() if tag.startswith("update_ratio/") for s in got]
    assert ratios and all(math.isfinite(s.value) for s in ratios)
    step0 = {s.tag for s in ratios if s.step == 0}
    assert "update_ratio/1.bias" not in step0  # BatchNorm's bias starts at 0
    assert "update_ratio/1.weight" in step0
    assert "update_ratio/1.bias" in {s.tag for s in ratios if s.step == 1}


def test_a_nan_loss_with_finite_gradients_is_an_anomaly(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with vizdebug.watch(model, opt, logdir=tmp_path, every=100) as w:
            for step in range(4):
                opt.zero_grad()
                out = model(torch.randn(5, 4))
                out.square().mean().backward()
                opt.step()
                shown = out.detach().sum() * (math.nan if step == 2 else 1.0)
                w.step(loss=shown)
    run = load_run(tmp_path)
    (anomaly,) = run.anomalies
    assert anomaly.step == 2 and anomaly.role == "loss" and anomaly.kind == "nan"
    assert "watch.step()" in anomaly.message
    assert any(issubclass(c.category, NonFiniteWarning) for c in caught)


class Bomb(nn.Module):
    """BatchNorm whose output gets a NaN at one chosen step (``armed``), then an in-place
    activation overwrites that output: the NaN is the BatchNorm's."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.armed:
            x = x.clone()
            x.view(-1)[3] = math.nan
        return x * 1.0


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.bomb = Bomb()
        self.inner = nn.Sequential(nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4))
        self.act = nn.Hardswish(inplace=True)
        self.head = nn.Linear(4 * 4 * 4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bomb(self.bn(self.conv(x)))
        y = self.act(self.inner(x))  # inner.1's (BatchNorm) output overwritten in place
        return self.head(torch.flatten(y, 1))


class NanBatchNorm(nn.BatchNorm2d):
    """A BatchNorm that produces a NaN at one step (a data-dependent fault, ``at`` set by the
    test for the step under way)."""

    def __init__(self, n: int) -> None:
        super().__init__(n)
        self.at = -1
        self.step = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        if self.step == self.at:
            out = out * torch.where(torch.arange(out.numel()).view_as(out) == 5, math.nan, 1.0)
        return out


@pytest.mark.parametrize("every", [1, 100])
def test_nan_from_batchnorm_overwritten_by_inplace_activation_is_named_at_batchnorm(
    tmp_path: Path, every: int
) -> None:
    torch.manual_seed(0)
    norm = NanBatchNorm(4)
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), norm, nn.Hardswish(inplace=True), nn.Flatten(),
        nn.Linear(64, 2),
    )  # fmt: skip
    norm.at = 3
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonFiniteWarning)
        with vizdebug.watch(model, opt, logdir=tmp_path, every=every, first=1):
            for step in range(5):
                norm.step = step
                opt.zero_grad()
                model(torch.randn(2, 2, 4, 4)).square().mean().backward()
                opt.step()
    first = load_run(tmp_path).anomalies[0]
    assert (first.step, first.module, first.phase, first.role) == (3, "1", "forward", "output")
    assert first.nan == 1


def _first_anomaly_of_five_steps(build: Callable[[], nn.Module], tmp_path: Path) -> Any:
    """Train the model ``build`` makes (seeded) five steps, only step 0 hooked; the run's
    first anomaly."""
    torch.manual_seed(0)
    model = build()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonFiniteWarning)
        with vizdebug.watch(model, opt, logdir=tmp_path, every=100, first=1):
            for _ in range(5):
                opt.zero_grad()
                model(torch.randn(3, 4)).square().mean().backward()
                opt.step()
    return load_run(tmp_path).anomalies[0]


def test_a_one_shot_fault_is_never_blamed_on_the_root_module(tmp_path: Path) -> None:
    calls = {"n": 0}

    class OneShot(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            calls["n"] += 1  # Python-side state: the replay does not see the fault again
            if calls["n"] == 4:
                return x * math.nan
            return x * 1.0

    first = _first_anomaly_of_five_steps(
        lambda: nn.Sequential(nn.Linear(4, 8), OneShot(), nn.Linear(8, 2)), tmp_path
    )
    assert first.step == 3
    # placed from the step's autograd graph (vizdebug.torch.graphwalk), never at the root
    assert (first.module, first.module_type, first.phase) == ("1", "OneShot", "forward")
    assert "approximately '1' (OneShot)" in first.message and "approximate" in first.message
    assert "after module '0' (Linear) ran, before module '2' (Linear) used it" in first.message
    assert "produced by the root module" not in first.message


def test_a_one_shot_backward_fault_is_placed_by_the_parameter_gradients(tmp_path: Path) -> None:
    calls = {"n": 0}

    class Spike(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
            return x.clone()

        @staticmethod
        def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
            calls["n"] += 1  # Python-side state: the replay's backward stays finite
            return grad * math.inf if calls["n"] == 4 else grad

    class OneShotBackward(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return Spike.apply(x)

    first = _first_anomaly_of_five_steps(
        lambda: nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 8), OneShotBackward(), nn.Linear(8, 2)),
        tmp_path,
    )
    # step 3: unhooked, backward call 4; the replay (call 5) stays finite
    assert (first.step, first.phase, first.role) == (3, "backward", "grad")
    assert (first.module, first.module_type) == ("1", "Linear")  # the last with a bad gradient
    assert "approximately '1' (Linear)" in first.message and "approximate" in first.message
    assert "module '3', defined after it, has finite ones" in first.message


def test_nothing_is_dropped_and_run_json_says_so(tmp_path: Path) -> None:
    torch.manual_seed(0)
    big = nn.Sequential(nn.Linear(2048, 4096), nn.ReLU(), nn.Linear(4096, 2048))  # 16.8M params
    opt = torch.optim.SGD(big.parameters(), lr=0.01)
    with vizdebug.watch(big, opt, logdir=tmp_path, every=1):
        for _ in range(2):
            opt.zero_grad()
            big(torch.randn(4, 2048)).square().mean().backward()
            opt.step()
    info = json.loads((tmp_path / "run.json").read_text())
    assert not info.get("dropped")
    roles = {(s.name, s.role, s.step) for s in load_run(tmp_path).stats}
    for step in (0, 1):
        for name in ("0.weight", "2.weight"):
            assert {(name, r, step) for r in ("weight", "grad", "update")} <= roles
        for name in ("0", "1", "2"):
            assert {(name, r, step) for r in ("output", "grad_output")} <= roles


@pytest.mark.parametrize("nan_at", [37, 40])  # off and on the demo's recording schedule
def test_the_demo_names_the_injected_module_at_its_step(tmp_path: Path, nan_at: int) -> None:
    from rich.console import Console

    from vizdebug.demo import train

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonFiniteWarning)
        train(tmp_path, epochs=2, nan_at=nan_at, console=Console(file=open(os.devnull, "w")))  # noqa: SIM115
    run = load_run(tmp_path)
    first = run.anomalies[0]
    assert (first.step, first.module, first.module_type, first.phase) == (
        nan_at, "6", "Linear", "forward",
    )  # fmt: skip
    assert nan_at in {s.step for s in run.snapshots}

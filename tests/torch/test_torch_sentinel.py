"""The NaN/Inf sentinel, the flight recorder and the no-host-sync rule."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from torch import nn
from torch_models import Block, NanBackward

import vizdebug
from vizdebug.runs import load_run, load_snapshot
from vizdebug.torch import NonFiniteError, NonFiniteWarning


class Poison(nn.Module):
    """Identity, except that it writes NaN into its output on chosen calls (a stateful NaN)."""

    def __init__(self, at_call: int, *more: int) -> None:
        super().__init__()
        self.at_calls = {at_call, *more}
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls - 1 in self.at_calls:
            x = x.clone()
            x[0, 0] = float("nan")
            return x
        return x * 1.0


class Overflow(nn.Module):
    """Identity, except that values beyond 1e4 become NaN (a NaN the data triggers)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x.abs() > 1e4, torch.full_like(x, float("nan")), x)


class Sqrt(nn.Module):
    """sqrt: finite forward at 0, infinite gradient there."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(x)


class SqrtAtZero(nn.Module):
    """sqrt(x - x): zero forward, an infinite gradient for x (no ReLU masks it)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(x - x.detach())


class NanGrad(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return NanBackward.apply(x)


def _train(model: nn.Module, opt: torch.optim.Optimizer, steps: int, x: torch.Tensor) -> None:
    for _ in range(steps):
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()


def test_forward_nan_traced_to_module_and_step(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(4, 4), Block(4), Poison(at_call=3), nn.Linear(4, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with pytest.warns(NonFiniteWarning, match=r"step 3.*'2' \(Poison\)"):  # noqa: SIM117
        with vizdebug.watch(model, opt, logdir=tmp_path):
            _train(model, opt, 4, torch.rand(3, 4))
    run = load_run(tmp_path)
    first = run.anomalies[0]
    assert (first.step, first.module, first.module_type) == (3, "2", "Poison")
    assert (first.kind, first.phase, first.role, first.nan) == ("nan", "forward", "output", 1)
    (snap,) = [s for s in run.snapshots if s.step == 3]
    assert snap.reason == "anomaly"
    tensors = load_snapshot(tmp_path / snap.path)
    assert {
        "0/input0",
        "0/output0",
        "1.block.fc/output0".replace(".block", ""),
        "2/output0",
    } <= set(tensors)
    assert torch.isnan(torch.from_numpy(tensors["2/output0"])).sum() == 1
    assert not torch.isnan(torch.from_numpy(tensors["2/input0"])).any()


@pytest.mark.parametrize("culprit", [Sqrt, NanGrad])
def test_backward_only_nonfinite_traced_to_module(tmp_path: Path, culprit: type) -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), culprit(), nn.Linear(3, 1))
    with torch.no_grad():
        model[0].bias.fill_(-100.0)  # ReLU output is exactly 0: sqrt'(0) = inf
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with vizdebug.watch(model, opt, logdir=tmp_path, on_anomaly="log"):
        _train(model, opt, 2, torch.rand(2, 3))
    first = load_run(tmp_path).anomalies[0]
    assert (first.step, first.module, first.phase) == (0, "2", "backward")
    assert first.module_type == culprit.__name__
    assert first.role == "grad_input"
    assert first.kind == ("inf" if culprit is Sqrt else "nan")


def test_raise_stops_the_nan_update(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(4, 4), Poison(at_call=1), nn.Linear(4, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with vizdebug.watch(model, opt, logdir=tmp_path, on_anomaly="raise") as w:
        _train(model, opt, 1, torch.rand(2, 4))
        with pytest.raises(NonFiniteError, match="Poison") as info:
            _train(model, opt, 1, torch.rand(2, 4))
        assert info.value.finding.site.module == "1"
        assert w.step_index == 2
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_weights_made_nonfinite_by_the_optimizer(tmp_path: Path) -> None:
    model = nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=float("inf"))
    with vizdebug.watch(model, opt, logdir=tmp_path, on_anomaly="log"):
        _train(model, opt, 2, torch.rand(2, 2))
    first = load_run(tmp_path).anomalies[0]
    assert (first.step, first.phase, first.role) == (0, "optimizer", "weight")


def test_nonfinite_weight_before_any_update_is_named(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))
    with torch.no_grad():
        model[2].weight[0, 1] = float("inf")
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with vizdebug.watch(model, opt, logdir=tmp_path, on_anomaly="log"):
        _train(model, opt, 1, torch.rand(2, 2))
    first = load_run(tmp_path).anomalies[0]
    assert (first.step, first.module, first.phase, first.role) == (0, "2", "forward", "weight")
    assert (first.kind, first.posinf) == ("inf", 1)


def test_gradients_over_the_keep_cap_are_still_checked(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), Sqrt(), nn.Linear(3, 1))
    with torch.no_grad():
        model[0].bias.fill_(-100.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with vizdebug.watch(model, opt, logdir=tmp_path, on_anomaly="log") as w:
        w._sentinel.keep_bytes = 0  # keep no gradient: only their flags
        _train(model, opt, 1, torch.rand(2, 3))
    first = load_run(tmp_path).anomalies[0]
    assert (first.step, first.module, first.phase, first.role) == (0, "2", "backward", "grad_input")
    assert "counts n/a" in first.message


def test_no_optimizer_steps_count_root_calls(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(2, 2), Poison(at_call=2))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with vizdebug.watch(model, logdir=tmp_path), torch.no_grad():
            for _ in range(4):
                model(torch.rand(1, 2))
    assert [str(w.message) for w in caught if w.category is NonFiniteWarning]
    first = load_run(tmp_path).anomalies[0]
    assert (first.step, first.module) == (2, "1")


def test_sentinel_off_records_no_anomaly(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(2, 2), Poison(at_call=0))
    with vizdebug.watch(model, logdir=tmp_path, on_anomaly=None), torch.no_grad():
        model(torch.rand(1, 2))
    assert not load_run(tmp_path).anomalies


# -- steps without module hooks: the check, then a replay of the step ------------------------

UNHOOKED = {"first": 0, "every": 1000}  # step 0 is hooked (structure event), later ones not


def test_replay_traces_a_forward_nan_on_an_unhooked_step(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(4, 4), Block(4), Overflow(), nn.Linear(4, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with vizdebug.watch(model, opt, logdir=tmp_path, on_anomaly="log", **UNHOOKED) as w:
        for step in range(5):
            x = torch.rand(3, 4) * (1e7 if step == 3 else 1.0)
            _train(model, opt, 1, x)
        assert not w._state.exact  # the replay reproduced it: no switch to exact tracing
    run = load_run(tmp_path)
    first = run.anomalies[0]
    assert (first.step, first.module, first.module_type) == (3, "2", "Overflow")
    assert (first.phase, first.role) == ("forward", "output")
    assert first.nan > 0
    (snap,) = [s for s in run.snapshots if s.step == 3]
    tensors = load_snapshot(tmp_path / snap.path)
    assert {"0/input0", "1/output0", "2/output0", "3/output0"} <= set(tensors)
    assert torch.isnan(torch.from_numpy(tensors["2/output0"])).sum() == first.nan


class Switched(nn.Module):
    """``culprit`` when switched on (by the training loop, for one step), else identity."""

    def __init__(self, culprit: nn.Module) -> None:
        super().__init__()
        self.culprit, self.on = culprit, False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.culprit(x) if self.on else x * 1.0


@pytest.mark.parametrize("culprit", [SqrtAtZero, NanGrad])
def test_replay_traces_a_backward_only_nonfinite(tmp_path: Path, culprit: type) -> None:
    model = nn.Sequential(nn.Linear(3, 3), Switched(culprit()), nn.Linear(3, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with vizdebug.watch(model, opt, logdir=tmp_path, on_anomaly="log", what=set(), first=0):
        for step in range(4):
            model[1].on = step == 2
            _train(model, opt, 1, torch.rand(2, 3))
    first = load_run(tmp_path).anomalies[0]
    assert (first.step, first.module, first.phase) == (2, "1.culprit", "backward")
    assert first.module_type == culprit.__name__
    assert first.role == "grad_input"
    assert first.kind == ("inf" if culprit is SqrtAtZero else "nan")


def test_unreproduced_nan_is_named_where_seen_then_traced_exactly(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(4, 4), Block(4), nn.Linear(4, 2), Poison(3, 5))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with vizdebug.watch(model, opt, logdir=tmp_path, on_anomaly="log", **UNHOOKED) as w:
        for _ in range(5):  # Poison's call 3 is at step 3, its replay is call 4
            opt.zero_grad()
            model(torch.rand(3, 4)).nan_to_num().square().mean().backward()  # finite gradients
            opt.step()
        assert w._state.exact
    first, second = load_run(tmp_path).anomalies[:2]
    assert (first.step, first.module, first.phase, first.role) == (3, "", "forward", "output")
    assert "did not reproduce it" in first.message
    assert (second.step, second.module, second.module_type) == (4, "3", "Poison")


class TwoHeads(nn.Module):
    """Dropout, BatchNorm and a side output the loss does not use (it may go NaN)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc, self.bn, self.drop = nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Dropout(0.5)
        self.head, self.side = nn.Linear(8, 2), Overflow()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(self.drop(self.bn(self.fc(x)))), self.side(x)


def test_a_replay_leaves_training_untouched(tmp_path: Path) -> None:
    def train(watched: bool) -> tuple[nn.Module, torch.Tensor]:
        torch.manual_seed(0)
        model = TwoHeads()
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        watch = vizdebug.watch(model, opt, logdir=tmp_path, on_anomaly="log", **UNHOOKED)
        if not watched:
            watch.close()
        for step in range(4):
            x = torch.rand(6, 4)
            x[0, 0] = 1e5 if step == 2 else x[0, 0]  # the side output goes NaN at step 2
            opt.zero_grad()
            model(x)[0].square().mean().backward()
            opt.step()
        watch.close()
        return model, torch.rand(3)

    bare, bare_draw = train(watched=False)
    watched, watched_draw = train(watched=True)
    for (name, a), b in zip(bare.state_dict().items(), watched.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert torch.equal(bare_draw, watched_draw)  # the RNG stream went on as without a replay
    first = load_run(tmp_path).anomalies[0]
    assert (first.step, first.module, first.phase) == (2, "side", "forward")


def test_bad_sentinel_option(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'replay' or 'exact'"):
        vizdebug.watch(nn.Linear(2, 2), logdir=tmp_path, sentinel="fast")  # type: ignore[arg-type]


@contextmanager
def no_host_sync() -> Iterator[None]:
    """Make host-sync methods raise when the training (main) thread calls them."""
    main = threading.main_thread()
    names = ["item", "cpu", "tolist", "__bool__", "__float__", "__int__", "numpy"]
    saved = {n: getattr(torch.Tensor, n) for n in names}

    def guard(name: str):  # type: ignore[no-untyped-def]
        original = saved[name]

        def wrapper(self, *a, **k):  # type: ignore[no-untyped-def]
            if threading.current_thread() is main:
                raise AssertionError(f"host sync: Tensor.{name} in the training thread")
            return original(self, *a, **k)

        return wrapper

    for n in names:
        setattr(torch.Tensor, n, guard(n))
    try:
        yield
    finally:
        for n, f in saved.items():
            setattr(torch.Tensor, n, f)


def test_the_guard_catches_a_sync() -> None:
    with no_host_sync(), pytest.raises(AssertionError, match="host sync"):
        torch.ones(1).item()


@pytest.mark.parametrize("every", [1, 1000])
def test_hooks_do_not_sync(tmp_path: Path, every: int) -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(inplace=True), nn.Flatten(), Block(576))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(2, 1, 14, 14)
    with vizdebug.watch(model, opt, logdir=tmp_path, every=every, first=0) as w:
        for _ in range(2):
            opt.zero_grad()
            with no_host_sync():
                loss = model(x).square().mean()
                loss.backward()
            opt.step()
            w.step(loss=loss)
    run = load_run(tmp_path)
    assert len(run.scalars["loss"]) == 2
    assert {s.step for s in run.stats} == ({0, 1} if every == 1 else {0})


def test_a_step_without_module_hooks_leaves_its_graph_to_reference_counting(
    tmp_path: Path,
) -> None:
    # The hook that catches the gradient of a root output lives on that output's autograd
    # node: holding the output strongly made a cycle that kept the step's whole graph (a
    # BERT-mini's logits: +190 MB peak) until the cyclic collector ran.
    import gc
    import weakref

    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with vizdebug.watch(model, opt, logdir=tmp_path, **UNHOOKED):
        gc.disable()
        try:
            for step in range(3):
                opt.zero_grad()
                out = model(torch.rand(3, 4))
                ref = weakref.ref(out)
                out.square().mean().backward()
                opt.step()
                del out
                if step:  # step 0 is hooked (structure event)
                    assert ref() is None, "the root output outlived its step"
        finally:
            gc.enable()

"""vizdebug.watch on real models: per-module events, schedule, filters, hooks, errors."""

from __future__ import annotations

import copy
import math
from collections import Counter
from pathlib import Path

import pytest
import torch
from torch import nn
from torch_models import Fancy, Pair, digits_like_cnn

import vizdebug
from vizdebug.runs import load_run
from vizdebug.stats import reference_stats
from vizdebug.torch import AlreadyWatchedError, Watch


def train(model: nn.Module, opt: torch.optim.Optimizer, w: Watch, steps: int, x, y) -> None:
    for _ in range(steps):
        opt.zero_grad()
        out = model(x)
        logits = out.logits if hasattr(out, "logits") else out
        loss = nn.functional.cross_entropy(logits, y)
        loss.backward()
        opt.step()
        w.step(loss=loss)


def test_cnn_every_kind_of_event(tmp_path: Path) -> None:
    model = digits_like_cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    with vizdebug.watch(model, opt, logdir=tmp_path, every=3, first=1) as w:
        train(model, opt, w, 4, x, y)
    run = load_run(tmp_path)
    assert sorted({s.step for s in run.stats}) == [0, 3]
    roles = Counter((s.step, s.role) for s in run.stats)
    assert roles[(0, "output")] == 6  # five layers and the root
    assert roles[(0, "grad_output")] == 6
    assert roles[(0, "grad")] == roles[(0, "weight")] == roles[(0, "update")] == 4
    names = {s.name for s in run.stats if s.role == "output"}
    assert names == {"", "0", "1", "2", "3", "4"}
    assert [s.step for s in run.scalars["loss"]] == [0, 1, 2, 3]
    assert "update_ratio/0.weight" in run.scalars
    (structure,) = run.structures
    assert [m.name for m in structure.modules] == ["", "0", "1", "2", "3", "4"]
    assert structure.modules[1].params == 80
    assert structure.modules[1].output_shapes == ((16, 8, 8, 8),)
    assert not run.anomalies


def test_activation_stats_equal_reference_despite_inplace_relu(tmp_path: Path) -> None:
    model = digits_like_cnn()
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        conv_out = model[0](x).clone()
    with vizdebug.watch(model, logdir=tmp_path, on_anomaly=None):
        model(x)
    run = load_run(tmp_path)
    conv = next(s for s in run.stats if s.name == "0" and s.role == "output")
    relu = next(s for s in run.stats if s.name == "1" and s.role == "output")
    ref = reference_stats(conv_out.numpy())
    assert conv.stats.min == pytest.approx(ref.min) and conv.stats.min < 0
    assert conv.stats.mean == pytest.approx(ref.mean, rel=1e-5)
    assert conv.stats.hist_counts == ref.hist_counts
    assert relu.stats.min == 0.0


def test_weight_grad_and_update_values(tmp_path: Path) -> None:
    model = nn.Linear(5, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    before = model.weight.detach().clone()
    with vizdebug.watch(model, opt, logdir=tmp_path) as w:
        opt.zero_grad()
        model(torch.randn(3, 5)).square().sum().backward()
        grad = model.weight.grad.clone()
        opt.step()
        w.step(loss=1.0)
    run = load_run(tmp_path)
    by_role = {s.role: s.stats for s in run.stats if s.name == "weight"}
    assert by_role["weight"].l2 == pytest.approx(float(before.norm()), rel=1e-5)
    assert by_role["grad"].mean == pytest.approx(float(grad.mean()), rel=1e-5, abs=1e-7)
    update = model.weight.detach() - before
    assert by_role["update"].l2 == pytest.approx(float(update.norm()), rel=1e-5)
    ratio = run.scalars["update_ratio/weight"][0].value
    assert ratio == pytest.approx(float(update.norm() / before.norm()), rel=1e-5)


class Mixed(nn.Module):
    """Parameters of three dtypes: float32 and float64 pairs, one lone bfloat16 weight."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 3)
        self.b = nn.Linear(3, 2).double()
        self.c = nn.Linear(2, 2, bias=False).to(torch.bfloat16)
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.b(self.a(x).double()).to(torch.bfloat16)
        return self.c(h).float() * self.scale.mean()


def _same_stats(got, values: torch.Tensor) -> None:
    ref = reference_stats(values.detach().double().numpy())
    assert got.numel == ref.numel
    assert (got.min, got.max) == (pytest.approx(ref.min), pytest.approx(ref.max))
    assert got.mean == pytest.approx(ref.mean, rel=1e-5, abs=1e-7)
    assert got.l2 == pytest.approx(ref.l2, rel=1e-5)
    assert sum(got.hist_counts) == ref.numel


@pytest.mark.parametrize("offload", [True, False])
def test_weights_grads_and_updates_of_every_dtype_match_the_reference(
    tmp_path: Path, offload: bool
) -> None:
    # The weights, gradients and updates of one dtype are copied into one flat tensor
    # (vizdebug.torch.flat) and reported per parameter; a lone parameter's copy must be a copy,
    # not a view.
    model = Mixed()
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    steps: list[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]] = []
    grads: dict[int, dict[str, torch.Tensor]] = {}
    with vizdebug.watch(model, opt, logdir=tmp_path, every=1, offload=offload):
        for _ in range(3):
            opt.zero_grad()
            model(torch.randn(5, 4)).square().sum().backward()
            before = {n: p.detach().clone() for n, p in model.named_parameters()}
            grads[len(steps)] = {n: p.grad.clone() for n, p in model.named_parameters()}
            opt.step()
            after = {n: p.detach().clone() for n, p in model.named_parameters()}
            steps.append((before, after))
    run = load_run(tmp_path)
    stats = {(s.step, s.name, s.role): s.stats for s in run.stats}
    for step, (before, after) in enumerate(steps):
        for name, value in before.items():
            weight, update = stats[(step, name, "weight")], stats[(step, name, "update")]
            assert weight.shape == tuple(value.shape)
            assert weight.dtype == str(value.dtype).removeprefix("torch.")
            _same_stats(weight, value)
            _same_stats(update, after[name] - value)
            assert update.l2 > 0
            _same_stats(stats[(step, name, "grad")], grads[step][name])
    ratios = run.scalars["update_ratio/c.weight"]
    assert [r.step for r in ratios] == [0, 1, 2]


def test_parameters_changed_under_the_watch_are_regrouped(tmp_path: Path) -> None:
    model = Mixed()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with vizdebug.watch(model, opt, logdir=tmp_path, every=1):
        for step in range(4):
            if step == 2:
                model.scale.data = torch.ones(3)  # a new shape: the flat layout is stale
            opt.zero_grad()
            model(torch.randn(5, 4)).sum().backward()
            used = model.a.weight.detach().clone()
            opt.step()
    run = load_run(tmp_path)
    shapes = {s.step: s.stats.shape for s in run.stats if s.name == "scale" and s.role == "weight"}
    assert shapes == {0: (1,), 1: (1,), 2: (3,), 3: (3,)}
    updates = {s.step for s in run.stats if s.name == "scale" and s.role == "update"}
    assert updates == {0, 1, 2, 3}
    assert not [n.text for n in run.notes if "not recorded" in n.text]
    weights = [s for s in run.stats if s.role == "weight" and s.step == 3]
    assert {s.name for s in weights} == {n for n, _ in model.named_parameters()}
    _same_stats(next(s.stats for s in weights if s.name == "a.weight"), used)


@pytest.mark.parametrize("flat", [True, False])
def test_gradients_zeroed_in_place_are_reported_right_or_not_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flat: bool
) -> None:
    # Parameter gradients are copied flat (vizdebug.torch.flat), or, over FLAT_GRAD_BYTES, go
    # to the worker by reference; optimizer.zero_grad(set_to_none=False) zeroes them in place,
    # and waits for the worker's read first: nothing is lost, nothing mixed.
    if not flat:
        monkeypatch.setattr("vizdebug.torch.flat.FLAT_GRAD_BYTES", 0)
    model = nn.Sequential(nn.Linear(64, 256), nn.Tanh(), nn.Linear(256, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    expected = []
    with vizdebug.watch(model, opt, logdir=tmp_path, every=1):
        for _ in range(12):
            opt.zero_grad(set_to_none=False)
            model(torch.randn(32, 64)).square().mean().backward()
            expected.append(float(model[0].weight.grad.norm()))
            opt.step()
    run = load_run(tmp_path)
    got = {s.step: s.stats.l2 for s in run.stats if s.name == "0.weight" and s.role == "grad"}
    lost = [n for n in run.notes if "0.weight (grad" in n.text and "in place" in n.text]
    assert len(got) == 12 and not lost
    for step, l2 in got.items():
        assert l2 == pytest.approx(expected[step], rel=1e-5)


def test_fancy_outputs_shared_module_and_skipped_ints(tmp_path: Path) -> None:
    model = nn.Sequential(Fancy())
    pair = Pair()
    with vizdebug.watch(model, logdir=tmp_path) as w, vizdebug.watch(pair, writer=w.writer):
        model(torch.randn(2, 6)).logits.sum().backward()
        pair(torch.randn(2, 6))
    run = load_run(tmp_path)
    outs = {(s.name, s.call) for s in run.stats if s.role == "output"}
    assert {("0.shared", 0), ("0.shared", 1), ("0.block.fc", 0), ("0[logits]", 0)} <= outs
    grads = {(s.name, s.call) for s in run.stats if s.role == "grad_output"}
    assert {("0.shared", 0), ("0.shared", 1), ("0.block.act", 0)} <= grads
    assert {("[0]", 0), ("[1][half]", 0)} <= outs
    assert any("[1][idx]" in n.text and "int64" in n.text for n in run.notes)


@pytest.mark.parametrize(
    "make",
    [
        lambda: nn.LSTM(4, 5, batch_first=True),
        lambda: nn.GRU(4, 5, num_layers=2, batch_first=True),
        lambda: nn.TransformerEncoder(
            nn.TransformerEncoderLayer(4, 2, dim_feedforward=8, batch_first=True), 2
        ),
    ],
    ids=["lstm", "gru", "transformer"],
)
def test_recurrent_and_attention_models(tmp_path: Path, make) -> None:
    model = make()
    opt = torch.optim.Adam(model.parameters())
    with vizdebug.watch(model, opt, logdir=tmp_path, every=1):
        for _ in range(2):
            opt.zero_grad()
            out = model(torch.randn(3, 7, 4))
            (out[0] if isinstance(out, tuple) else out).sum().backward()
            opt.step()
    run = load_run(tmp_path)
    params = {n for n, _ in model.named_parameters()}
    for step in (0, 1):
        assert {s.name for s in run.stats if s.step == step and s.role == "update"} == params
        assert any(s.role == "grad_output" for s in run.stats if s.step == step)
    if isinstance(model, nn.TransformerEncoder):
        names = {s.name for s in run.stats if s.role == "output"}
        assert "layers.0.self_attn[0]" in names and "layers.1.linear2" in names
    else:
        lstm = isinstance(model, nn.LSTM)
        expected = {"[0]", "[1][0]", "[1][1]"} if lstm else {"[0]", "[1]"}
        assert {s.name for s in run.stats if s.role == "output"} == expected


def test_multihead_attention_tuple_with_none(tmp_path: Path) -> None:
    mha = nn.MultiheadAttention(4, 2, batch_first=True)
    q = torch.randn(2, 3, 4)
    with vizdebug.watch(mha, logdir=tmp_path):
        out, weights = mha(q, q, q, need_weights=False)
        assert weights is None
        out.sum().backward()
    run = load_run(tmp_path)
    assert {(s.name, s.role) for s in run.stats if s.name == "[0]"} == {
        ("[0]", "output"),
        ("[0]", "grad_output"),
    }


def test_eval_no_grad_records_activations_only(tmp_path: Path) -> None:
    model = digits_like_cnn().eval()
    with vizdebug.watch(model, logdir=tmp_path), torch.no_grad():
        for _ in range(3):
            model(torch.randn(2, 1, 8, 8))
    run = load_run(tmp_path)
    assert {s.role for s in run.stats} == {"output", "weight"}
    assert sorted({s.step for s in run.stats}) == [0, 1, 2]


def test_gradient_accumulation_counts_calls(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.Tanh())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with vizdebug.watch(model, opt, logdir=tmp_path):
        for _ in range(2):
            for _ in range(3):
                model(torch.randn(2, 3)).sum().backward()
            opt.step()
            opt.zero_grad()
    run = load_run(tmp_path)
    calls = sorted((s.step, s.call) for s in run.stats if s.name == "0" and s.role == "output")
    assert calls == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    assert len([s for s in run.stats if s.name == "0.weight" and s.role == "grad"]) == 2


def test_autocast_bfloat16(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with vizdebug.watch(model, opt, logdir=tmp_path):
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            out = model(torch.randn(2, 4))
        out.float().sum().backward()
        opt.step()
    run = load_run(tmp_path)
    lin = next(s for s in run.stats if s.name == "0" and s.role == "output")
    assert lin.stats.dtype == "bfloat16"
    assert not run.anomalies


def test_schedule_filters_and_what(tmp_path: Path) -> None:
    model = digits_like_cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,))
    with vizdebug.watch(
        model, opt, logdir=tmp_path, every=4, first=2, what={"activations"}, exclude=["1", "3"]
    ) as w:
        train(model, opt, w, 9, x, y)
    run = load_run(tmp_path)
    assert sorted({s.step for s in run.stats}) == [0, 1, 4, 8]
    assert {s.role for s in run.stats} == {"output"}
    assert {s.name for s in run.stats} == {"", "0", "2", "4"}


def test_close_removes_every_hook_and_stops_writing(tmp_path: Path) -> None:
    model = digits_like_cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    writer = vizdebug.Writer(tmp_path)
    w = vizdebug.watch(model, opt, writer=writer, every=1)
    model(torch.randn(2, 1, 8, 8)).sum().backward()
    opt.step()
    w.close()
    w.close()
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks
    for p in model.parameters():
        assert not p._post_accumulate_grad_hooks
    assert not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks
    writer.flush()
    count = len(load_run(tmp_path).stats)
    model(torch.randn(2, 1, 8, 8)).sum().backward()
    opt.step()
    writer.close()
    assert count > 0 and len(load_run(tmp_path).stats) == count
    vizdebug.watch(model, opt, logdir=tmp_path / "again").close()  # watching again is fine


def test_close_mid_backward_leaves_no_tensor_hooks_running(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(3, 3))
    w = vizdebug.watch(model, logdir=tmp_path, every=1)
    out = model(torch.randn(2, 3))
    w.close()
    out.sum().backward()  # hooks were removed: no error, no event
    assert not [s for s in load_run(tmp_path).stats if s.role == "grad_output"]


def test_watching_twice_is_an_error(tmp_path: Path) -> None:
    model = digits_like_cnn()
    with vizdebug.watch(model, logdir=tmp_path / "a"):
        with pytest.raises(AlreadyWatchedError, match="close"):
            vizdebug.watch(model, logdir=tmp_path / "b")
        with pytest.raises(ValueError, match="already watched"):
            vizdebug.watch(nn.Sequential(model[0]), logdir=tmp_path / "c")
        assert len(model[0]._forward_hooks) == 1


def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match=r"torch\.nn\.Module, got list"):
        vizdebug.watch([1, 2])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="optimizer"):
        vizdebug.watch(nn.Linear(1, 1), "sgd")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="what"):
        vizdebug.watch(nn.Linear(1, 1), what={"activation"})
    with pytest.raises(ValueError, match="every"):
        vizdebug.watch(nn.Linear(1, 1), every=0)


def test_torch_compile_trains_identically(tmp_path: Path) -> None:
    def run(watched: bool) -> list[torch.Tensor]:
        torch.manual_seed(1)
        model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        w = vizdebug.watch(model, opt, logdir=tmp_path, every=1) if watched else None
        compiled = torch.compile(model, backend="eager")
        for i in range(3):
            torch.manual_seed(100 + i)
            opt.zero_grad()
            compiled(torch.randn(5, 4)).square().mean().backward()
            opt.step()
        if w is not None:
            w.close()
        return [p.detach().clone() for p in model.parameters()]

    eager = run(False)
    torch._dynamo.reset()
    watched = run(True)
    assert all(torch.equal(a, b) for a, b in zip(eager, watched, strict=True))
    assert load_run(tmp_path).stats


def test_a_failed_statistics_batch_falls_back_to_one_tensor_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vizdebug.torch.cpubatch import CpuBatch

    def broken(self: CpuBatch, tensors: list[torch.Tensor], bins: int) -> torch.Tensor:
        raise RuntimeError("injected: the batched call failed")

    monkeypatch.setattr(CpuBatch, "rows", broken)
    model = Mixed()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with vizdebug.watch(model, opt, logdir=tmp_path, every=1):
        opt.zero_grad()
        model(torch.randn(5, 4)).sum().backward()
        used = {n: p.detach().clone() for n, p in model.named_parameters()}
        opt.step()
    run = load_run(tmp_path)
    stats = {(s.name, s.role): s.stats for s in run.stats}
    for name, value in used.items():
        _same_stats(stats[(name, "weight")], value)
    assert ("a", "output") in stats and ("a.weight", "grad") in stats


class Doubling(nn.Module):
    """Returns its child's output, doubled in place (a new autograd node behind the same
    tensor: its gradient is not the child's)."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x).mul_(2.0)


@pytest.mark.parametrize("offload", [True, False])
def test_a_container_returning_its_childs_tensor_gets_the_same_output_gradient(
    tmp_path: Path, offload: bool
) -> None:
    # The root Sequential returns the tensor its last Linear returned: one gradient hook
    # serves both; Doubling returns its child's tensor changed in place: hooks of their own.
    model = nn.Sequential(nn.Linear(3, 3), Doubling(), nn.Linear(3, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, w = torch.randn(4, 3), torch.arange(8.0).view(4, 2)
    # the reference gradients: the same function, unwatched, on a copy
    ref = copy.deepcopy(model)
    h = ref[1].inner(ref[0](x))
    h.retain_grad()
    out = ref[2](h * 2.0)
    out.retain_grad()
    (out * w).sum().backward()
    with vizdebug.watch(model, opt, logdir=tmp_path, every=1, offload=offload):
        opt.zero_grad()
        (model(x) * w).sum().backward()
        opt.step()
    grads = {s.name: s.stats for s in load_run(tmp_path).stats if s.role == "grad_output"}
    assert set(grads) == {"", "0", "1", "1.inner", "2"}
    assert out.grad is not None and h.grad is not None
    _same_stats(grads[""], out.grad)
    _same_stats(grads["2"], out.grad)
    _same_stats(grads["1.inner"], h.grad)
    _same_stats(grads["1"], h.grad / 2)


def test_steps_that_end_without_their_optimizer_step_leave_later_weights_right(
    tmp_path: Path,
) -> None:
    # The weights of a recorded step are handed to the worker at its first root call and
    # held for the update; a step stopped by on_anomaly="raise", or whose forward raised,
    # never reaches opt.step(): the next steps must still record the values their forward used.
    from vizdebug.torch import NonFiniteError

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    used: dict[int, torch.Tensor] = {}
    with vizdebug.watch(model, opt, logdir=tmp_path, every=1, on_anomaly="raise") as w:
        for step in range(5):
            x = torch.randn(3, 4)
            if step == 1:
                x[0, 0] = math.nan
            opt.zero_grad()
            if step == 3:
                with pytest.raises(ZeroDivisionError):
                    model[0].register_forward_hook(lambda *a: 1 / 0)
                    try:
                        model(x)
                    finally:
                        model[0]._forward_hooks.clear()
                w.step()
                continue
            used[w.step_index] = model[0].weight.detach().clone()
            model(x).square().mean().backward()
            if step == 1:
                with pytest.raises(NonFiniteError):
                    opt.step()
                continue
            opt.step()
    run = load_run(tmp_path)
    weights = {s.step: s.stats for s in run.stats if s.name == "0.weight" and s.role == "weight"}
    for step, value in used.items():
        if step != 1:
            _same_stats(weights[step], value)


def test_the_update_is_the_optimizer_step_alone_not_code_between_steps(tmp_path: Path) -> None:
    # WGAN-style weight clipping right after opt.step(): the recorded update is what the
    # optimizer step changed, whatever runs between steps.
    torch.manual_seed(0)
    model = nn.Linear(8, 4)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    changes: list[torch.Tensor] = []
    with vizdebug.watch(model, opt, logdir=tmp_path, every=1):
        for _ in range(4):
            opt.zero_grad()
            model(torch.randn(6, 8)).square().mean().backward()
            before = model.weight.detach().clone()
            opt.step()
            changes.append(model.weight.detach() - before)
            with torch.no_grad():
                model.weight.clamp_(-0.01, 0.01)
    run = load_run(tmp_path)
    got = {s.step: s.stats for s in run.stats if s.name == "weight" and s.role == "update"}
    for step, change in enumerate(changes):
        _same_stats(got[step], change)


def test_a_model_cast_between_steps_is_regrouped_at_once(tmp_path: Path) -> None:
    # Every parameter cast the same way: the flat layout is stale although the parameters
    # still agree with each other; the step's weights are recorded in the new dtype.
    model = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with vizdebug.watch(model, opt, logdir=tmp_path, every=1):
        for step in range(3):
            if step == 1:
                model.double()
            dtype = torch.float64 if step else torch.float32
            opt.zero_grad()
            model(torch.randn(5, 4, dtype=dtype)).sum().backward()
            opt.step()
    run = load_run(tmp_path)
    got = {(s.step, s.role): s.stats.dtype for s in run.stats if s.name == "0.weight"}
    for step in range(3):
        want = "float64" if step else "float32"
        assert got[(step, "weight")] == want and got[(step, "update")] == want
    assert not [n.text for n in run.notes if "not recorded" in n.text]

"""The models people train (tests/torch/zoo.py), watched at every step: everything scheduled is
recorded, outputs are those the modules returned, training is bit-identical, and a NaN injected
deep inside is traced to its module and step (forward, backward-only and one-shot faults).
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch_models import NanBackward
from zoo import HF_NAMES, ZOO, deep_leaf

import vizdebug
from vizdebug.runs import load_run
from vizdebug.torch import NonFiniteWarning

pytestmark = pytest.mark.slow

NAMES = sorted(ZOO)
STEPS = 2


def _available(name: str) -> None:
    if name in HF_NAMES:
        pytest.importorskip("transformers")


def _train(model: nn.Module, make: Any, steps: int, watch: Any = None) -> None:
    opt = watch.optimizer if watch is not None else None
    for step in range(steps):
        args, kwargs, loss_of = make(step)
        assert opt is not None
        opt.zero_grad()
        loss = loss_of(model(*args, **kwargs))
        loss.backward()
        opt.step()
        watch.step(loss=loss)


class Called:
    """The test's own record of which leaf outputs exist and which got a gradient."""

    def __init__(self, model: nn.Module) -> None:
        self.outputs: set[str] = set()
        self.grads: set[str] = set()
        self.handles = [
            m.register_forward_hook(self._hook(name))
            for name, m in model.named_modules()
            if name and not list(m.children())
        ]

    def _hook(self, name: str) -> Any:
        def hook(module: nn.Module, args: Any, out: Any) -> None:
            if not torch.is_grad_enabled() or not isinstance(out, torch.Tensor):
                return
            if not out.dtype.is_floating_point:
                return
            self.outputs.add(name)
            if out.requires_grad:
                out.register_hook(lambda g: self.grads.add(name))

        return hook


@pytest.mark.parametrize("name", NAMES)
def test_every_scheduled_step_is_recorded_in_full_and_training_is_unchanged(
    tmp_path: Path, name: str
) -> None:
    _available(name)
    bare, make = ZOO[name](seed=0)
    bare_opt = torch.optim.SGD(bare.parameters(), lr=0.01, momentum=0.9)
    for step in range(STEPS):
        args, kwargs, loss_of = make(step)
        bare_opt.zero_grad()
        loss_of(bare(*args, **kwargs)).backward()
        bare_opt.step()

    model, make = ZOO[name](seed=0)
    called = Called(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    with vizdebug.watch(model, opt, logdir=tmp_path, every=1) as watch:
        _train(model, make, STEPS, watch)
    for a, b in zip(bare.parameters(), model.parameters(), strict=True):
        assert torch.equal(a, b), "training with the watch is not bit-identical"

    run = load_run(tmp_path)
    rows = {(s.name, s.role, s.step) for s in run.stats}
    for step in range(STEPS):
        missing = [n for n in called.outputs if (n, "output", step) not in rows]
        assert not missing, f"step {step}: outputs missing: {missing[:5]}"
        missing = [n for n in called.grads if (n, "grad_output", step) not in rows]
        assert not missing, f"step {step}: output gradients missing: {missing[:5]}"
        for pname, p in model.named_parameters():
            if p.grad is None:
                continue
            want = {(pname, role, step) for role in ("weight", "grad", "update")}
            assert want <= rows, f"step {step}: {pname}: {sorted(want - rows)}"
    info = json.loads((tmp_path / "run.json").read_text())
    assert not info.get("dropped"), info.get("dropped")
    texts = [n.text for n in run.notes]
    assert not any("modified in place" in t for t in texts), texts
    ratios = [s.value for tag, got in run.scalars.items() if "update_ratio" in tag for s in got]
    assert ratios and all(math.isfinite(v) for v in ratios)


def _inject(model: nn.Module, leaf: str, kind: str, at: dict[str, int]) -> None:
    """Make ``leaf``'s output carry a fault when ``at["step"] == at["bad"]``."""
    state = {"fired": 0}

    def hook(module: nn.Module, args: Any, out: torch.Tensor) -> torch.Tensor | None:
        if at["step"] != at["bad"] or not torch.is_grad_enabled():
            return None
        if kind == "one-shot":  # Python state: a replay of the step stays finite
            state["fired"] += 1
            if state["fired"] > 1:
                return None
        if kind == "backward":
            return NanBackward.apply(out)  # type: ignore[no-any-return]
        out = out.clone()
        out.view(-1)[1] = math.nan
        return out

    model.get_submodule(leaf).register_forward_hook(hook)


@pytest.mark.parametrize(
    ("name", "kind", "every"),
    [(n, "forward", 1000) for n in NAMES]
    + [(n, "one-shot", 1) for n in ("resnet18", "mobilenet_v3_small", "bert_tiny")]
    + [(n, "one-shot", 1000) for n in NAMES]
    + [(n, "backward", 1000) for n in ("resnet18", "densenet", "gpt2_tiny")],
)
def test_a_nan_injected_deep_inside_is_traced_to_its_module(
    tmp_path: Path, name: str, kind: str, every: int
) -> None:
    _available(name)
    model, make = ZOO[name](seed=0)
    leaf = deep_leaf(name)
    at = {"step": 0, "bad": 2}
    _inject(model, leaf, kind, at)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonFiniteWarning)
        with vizdebug.watch(model, opt, logdir=tmp_path, every=every, first=1) as watch:
            for step in range(3):
                at["step"] = step
                args, kwargs, loss_of = make(step)
                opt.zero_grad()
                loss = loss_of(model(*args, **kwargs))
                loss.backward()
                opt.step()
                watch.step(loss=loss)
    run = load_run(tmp_path)
    first = run.anomalies[0]
    assert first.step == 2, first.message
    assert first.module == leaf, first.message
    assert first.phase == ("backward" if kind == "backward" else "forward"), first.message
    snaps = [s for s in run.snapshots if s.step == 2]
    assert snaps, "the flight recorder's snapshot of the NaN step is missing"

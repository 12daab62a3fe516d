"""The traced model graph reaches TensorBoard's Graphs dashboard without changing training."""

from __future__ import annotations

from pathlib import Path

import torch
from tensorboard.backend.event_processing import event_accumulator as ea
from torch import nn

import vizdebug
from vizdebug.runs import load_run


def _train(model: nn.Module, logdir: Path | None, steps: int = 3) -> list[torch.Tensor]:
    torch.manual_seed(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    watch = vizdebug.watch(model, opt, logdir=logdir, graph=True) if logdir is not None else None
    for _ in range(steps):
        opt.zero_grad()
        model(torch.randn(5, 1, 8, 8)).sum().backward()
        opt.step()
    if watch is not None:
        watch.close()
    return [p.detach().clone() for p in model.parameters()]


def _cnn() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Dropout(0.5),
        nn.Linear(4 * 36, 2),
    )  # fmt: skip


def test_graph_is_written_and_training_is_unchanged(tmp_path: Path) -> None:
    watched = _cnn()
    after = _train(watched, tmp_path)
    bare = _train(_cnn(), None)
    for a, b in zip(after, bare, strict=True):  # dropout RNG and batch-norm stats untouched
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert watched.training and all(m.training for m in watched.modules())
    acc = ea.EventAccumulator(str(tmp_path))
    acc.Reload()
    ops = [n.op for n in acc.Graph().node]
    assert "aten::_convolution" in ops and "aten::linear" in ops


class LabelledOut(nn.Module):
    """Returns a string next to its tensor: torch.jit.trace cannot trace that."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, str]:
        return self.fc(x.flatten(1)), "logits"


def test_untraceable_model_gets_a_note(tmp_path: Path) -> None:
    model = LabelledOut()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with vizdebug.watch(model, opt, logdir=tmp_path, graph=True):
        for _ in range(2):
            opt.zero_grad()
            model(torch.randn(5, 1, 8, 8))[0].sum().backward()
            opt.step()
    notes = [n.text for n in load_run(tmp_path).notes]
    assert any("model graph not traced" in t for t in notes), notes


def test_no_graph_unless_asked(tmp_path: Path) -> None:
    _train(_cnn(), None)
    model = _cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with vizdebug.watch(model, opt, logdir=tmp_path):
        model(torch.randn(5, 1, 8, 8)).sum().backward()
        opt.step()
    assert _graph_nodes(tmp_path) == []


def _graph_nodes(path: Path) -> list[object]:
    acc = ea.EventAccumulator(str(path))
    acc.Reload()
    try:
        return list(acc.Graph().node)
    except ValueError:  # no graph in the run
        return []

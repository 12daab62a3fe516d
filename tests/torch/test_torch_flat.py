"""vizdebug.torch.flat: the parameters of a recorded step copied into one tensor per group."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vizdebug.torch.flat import FlatGroup, flat_groups


def test_groups_by_device_and_dtype_and_copies_in_order() -> None:
    a, b = nn.Linear(3, 2), nn.Linear(2, 2).double()
    named = [(f"a.{n}", p, True) for n, p in a.named_parameters()]
    named += [(f"b.{n}", p, True) for n, p in b.named_parameters()]
    named += [("skipped", nn.Parameter(torch.ones(2)), False)]
    named += [("complex", nn.Parameter(torch.ones(2, dtype=torch.complex64)), True)]
    groups, single = flat_groups(named)
    assert [g.parts.names for g in groups] == [("a.weight", "a.bias"), ("b.weight", "b.bias")]
    assert [n for n, _ in single] == ["complex"]
    flat = groups[0].copy()
    assert flat is not None
    assert torch.equal(flat, torch.cat([a.weight.detach().reshape(-1), a.bias.detach()]))
    assert groups[0].parts.sizes == [6, 2] and groups[0].parts.shapes == ((2, 3), (2,))


def test_a_lone_parameter_is_copied_not_viewed() -> None:
    p = nn.Parameter(torch.ones(2, 3))
    (group,), _ = flat_groups([("p", p, True)])
    flat = group.copy()
    assert flat is not None and flat.data_ptr() != p.data_ptr()
    with torch.no_grad():
        p.add_(1.0)
    assert torch.equal(flat, torch.ones(6))
    group.hold(flat)
    group.recycle(flat)  # the worker has read it
    update = group.update(flat)
    assert update is not None and torch.equal(update, torch.ones(6))


def test_the_update_is_written_into_the_read_weights_bit_for_bit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    torch.manual_seed(0)
    lin = nn.Linear(64, 32)
    (group,), _ = flat_groups([(n, p, True) for n, p in lin.named_parameters()])
    before = group.copy()
    assert before is not None
    kept = before.clone()
    group.hold(before)
    with torch.no_grad():
        for p in lin.parameters():
            p.mul_(1.0 + 1e-3).add_(torch.randn_like(p) * 1e-4)
    now = torch.cat([lin.weight.detach().reshape(-1), lin.bias.detach()])
    assert group.grads() is None  # no gradients: nothing copied
    group.recycle(before)
    assert group.copy() is not before  # held for the update: no other copy reuses it
    update = group.update(before)
    assert update is before  # no second tensor
    assert torch.equal(update, now - kept)
    # not read yet (still handed out): a second tensor, the weights left to the reader
    monkeypatch.setattr("vizdebug.torch.flat.WAIT_SECONDS", 0.01)
    group.recycle(update)
    again = group.copy()
    assert again is not None
    group.hold(again)
    snapshot = again.clone()
    update = group.update(again)
    assert update is not None and update is not again
    assert torch.equal(again, snapshot) and torch.equal(update, torch.zeros_like(update))


def test_stale_layouts_are_refused() -> None:
    p, q = nn.Parameter(torch.ones(2)), nn.Parameter(torch.ones(3))
    (group,), _ = flat_groups([("p", p, True), ("q", q, True)])
    p.data = torch.ones(4)  # a new size: the layout is stale
    assert group.copy() is None
    mixed = FlatGroup([("p", p), ("m", nn.Parameter(torch.ones(3, device="meta")))])
    assert mixed.copy() is None  # two devices: one tensor cannot hold them


def test_gradients_copied_only_when_all_present_and_under_the_cap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lin = nn.Linear(3, 2)
    (group,), _ = flat_groups([(n, p, True) for n, p in lin.named_parameters()])
    assert group.grads() is None  # no gradients yet
    lin(torch.randn(4, 3)).sum().backward()
    flat = group.grads()
    assert flat is not None
    assert lin.weight.grad is not None and lin.bias.grad is not None
    assert torch.equal(flat, torch.cat([lin.weight.grad.reshape(-1), lin.bias.grad]))
    monkeypatch.setattr("vizdebug.torch.flat.FLAT_GRAD_BYTES", 8 * 4 - 1)
    assert group.grads() is None  # 8 float32 gradients are over a cap of 31 bytes
    lin.bias.grad = None
    monkeypatch.undo()
    assert group.grads() is None


def test_the_worker_fills_the_weights_and_writes_their_update_in_place() -> None:
    # The deferred path (the statistics worker's side, run here on one thread): the weights
    # copied into a flat tensor, held once read, the update written into that same tensor.
    torch.manual_seed(0)
    lin = nn.Linear(16, 8)
    (group,), _ = flat_groups([(n, p, True) for n, p in lin.named_parameters()])
    before = group.fill_weights(hold=True)
    assert before is not None
    kept = torch.cat([lin.weight.detach().reshape(-1), lin.bias.detach()])
    assert torch.equal(before, kept)
    group.recycle(before)  # read
    with torch.no_grad():
        for p in lin.parameters():
            p.add_(torch.randn_like(p) * 1e-3)
    held = group.take_read()
    assert held is not None and held[0] is before
    update = group.subtract(*held)
    now = torch.cat([lin.weight.detach().reshape(-1), lin.bias.detach()])
    assert update is before and torch.equal(update, now - kept)
    group.recycle(update)  # read: the next step's weights reuse it
    assert group.fill_weights(hold=False) is before
    lin.bias.data = torch.zeros(3)  # a new size: stale
    group.recycle(before)
    assert group.fill_weights(hold=True) is None and group.stale
    assert group.take_read() is None  # nothing held: no wait

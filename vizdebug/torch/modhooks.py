"""The module hooks of :class:`~vizdebug.torch.watcher.Watch`: outputs, output gradients.

On a hooked step (statistics recorded, the first step, ``sentinel="exact"``, a live debugger
client) every module's forward hook finds the float tensors in what it returned, hands the
selected ones to the statistics worker, keeps the flight recorder's references and hangs a
hook on the autograd node behind each output for its gradient (see
:func:`~vizdebug.torch.hooks.hang`). On other steps only the root module's outputs are checked
(``_light_root``). Everything here runs on the training thread: no host sync.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .devstats import skip_reason
from .hooks import Slot, hang, iter_tensors
from .inplace import WriteGuard
from .live import TorchLive
from .recorder import Call, FlightRecorder
from .sentinel import Sentinel
from .state import Options, StepState
from .statqueue import StatQueue

__all__ = ["GradHook", "ModuleHooks"]

_no_torch_function = torch._C.DisableTorchFunction

#: An output a gradient hook serves: slot, call, output index, path, whether it is recorded.
GradHook = tuple[Slot, int, int, str, bool]


class ModuleHooks:
    """The hooks of every module on a hooked step, and of the root on every step.

    Args:
        options: The watch's options (``what``).
        state: The step's state (read: flags, step, calls; written: calls, hung, shapes).
        stats: Where recorded outputs and output gradients go.
        sentinel: Flags output gradients and holds the root outputs.
        recorder: The flight recorder's references to each module call.
        guard: Copies recorded outputs before in-place writes (active on hooked forwards).
        live: The live debugger's hook points, if served.
        root_done: Called when the root module's forward returned (the step clock's part).
    """

    def __init__(
        self,
        options: Options,
        state: StepState,
        stats: StatQueue,
        sentinel: Sentinel,
        recorder: FlightRecorder,
        guard: WriteGuard,
        live: TorchLive | None,
        root_done: Callable[[Any], None],
    ) -> None:
        self.options, self.state, self.stats = options, state, stats
        self.sentinel, self.recorder, self.guard, self.live = sentinel, recorder, guard, live
        self.root_done = root_done

    def forward(self, slot: Slot, module: torch.nn.Module, args: Any, output: Any) -> None:
        """A module's forward hook (one ``functools.partial`` per slot)."""
        state = self.state
        if state.closed or state.evaluating:
            return
        if self.guard.active:
            # vizdebug's own reads of tensor attributes skip the guard's mode (each would go
            # through Python's torch-function dispatch: ~800 calls a ResNet-18 step)
            with _no_torch_function():
                self._forward_in(slot, args, output)
        else:
            self._forward_in(slot, args, output)

    def _forward_in(self, slot: Slot, args: Any, output: Any) -> None:
        call = self.state.calls[slot.index]
        self.state.calls[slot.index] = call + 1
        if self.state.replaying:
            self._record_forward(slot, call, args, self._outputs(slot, output))
            return
        live = self.live
        armed = live is not None and live.debugger.armed
        if self.state.hooked:
            self._record_forward(slot, call, args, self._outputs(slot, output))
        elif armed:
            self._live_grads(slot, call, self._outputs(slot, output))
        elif slot.index == 0 and self.state.sentinel_on:
            self._light_root(self._outputs(slot, output))
        if armed and live is not None:
            live.forward(slot.index, slot.name, slot.type, call, self.state.step, args, output)
        if slot.index == 0:
            self.root_done(output)

    def _outputs(self, slot: Slot, output: Any) -> tuple[tuple[str, torch.Tensor], ...]:
        # the common case first: one plain float tensor (no generator, no reasons)
        if (
            type(output) is torch.Tensor
            and output.dtype.is_floating_point
            and output.layout is torch.strided
            and not output.is_meta
        ):
            return (("", output),)
        return self._float_leaves(slot, output)

    def _light_root(self, outs: tuple[tuple[str, torch.Tensor], ...]) -> None:
        """A step without module hooks: check the root outputs, keep what a replay needs."""
        self.sentinel.roots += [t for _, t in outs]
        call = self.state.root_call
        if call is not None and torch.is_grad_enabled():
            for _, t in outs:
                if t.requires_grad:
                    call.catch(t, self.sentinel.light)

    def _live_grads(
        self, slot: Slot, call: int, outs: tuple[tuple[str, torch.Tensor], ...]
    ) -> None:
        """The live debugger's backward hook points on a step without module hooks."""
        if torch.is_grad_enabled():
            for k, (path, t) in enumerate(outs):
                if t.requires_grad:
                    hang(t, self.on_grad, [(slot, call, k, path, False)], False)

    def _float_leaves(self, slot: Slot, output: Any) -> tuple[tuple[str, torch.Tensor], ...]:
        outs: list[tuple[str, torch.Tensor]] = []
        for path, t in iter_tensors(output):
            reason = skip_reason(t)
            if reason is None:
                outs.append((path, t))
            else:
                self.stats.skip(slot.name + path, "output", reason)
        return tuple(outs)

    def _record_forward(
        self, slot: Slot, call: int, args: Any, outs: tuple[tuple[str, torch.Tensor], ...]
    ) -> None:
        state, what = self.state, self.options.what
        sentinel = state.sentinel_on
        record = state.recording and slot.selected and not state.replaying
        recorded = None
        if sentinel:
            recorded = Call(slot.name, slot.type, call, args, outs)
            self.recorder.record(recorded)
            if slot.index == 0:
                self.sentinel.roots += [t for _, t in outs]
        guard = self.guard if self.guard.active else None
        if record and "activations" in what:
            for k, (path, t) in enumerate(outs):
                entry = self.stats.tensor(slot.name + path, "output", call, t)
                if guard is not None:
                    guard.hold(t, entry, recorded, k)
        elif guard is not None and recorded is not None:
            for k, (_, t) in enumerate(outs):
                guard.hold(t, None, recorded, k)
        hung: list[tuple[torch.Tensor, Any, list[GradHook]]] = []
        live = self.live
        armed = live is not None and live.debugger.armed  # its backward hook points
        if (sentinel or armed or (record and "gradients" in what)) and torch.is_grad_enabled():
            for k, (path, t) in enumerate(outs):
                if t.requires_grad:
                    site = (slot, call, k, path, record)
                    node = t.grad_fn
                    # a container returning the tensor its last child returned (a Sequential,
                    # a TransformerEncoder): the child's gradient hook serves both
                    sites = next((s for u, n, s in state.hung if u is t and n is node), None)
                    if sites is None:
                        sites = [site]
                        hang(t, self.on_grad, sites, sentinel)
                    else:  # the container's gradient is met before its child's (backward)
                        sites.insert(0, site)
                    hung.append((t, node, sites))
        state.hung = hung
        if state.need_structure and call == 0 and not state.replaying:
            state.shapes[slot.name] = tuple(tuple(t.shape) for _, t in outs)

    def on_grad(
        self,
        sites: list[GradHook],
        sentinel: bool,
        nr: int,
        grads: tuple[torch.Tensor | None, ...],
    ) -> None:
        """The gradient pre-hook hung on each output (see :func:`~vizdebug.torch.hooks.hang`)."""
        grad = grads[nr]
        state = self.state
        if grad is None or state.closed:
            return
        if sentinel:
            self.sentinel.backward([(s.name, s.type, call, k) for s, call, k, _, _ in sites], grad)
        live = self.live
        armed = live is not None and live.debugger.armed and not state.replaying
        for slot, call, _, path, record in sites:
            if record and "gradients" in self.options.what:
                self.stats.tensor(slot.name + path, "grad_output", call, grad)
            if armed and live is not None:
                live.backward(slot.index, slot.name, slot.type, call, state.step, path, grad)

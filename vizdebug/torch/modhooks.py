"""The module hooks of :class:`~vizdebug.torch.watcher.Watch`: outputs, output gradients.

On a hooked step (statistics recorded, the first step, ``sentinel="exact"``, a live debugger
client) every module's forward hook finds the float tensors in what it returned, hands the
selected ones to the statistics worker, keeps the flight recorder's references and hangs a
hook on the autograd node behind each output for its gradient (see
:func:`~vizdebug.torch.hooks.hang`). On other steps only the root module's outputs are checked
(:meth:`ModuleHooks._light_root`). Everything here runs on the training thread: no host sync.
"""

from __future__ import annotations

from typing import Any

import torch

from ..writer import Writer
from .devstats import dtype_name, skip_reason, stats_row
from .flat import FlatGroup
from .hooks import Slot, hang, iter_tensors
from .inplace import WriteGuard
from .live import TorchLive
from .recorder import Call, FlightRecorder
from .replay import RootCall
from .sentinel import Sentinel
from .worker import Entry, StatsWorker

__all__ = ["GradHook", "ModuleHooks"]

_no_torch_function = torch._C.DisableTorchFunction

#: An output a gradient hook serves: slot, call, output index, path, whether it is recorded.
GradHook = tuple[Slot, int, int, str, bool]


class ModuleHooks:
    """The module-hook half of :class:`~vizdebug.torch.watcher.Watch` (a mixin)."""

    writer: Writer
    what: frozenset[str]
    offload: bool
    bins: int
    _closed: bool
    _evaluating: int
    _guard: WriteGuard
    _calls: list[int]
    _replaying: bool
    _live: TorchLive | None
    _hooked: bool
    _sentinel_on: bool
    _sentinel: Sentinel
    _step: int
    _root_call: RootCall | None
    _recording: bool
    _recorder: FlightRecorder
    _need_structure: bool
    _shapes: dict[str, tuple[tuple[int, ...], ...]]
    _worker: StatsWorker
    _entries: list[Entry]
    _skipped: set[tuple[str, str]]
    #: The outputs the last hooked module call hung a gradient hook on (tensor, node, sites).
    _hung: list[tuple[torch.Tensor, Any, list[GradHook]]]

    def _root_done(self, output: Any) -> None:
        raise NotImplementedError

    def _forward(self, slot: Slot, module: torch.nn.Module, args: Any, output: Any) -> None:
        if self._closed or self._evaluating:
            return
        if self._guard.active:
            # vizdebug's own reads of tensor attributes skip the guard's mode (each would go
            # through Python's torch-function dispatch: ~800 calls a ResNet-18 step)
            with _no_torch_function():
                self._forward_in(slot, args, output)
        else:
            self._forward_in(slot, args, output)

    def _forward_in(self, slot: Slot, args: Any, output: Any) -> None:
        call = self._calls[slot.index]
        self._calls[slot.index] = call + 1
        if self._replaying:
            self._record_forward(slot, call, args, self._outputs(slot, output))
            return
        live = self._live
        armed = live is not None and live.debugger.armed
        if self._hooked:
            self._record_forward(slot, call, args, self._outputs(slot, output))
        elif armed:
            self._live_grads(slot, call, self._outputs(slot, output))
        elif slot.index == 0 and self._sentinel_on:
            self._light_root(self._outputs(slot, output))
        if armed and live is not None:
            live.forward(slot.index, slot.name, slot.type, call, self._step, args, output)
        if slot.index == 0:
            self._root_done(output)

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
        self._sentinel.roots += [t for _, t in outs]
        call = self._root_call
        if call is not None and torch.is_grad_enabled():
            for _, t in outs:
                if t.requires_grad:
                    call.catch(t, self._sentinel.light)

    def _live_grads(
        self, slot: Slot, call: int, outs: tuple[tuple[str, torch.Tensor], ...]
    ) -> None:
        """The live debugger's backward hook points on a step without module hooks."""
        if torch.is_grad_enabled():
            for k, (path, t) in enumerate(outs):
                if t.requires_grad:
                    hang(t, self._on_grad, [(slot, call, k, path, False)], False)

    def _float_leaves(self, slot: Slot, output: Any) -> tuple[tuple[str, torch.Tensor], ...]:
        outs: list[tuple[str, torch.Tensor]] = []
        for path, t in iter_tensors(output):
            reason = skip_reason(t)
            if reason is None:
                outs.append((path, t))
            else:
                self._skip(slot.name + path, "output", reason)
        return tuple(outs)

    def _record_forward(
        self, slot: Slot, call: int, args: Any, outs: tuple[tuple[str, torch.Tensor], ...]
    ) -> None:
        sentinel = self._sentinel_on
        record = self._recording and slot.selected and not self._replaying
        recorded = None
        if sentinel:
            recorded = Call(slot.name, slot.type, call, args, outs)
            self._recorder.record(recorded)
            if slot.index == 0:
                self._sentinel.roots += [t for _, t in outs]
        guard = self._guard if self._guard.active else None
        if record and "activations" in self.what:
            for k, (path, t) in enumerate(outs):
                entry = self._stat(slot.name + path, "output", call, t)
                if guard is not None:
                    guard.hold(t, entry, recorded, k)
        elif guard is not None and recorded is not None:
            for k, (_, t) in enumerate(outs):
                guard.hold(t, None, recorded, k)
        hung: list[tuple[torch.Tensor, Any, list[GradHook]]] = []
        if (sentinel or (record and "gradients" in self.what)) and torch.is_grad_enabled():
            for k, (path, t) in enumerate(outs):
                if t.requires_grad:
                    site = (slot, call, k, path, record)
                    node = t.grad_fn
                    # a container returning the tensor its last child returned (a Sequential,
                    # a TransformerEncoder): the child's gradient hook serves both
                    sites = next((s for u, n, s in self._hung if u is t and n is node), None)
                    if sites is None:
                        sites = [site]
                        hang(t, self._on_grad, sites, sentinel)
                    else:
                        sites.append(site)
                    hung.append((t, node, sites))
        self._hung = hung
        if self._need_structure and call == 0 and not self._replaying:
            self._shapes[slot.name] = tuple(tuple(t.shape) for _, t in outs)

    def _on_grad(
        self,
        sites: list[GradHook],
        sentinel: bool,
        nr: int,
        grads: tuple[torch.Tensor | None, ...],
    ) -> None:
        grad = grads[nr]
        if grad is None or self._closed:
            return
        if sentinel:
            self._sentinel.backward([(s.name, s.type, call, k) for s, call, k, _, _ in sites], grad)
        live = self._live
        armed = live is not None and live.debugger.armed and not self._replaying
        for slot, call, _, path, record in sites:
            if record and "gradients" in self.what:
                self._stat(slot.name + path, "grad_output", call, grad)
            if armed and live is not None:
                live.backward(slot.index, slot.name, slot.type, call, self._step, path, grad)

    def _stat(self, name: str, role: str, call: int, t: torch.Tensor) -> Entry | None:
        """Queue ``t``'s statistics; returns the worker's entry (None: computed in stream
        order on the device, which an in-place op queued later cannot overtake)."""
        # the worker reads without grad mode: no detach (a tenth of this hook's time), and
        # fills in the dtype and shape
        if self.offload and t.is_cpu:
            entry = Entry(name, role, call, "", (), t, t._version)
            self._worker.submit(entry)
            self._entries.append(entry)
            return entry
        entry = Entry(name, role, call, dtype_name(t), tuple(t.shape), None, t._version)
        entry.row = stats_row(t, bins=self.bins)
        self._entries.append(entry)
        return None

    def _stat_flat(self, group: FlatGroup, role: str, flat: torch.Tensor) -> None:
        """Statistics of a flat copy of parameters (:mod:`.flat`): one entry, a row per part;
        the group takes the copy back once it is read."""
        parts = group.parts
        if self.offload and flat.is_cpu:
            entry = Entry(
                "parameters", role, 0, "", (), flat, flat._version, parts=parts,
                recycle=group.recycle,
            )  # fmt: skip
            self._worker.submit(entry)
            self._entries.append(entry)
            return
        views = torch.split(flat, parts.sizes)
        for name, shape, part in zip(parts.names, parts.shapes, views, strict=True):
            self._stat(name, role, 0, part.view(shape))
        group.recycle(flat)  # the device reads in stream order, before any later copy into it

    def _skip(self, name: str, role: str, reason: str) -> None:
        if (name, reason) not in self._skipped:
            self._skipped.add((name, reason))
            self.writer.note("vizdebug/torch", f"{name or '(root)'} {role} skipped: {reason}")

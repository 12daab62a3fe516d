"""The parameters' values, gradients and updates of a recorded step, each in one flat tensor.

Weight and update statistics need a copy of the weights from before the optimizer step (the
values the forward pass used; the update is the difference). One clone per parameter, then
one ``_foreach_sub`` result per parameter, and one statistics entry for each, cost the
Transformer benchmark 52 allocations and 52 entries a step, each touched in Python on the
training thread, the statistics worker and the writer (a step with weights and updates
recorded read about 5% slower than one without). Here the selected parameters of one device
and dtype are copied by one call into one new tensor (``flatten_dense_tensors``, the
primitive DDP buckets use), and each flat tensor is one :class:`~vizdebug.torch.worker.Entry`
whose :class:`Parts` give one statistics row per parameter. The update is written into that
same tensor once the worker has read the weights from it (``now - before`` in one pass, the
subtraction a second copy would have made, bit for bit): a second flat copy was 47 MB more on a
ResNet-18, a third of the memory every-step recording added. The gradients are copied the
same way up to :data:`FLAT_GRAD_BYTES` a group (beyond it they go by reference, one entry
each). The copies go into tensors the group keeps while consecutive steps are recorded: the
worker gives each back once it has read it (:meth:`FlatGroup.recycle`), and the next copy
reuses it. A fresh
tensor of a ResNet-18's 47 MB is new memory the kernel maps and zeroes page by page: 56 ms a
copy against 5 ms into a reused one (three copies a step made every-step recording cost 1.9x
a step). The watch drops the spares when the next step records nothing.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence

import torch

__all__ = ["FlatGroup", "Parts", "flat_groups"]

#: Bytes of gradients a group copies flat; a larger group hands its gradients over by reference
#: (a copy is memory that lives while the watch records, where weights and updates need a copy
#: anyway: a ResNet-18's three copies would be 141 MB). Gradients by reference are safe from
#: ``optimizer.zero_grad(set_to_none=False)``, which waits for the worker (see the watch).
FLAT_GRAD_BYTES = 16 << 20

#: Flat tensors of a group alive at once (handed out or kept as spares): the weights (which
#: become the update), plus the gradients where they are copied. A copy past it waits (up to
#: :data:`WAIT_SECONDS`) for the worker to give one back rather than map new memory: a
#: ResNet-18's is 47 MB a tensor, and a worker a step behind held four at once.
_LIVE = 1
#: How long a copy waits for a tensor the worker has not given back yet.
WAIT_SECONDS = 10.0

#: Dtypes whose parameters are copied flat (the statistics kernel reads them); others keep
#: one entry per parameter.
_FLAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


class Parts:
    """The consecutive segments of a flat tensor: one parameter each, one statistics row each.

    Attributes:
        names: Parameter names, in order.
        shapes: Their shapes.
        sizes: Their element counts (the segment lengths).
    """

    __slots__ = ("names", "shapes", "sizes")

    def __init__(self, names: Sequence[str], shapes: Sequence[tuple[int, ...]]) -> None:
        self.names = tuple(names)
        self.shapes = tuple(shapes)
        self.sizes = [math.prod(s) for s in self.shapes]

    def __len__(self) -> int:
        return len(self.names)


class FlatGroup:
    """The selected parameters of one device and floating dtype.

    Attributes:
        params: The parameters, in ``named_parameters()`` order.
        parts: Their names, shapes and sizes.
        total: Their element count.
    """

    __slots__ = (
        "_cond", "_held", "_live", "_out", "_read", "_spares", "device", "dtype", "params",
        "parts", "stale", "total",
    )  # fmt: skip

    def __init__(self, named: Sequence[tuple[str, torch.nn.Parameter]]) -> None:
        self.params: list[torch.Tensor] = [p for _, p in named]
        self.parts = Parts([n for n, _ in named], [tuple(p.shape) for _, p in named])
        self.total = sum(self.parts.sizes)
        first = self.params[0] if self.params else torch.empty(0)
        #: The dtype and device the group was made for (what its flat tensors hold).
        self.dtype, self.device = first.dtype, first.device
        #: Flat tensors read by the worker, with their per-parameter views, to copy into.
        self._spares: list[tuple[torch.Tensor, list[torch.Tensor]]] = []
        #: Flat tensors handed out and not given back yet.
        self._out = 0
        #: Weights kept for their update (:meth:`hold`), and those of them the worker has read.
        self._held: list[torch.Tensor] = []
        self._read: list[tuple[torch.Tensor, list[torch.Tensor]]] = []
        size = self.params[0].element_size() if self.params else 4
        self._live = _LIVE + (self.total * size <= FLAT_GRAD_BYTES)  # gradients copied too
        self._cond = threading.Condition()
        #: A parameter no longer matches the layout (seen by the worker): regroup.
        self.stale = False

    def recycle(self, flat: torch.Tensor) -> None:
        """Give back a flat tensor of this group that the worker has read (any thread)."""
        views = self._views(flat) if flat.numel() == self.total else None
        with self._cond:
            self._out = max(0, self._out - 1)
            if views is not None and any(f is flat for f in self._held):
                self._read.append((flat, views))  # for its update, not for any copy
            elif views is not None and len(self._spares) + self._out < self._live:
                self._spares.append((flat, views))
            self._cond.notify_all()

    def _views(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """A flat tensor's per-parameter views."""
        splits = torch.split(flat, self.parts.sizes)
        return [v.view(shape) for v, shape in zip(splits, self.parts.shapes, strict=True)]

    def unhold(self, flat: torch.Tensor) -> None:
        """No update will be made in ``flat`` (its step ended without an optimizer step): it
        becomes a spare once read, or now if it was read already."""
        with self._cond:
            self._held = [f for f in self._held if f is not flat]
            read = [r for r in self._read if r[0] is flat]
            self._read = [r for r in self._read if r[0] is not flat]
            for r in read:
                if len(self._spares) + self._out < self._live:
                    self._spares.append(r)

    def hold(self, flat: torch.Tensor) -> None:
        """Keep a copy of the weights for :meth:`update` once it is read (no other copy
        reuses it meanwhile)."""
        with self._cond:
            self._held.append(flat)

    def drop_spares(self) -> None:
        """Free the kept tensors (the next step records nothing)."""
        with self._cond:
            self._spares = []
            self._held, self._read = [], []

    def _spare(self) -> tuple[torch.Tensor, list[torch.Tensor]] | None:
        """A spare to copy into, waiting for the worker while too many are out."""
        with self._cond:
            if not self._spares and self._out >= self._live:
                self._cond.wait_for(lambda: bool(self._spares), WAIT_SECONDS)
            return self._spares.pop() if self._spares else None

    def fill_weights(self, hold: bool) -> torch.Tensor | None:
        """The parameters' values copied into a spare flat tensor (a new one when none is
        free), held for their update if ``hold``; None when the layout is stale (see
        :meth:`copy`: :attr:`stale` then tells the watch to regroup).

        Called by the statistics worker, while the forward and backward passes run: the
        parameters do not change until the optimizer step, which waits for this read. The
        worker reads in order, so the previous step's update, the usual spare, was read first.
        """
        with self._cond:
            spare = self._spares.pop() if self._spares else None
        if spare is None:
            flat = torch.empty(self.total, dtype=self.dtype, device=self.device)
            spare = (flat, self._views(flat))
        flat, views = spare
        if self.moved():
            self.stale = True
            return None
        with torch.no_grad():
            torch._foreach_copy_(views, self.params)
        with self._cond:
            self._out += 1
            if hold:
                self._held.append(flat)
        return flat

    def take_read(self) -> tuple[torch.Tensor, list[torch.Tensor]] | None:
        """The weights :meth:`fill_weights` held, once the worker has read them (waits up to
        :data:`WAIT_SECONDS`); None when there are none."""
        with self._cond:
            self._cond.wait_for(lambda: bool(self._read) or not self._held, WAIT_SECONDS)
            if not self._read:
                return None
            flat, views = self._read.pop(0)
            self._held = [f for f in self._held if f is not flat]
            self._out += 1
            return flat, views

    def subtract(self, flat: torch.Tensor, views: list[torch.Tensor]) -> torch.Tensor | None:
        """The update written into the weights' tensor: the parameters now minus ``flat`` (the
        very subtraction a second copy would make, bit for bit, in one pass), right after the
        optimizer step; None when the layout is stale."""
        if self.moved():
            self.stale = True
            return None
        with torch.no_grad():
            for p, v in zip(self.params, views, strict=True):
                torch.sub(p, v, out=v)
        return flat

    def release_held(self) -> None:
        """No update follows (the step ended without its optimizer step): held weights
        become spares once read."""
        with self._cond:
            self._held = []
            for r in self._read:
                if len(self._spares) + self._out < self._live:
                    self._spares.append(r)
            self._read = []

    def moved(self) -> bool:
        """Whether a parameter changed shape, dtype or device since the group was made (code
        that assigned ``p.data``, cast or moved the model): regroup then."""
        dtype, device = self.dtype, self.device
        return any(
            p.shape != shape or p.dtype != dtype or p.device != device
            for p, shape in zip(self.params, self.parts.shapes, strict=True)
        )

    def copy(self) -> torch.Tensor | None:
        """The parameters' values, concatenated into one new 1-D tensor (one call); None when
        their sizes or devices are no longer those they were grouped by (code that assigned
        ``p.data`` or moved some of them: regroup then)."""
        return self._flatten(self.params)

    def grads(self) -> torch.Tensor | None:
        """The parameters' gradients in one new 1-D tensor; None when a parameter has no
        gradient or a sparse one, or the group's gradients are over :data:`FLAT_GRAD_BYTES`.

        A copy, where the gradients' own tensors would be read later by reference: the
        statistics are of the gradients the optimizer step used, whatever ``zero_grad`` does
        to them afterwards.
        """
        grads = [p.grad for p in self.params]
        if any(g is None or g.layout is not torch.strided for g in grads):
            return None
        first = grads[0]
        if first is None or self.total * first.element_size() > FLAT_GRAD_BYTES:
            return None
        dense: list[torch.Tensor] = grads  # type: ignore[assignment]
        return self._flatten(dense)

    def _flatten(self, tensors: list[torch.Tensor]) -> torch.Tensor | None:
        flat = self._copy(tensors)
        if flat is not None:
            with self._cond:
                self._out += 1
        return flat

    def _copy(self, tensors: list[torch.Tensor], reuse: bool = True) -> torch.Tensor | None:
        first = tensors[0]
        spare = self._spare() if reuse else None
        if spare is not None:
            flat, views = spare
            if any(
                t.device != flat.device or t.dtype != flat.dtype or t.shape != v.shape
                for t, v in zip(tensors, views, strict=True)
            ):
                return None  # moved, resized or cast under the watch: regroup
            with torch.no_grad():
                torch._foreach_copy_(views, tensors)
            return flat
        with torch.no_grad():
            if len(tensors) == 1:  # flatten_dense_tensors returns a single tensor's view
                flat = first.detach().reshape(-1).clone()
            else:
                try:
                    flat = torch._C._nn.flatten_dense_tensors(tensors)
                except RuntimeError:  # moved to several devices under the watch: regroup
                    return None
        return flat if flat.numel() == self.total else None

    def update(self, before: torch.Tensor) -> torch.Tensor | None:
        """The parameters' values now minus ``before`` (from :meth:`copy`), written into
        ``before`` itself; None when the layout is stale (``before`` is given back then).

        ``before`` must be held (:meth:`hold`) and handed to the worker (or given back with
        :meth:`recycle`): this waits until the worker has read it, up to :data:`WAIT_SECONDS`,
        and then makes the update in a new tensor rather than write under a read.
        """
        with self._cond:
            self._cond.wait_for(lambda: any(f is before for f, _ in self._read), WAIT_SECONDS)
            at = next((i for i, (f, _) in enumerate(self._read) if f is before), -1)
            views = self._read.pop(at)[1] if at >= 0 else None
            self._held = [f for f in self._held if f is not before]
            self._out += 1
        params = self.params
        if views is None:  # not read in time: a second tensor, as the worker may still read
            now = self._copy(params, reuse=False)
            if now is None or now.dtype != before.dtype:
                self.recycle(now if now is not None else torch.empty(0))
                return None
            return now.sub_(before)
        update = self.subtract(before, views)
        if update is None:  # moved, resized or cast in the step: regroup
            self.recycle(before)
        return update


def flat_groups(
    params: Sequence[tuple[str, torch.nn.Parameter, bool]],
) -> tuple[list[FlatGroup], list[tuple[str, torch.nn.Parameter]]]:
    """The selected parameters as flat groups (one per device and dtype), and the selected
    parameters that cannot be copied flat (sparse, meta or not of a floating dtype the
    statistics kernel reads), which keep an entry of their own."""
    groups: dict[tuple[torch.device, torch.dtype], list[tuple[str, torch.nn.Parameter]]] = {}
    single: list[tuple[str, torch.nn.Parameter]] = []
    for name, p, selected in params:
        if not selected:
            continue
        if p.dtype in _FLAT_DTYPES and p.layout is torch.strided and not p.is_meta:
            groups.setdefault((p.device, p.dtype), []).append((name, p))
        else:
            single.append((name, p))
    return [FlatGroup(named) for named in groups.values()], single

"""The NaN/Inf sentinel: a cheap check every step, the search for the origin on a flagged step.

Detection. A NaN or Inf produced in the forward pass reaches the root module's outputs (so the
loss) and, through the backward pass, the gradients; one produced in the backward pass is in
an output gradient and, unless masked, in parameter gradients. What a step checks:

* on a hooked step (every module hooked: a recorded step, ``sentinel="exact"``), the root
  outputs and every output gradient, flagged by its gradient hook while the gradient is still
  in cache (and the gradient kept by reference, up to ``keep_bytes``);
* on any other step, the root outputs and the parameter gradients, before the optimizer step.
  A flagged step is then replayed with every module hooked (see :mod:`.replay`) and searched
  like a hooked step.

A CPU tensor is read at once by the C kernel (:mod:`.finite`: exponent bits, no dispatch);
any other tensor is reduced on its device (a sum in its hook, one fused ``_foreach_norm`` at
the end) and the step's tensor flags are read back in one host read of one small stacked
tensor. NaN and Inf always propagate into a sum or a norm; a sum of huge finite values can
overflow, which the search below then finds to be no finding. Reducing every activation as
well, in its own hook, cost 19% of a step of the memory-bound digits CNN (measured); the
activations' check is left to the propagation.

Localization, over the references the flight recorder and the hooks kept: the weights (a NaN
weight makes every output NaN), then each module output in execution order, then each output
gradient in backward order, then parameter gradients; the first tensor with a non-finite value
is the site, confirmed and counted exactly. A module output that already had a non-finite
input is reported as such; a non-finite output gradient is blamed on the backward of the
modules that consumed that output (their own output gradients were finite).

What detection does not see: a non-finite forward value masked out before it reaches the root
outputs (``torch.where``, ``nan_to_num``) on a step whose gradients stay finite; on a step
without module hooks, a non-finite backward value masked before it reaches any parameter
gradient (a ReLU's backward zeroes it); and a parameter gradient that overflows from finite
inputs (the weights it produces are non-finite, which the next step finds). None of these
changes the gradients the optimizer applies.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..adapters import NonFiniteError, NonFiniteWarning
from .finite import Flag, finite_flag, is_ok, scan
from .recorder import Call, FlightRecorder

__all__ = [
    "Finding",
    "GradSite",
    "NonFiniteError",
    "NonFiniteWarning",
    "Sentinel",
    "Site",
    "count_nonfinite",
]


@dataclass(frozen=True, slots=True)
class Site:
    """Where a checked tensor came from.

    Attributes:
        module: Qualified module name ("" for the root).
        module_type: Its class name.
        phase: "forward", "backward" or "optimizer".
        role: "output", "grad_output", "grad" (parameter gradient) or "weight".
        call: Call index of the module within the step.
        index: Position of the tensor among the module's outputs (0 for parameters).
        param: Parameter name for parameter sites.
        io: Index of the module call in the flight recorder (-1 if none).
        step: The step the tensor belongs to, when not the step being checked (-1).
    """

    module: str
    module_type: str
    phase: str
    role: str
    call: int = 0
    index: int = 0
    param: str = ""
    io: int = -1
    step: int = -1

    def describe(self) -> str:
        """A human phrase such as ``output 0 of module 'fc1' (Linear), call 0``."""
        where = (
            f"module {self.module!r} ({self.module_type})"
            if self.module
            else (f"the root module ({self.module_type})")
        )
        if self.param:
            what = "gradient" if self.role == "grad" else "value after the optimizer step"
            return f"{what} of parameter {self.param!r} of {where}"
        call = f", call {self.call}" if self.call else ""
        return f"{self.role} {self.index} of {where}{call}"


_HALF = (torch.float16, torch.bfloat16)

#: An output gradient's site as kept by its hook: module name, module type, call, output index.
GradSite = tuple[str, str, int, int]


@dataclass(frozen=True, slots=True)
class Finding:
    """The first non-finite value of a step, traced to its site."""

    kind: str
    site: Site
    role: str
    message: str
    nan: int = 0
    posinf: int = 0
    neginf: int = 0
    step: int = 0


def count_nonfinite(t: torch.Tensor | None) -> tuple[int, int, int]:
    """``(nan, posinf, neginf)`` counts of a tensor (host sync: use after detection only)."""
    if t is None or not t.dtype.is_floating_point or t.numel() == 0:
        return 0, 0, 0
    x = t.detach()
    nan = int(torch.isnan(x).sum())
    pos = int((x == math.inf).sum())
    neg = int((x == -math.inf).sum())
    return nan, pos, neg


class Sentinel:
    """The per-step detection check and, on a flagged step, the search for the first site.

    Args:
        recorder: The flight recorder holding the step's module calls (forward order).
        keep_bytes: Cap on the bytes of output gradients kept by reference; beyond it a
            gradient is reduced in its hook (its flag is kept, its counts are not).
    """

    def __init__(self, recorder: FlightRecorder, keep_bytes: int = 256 << 20) -> None:
        self.recorder = recorder
        self.keep_bytes = keep_bytes
        self.reset()

    def backward(self, sites: Sequence[GradSite], grad: torch.Tensor) -> None:
        """Flag an output gradient (backward order) and keep it, up to ``keep_bytes``.

        The flag is taken here, while the gradient is still in the cache it was just written
        to: at the end of the step the same reduction reads it back from memory, measured three
        times slower on the digits CNN. A gradient checked finite at once (on CPU) is not kept.
        ``sites``: the outputs it is the gradient of (a container returning its child's tensor).
        """
        flag = finite_flag(grad)
        held = False
        if flag is not True:
            size = grad.numel() * grad.element_size()
            held = self._kept + size <= self.keep_bytes
            if held:
                self._kept += size
        for site in sites:
            self.flags.append(flag)
            self.grads.append(grad if held else None)
            self.grad_sites.append(site)

    def reset(self) -> None:
        """Forget the step."""
        #: Root-module outputs of the step.
        self.roots: list[torch.Tensor] = []
        self.grad_sites: list[GradSite] = []
        #: The flag of each output gradient, and the gradient unless over ``keep_bytes``.
        self.flags: list[Flag] = []
        self.grads: list[torch.Tensor | None] = []
        #: More flags of a step checked without module hooks (root output gradients).
        self.light: list[Flag] = []
        self._kept = 0

    def flagged(self, extra: Sequence[torch.Tensor] = ()) -> bool:
        """The detection check of the step; the step's one host sync (none on CPU).

        Args:
            extra: More tensors to check here (parameter gradients on a step without
                module hooks).
        """
        flags = [*self.flags, *self.light]
        if any(f is False for f in flags):
            return True
        found, tensors = scan([*self.roots, *extra])
        if found:
            return True
        pending = [f for f in flags if not isinstance(f, bool)]
        if not tensors and not pending:
            return False
        with torch.no_grad():
            if tensors:
                # one fused reduction; float32 accumulation where a half type could overflow
                low = any(t.dtype in _HALF for t in tensors)
                pending += torch._foreach_norm(tensors, 2, dtype=torch.float32 if low else None)
            # float(): the one host read (math.isfinite on the host beats a device op on CPU)
            return not math.isfinite(float(torch.stack(pending).sum()))

    @staticmethod
    def bad_weight(
        weights: Sequence[tuple[Site, torch.Tensor]],
    ) -> tuple[Site, torch.Tensor, None] | None:
        """The first weight holding a non-finite value (a NaN weight makes every output NaN)."""
        for site, p in weights:
            if sum(count_nonfinite(p)):
                return site, p, None
        return None

    def locate(
        self,
        weights: Callable[[], Sequence[tuple[Site, torch.Tensor]]],
        param_grads: Callable[[], Sequence[tuple[Site, Any]]],
    ) -> tuple[Site, torch.Tensor | None, Call | None] | None:
        """The first site holding a non-finite value: ``(site, tensor, forward call)``.

        Order: the weights (as the step's forward used them), forward outputs (execution
        order), output gradients (backward order), parameter gradients (owners that ran last
        first). ``forward call`` is the recorded call for a forward output, else None.
        """
        weight = self.bad_weight(weights())
        if weight is not None:
            return weight
        calls = self.recorder.calls
        for i, c in enumerate(calls):
            for k, (_, t) in enumerate(c.outputs):
                if not sum(count_nonfinite(t)):
                    continue
                if t._version != c.versions[k] and any(
                    t is u for later in calls[i + 1 :] for _, u in later.returned
                ):
                    continue  # changed in place later by a module that returned it: ask that one
                site = Site(c.name, c.type, "forward", "output", c.call, k)
                return site, t, c
        if self.grad_sites:
            for (name, type_, call, k), flag, g in zip(
                self.grad_sites, self.flags, self.grads, strict=True
            ):
                if not is_ok(flag) and (g is None or sum(count_nonfinite(g)) > 0):
                    site = Site(name, type_, "backward", "grad_output", call, k)
                    return site, g, None
        last = {c.name: i for i, c in enumerate(calls)}
        for site, g in sorted(param_grads(), key=lambda sg: -last.get(sg[0].module, -1)):
            if g is not None and sum(count_nonfinite(g)) > 0:
                return site, g, None
        return None

    def check(
        self,
        step: int,
        weights: Callable[[], Sequence[tuple[Site, torch.Tensor]]] = tuple,
        param_grads: Callable[[], Sequence[tuple[Site, Any]]] = tuple,
    ) -> Finding | None:
        """Check the step; on a non-finite value, name where it appeared first.

        Args:
            step: The step, for the message.
            weights: Returns the parameters with their sites (checked first when flagged).
            param_grads: Returns the parameters' gradients with their sites (checked last).
        """
        if not self.flagged():
            return None
        return self.trace(step, weights, param_grads)

    def trace(
        self,
        step: int,
        weights: Callable[[], Sequence[tuple[Site, torch.Tensor]]] = tuple,
        param_grads: Callable[[], Sequence[tuple[Site, Any]]] = tuple,
        note: str = "",
    ) -> Finding | None:
        """The finding of a flagged step: :meth:`locate`, then :meth:`finding`."""
        found = self.locate(weights, param_grads)
        if found is None:
            return None  # a norm of huge finite values overflowed: nothing is non-finite
        return self.finding(step, *found, note=note)

    def finding(
        self,
        step: int,
        site: Site,
        tensor: torch.Tensor | None,
        forward_call: Call | None,
        note: str = "",
    ) -> Finding:
        """Describe the first non-finite value found at ``site`` (``note`` ends the message)."""
        step = site.step if site.step >= 0 else step
        nan, pos, neg = count_nonfinite(tensor)
        role = site.role
        culprit = site
        detail = ""
        if forward_call is not None:
            if any(sum(count_nonfinite(t)) for t in forward_call.inputs):
                role = "input"
                detail = (
                    " It was already present in the module's input: it came from the data or "
                    "from code outside the watched submodules (e.g. a functional op in the "
                    "parent's forward)."
                )
        elif site.role == "grad_output":
            users = _innermost(self._consumers(site))
            if users:
                culprit = users[-1]
                role = "grad_input"
                detail = (
                    f" The gradient of {site.describe()} was computed by the backward of "
                    + ", ".join(f"{u.module!r} ({u.module_type})" for u in users)
                    + ", whose own output gradient was finite."
                )
            else:
                detail = (
                    " It was already non-finite when it reached this output: it comes from "
                    "the loss or from code outside the watched modules."
                )
        if tensor is None:  # a gradient over keep_bytes: only its flag was kept
            kind = "nan"
            counts = "counts n/a"
        else:
            kind = "nan" if nan or not (pos or neg) else "inf"
            counts = f"{nan} NaN, {pos} +Inf, {neg} -Inf"
        where = (
            f"module {culprit.module!r} ({culprit.module_type})"
            if culprit.module
            else f"the root module ({culprit.module_type})"
        )
        message = (
            f"step {step}: first non-finite value ({kind}) in the {site.phase} pass, produced "
            f"by {where}: {site.describe()} [{counts}].{detail}{note}"
        )
        return Finding(kind, culprit, role, message, nan, pos, neg, step)

    def _consumers(self, g: Site) -> list[Site]:
        """The module calls that took the forward output behind a grad_output site as input."""
        calls = self.recorder.calls
        produced = next(
            (
                c.returned[g.index][1]
                for c in calls
                if c.name == g.module and c.call == g.call and g.index < len(c.outputs)
            ),
            None,
        )
        if produced is None:
            return []
        return [
            Site(c.name, c.type, "backward", "grad_input", c.call)
            for c in calls
            if any(a is produced for a in c.args)
        ]


def _innermost(users: list[Site]) -> list[Site]:
    """Drop consumers that are ancestors of another consumer (a block and its first layer)."""
    names = [u.module for u in users]
    return [
        u
        for u in users
        if not any(
            n != u.module and (u.module == "" or n.startswith(u.module + ".")) for n in names
        )
    ]

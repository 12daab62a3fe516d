"""The NaN/Inf sentinel: cheap detection every step, exact localization on the flagged step.

Detection. A NaN or Inf produced in the forward pass reaches what the step produces: the root
module's outputs (so the loss), and through them the gradients. So every step the sentinel
reduces the root outputs and every module output's gradient (one sum each, in the gradient's
tensor hook: NaN and Inf always propagate into a sum), the parameter gradients before the
optimizer step and the weights after it (one fused ``_foreach_norm`` each); the flags are
stacked and read back once (the step's one host sync). Forward activations are not reduced
every step: that pass over every activation would cost as much again (measured: a reduction
per activation and gradient cost 19% of a step of the memory-bound digits CNN, this design a
fraction of it; see BENCHMARKS.md), for an answer that the gradients give anyway.

Localization, on a flagged step only. The hooks keep references (no copies) to each module's
outputs in execution order (the flight recorder and autograd keep them anyway) and to output
gradients (up to ``keep_bytes``); the sentinel counts their non-finite values in order and names
the first site: a weight after the previous update, else a forward output, else an output
gradient (backward order), else a parameter gradient. A flag that was only a sum overflowing on
huge finite values finds nothing and is no finding.

What detection does not see: a non-finite forward value masked out before it reaches the root
outputs (e.g. by ``torch.where`` or ``nan_to_num``) on a step whose gradients stay finite. It
changes nothing the step computes; recorded steps still count it in the statistics.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ..adapters import NonFiniteError, NonFiniteWarning
from .devstats import finite_flag

__all__ = [
    "Finding",
    "NonFiniteError",
    "NonFiniteWarning",
    "Sentinel",
    "Site",
    "SiteSpec",
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


#: A site as the plain tuple of :class:`Site`'s fields (cheap to make in every hook).
SiteSpec = tuple[str, str, str, str, int, int, str, int, int]


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
    """References to one step's tensors, a per-step detection check, and localization.

    Args:
        keep_bytes: Cap on the bytes of output gradients kept by reference for localization
            (forward outputs are kept by the flight recorder and autograd anyway).
    """

    def __init__(self, keep_bytes: int = 256 << 20) -> None:
        self.keep_bytes = keep_bytes
        #: Weights after the last optimizer step: sites, tensors and their norms.
        self._weights: tuple[list[SiteSpec], list[torch.Tensor], Sequence[torch.Tensor]] = (
            [],
            [],
            (),
        )
        self.reset()

    def forward(self, site: SiteSpec, t: torch.Tensor) -> int:
        """Keep a module output (execution order); returns its index."""
        self.sites.append(site)
        self.refs.append(t)
        self.versions.append(t._version)
        return len(self.sites) - 1

    def root(self, t: torch.Tensor) -> None:
        """Check this root-module output every step."""
        self.flags.append(finite_flag(t.detach()))

    def backward(self, site: SiteSpec, grad: torch.Tensor) -> None:
        """Check an output gradient (backward order); keep it, up to ``keep_bytes``."""
        flag = finite_flag(grad)
        self.flags.append(flag)
        self.grad_flags.append(flag)
        self.grad_sites.append(site)
        size = grad.numel() * grad.element_size()
        if self._kept + size <= self.keep_bytes:
            self._kept += size
            self.grads.append(grad)
        else:
            self.grads.append(None)

    def weights(self, sites: list[SiteSpec], params: list[torch.Tensor]) -> None:
        """Check the weights just updated by the optimizer, with the next step's check."""
        norms = torch._foreach_norm(params, 2, dtype=torch.float32) if params else ()
        self._weights = (sites, params, norms)

    def consumed(self, producer: int, consumer: Site) -> None:
        """Record that the output kept at ``producer`` was an input of ``consumer``."""
        self.consumers.setdefault(producer, []).append(consumer)

    def reset(self) -> None:
        """Forget the step (the weights of the last optimizer step stay to be checked)."""
        self.sites: list[SiteSpec] = []
        self.refs: list[torch.Tensor] = []
        self.versions: list[int] = []
        self.flags: list[torch.Tensor] = []
        self.grad_sites: list[SiteSpec] = []
        self.grad_flags: list[torch.Tensor] = []
        self.grads: list[torch.Tensor | None] = []
        #: For output sites: the sites (by index) of modules that took that tensor as input.
        self.consumers: dict[int, list[Site]] = {}
        self._kept = 0

    def site(self, index: int) -> Site:
        """The :class:`Site` of a kept forward output."""
        return Site(*self.sites[index])

    def flagged(self, param_grads: Sequence[torch.Tensor]) -> bool:
        """The detection check of the step; the step's one host sync."""
        flags = list(self.flags)
        if param_grads:
            flags += torch._foreach_norm(list(param_grads), 2, dtype=torch.float32)
        flags += self._weights[2]
        if not flags:
            return False
        return not bool(torch.isfinite(torch.stack(flags).sum()))

    def locate(
        self, param_grads: Sequence[tuple[SiteSpec, torch.Tensor]]
    ) -> tuple[Site, torch.Tensor | None, int] | None:
        """The first site holding a non-finite value: ``(site, tensor, index)``.

        Order: weights after the previous optimizer step, forward outputs (execution order),
        output gradients (backward order), parameter gradients. ``index`` is the forward index
        for forward outputs, -1 otherwise.
        """
        sites, params, _ = self._weights
        for spec, p in zip(sites, params, strict=True):
            if sum(count_nonfinite(p)):
                return Site(*spec), p, -1
        for i, t in enumerate(self.refs):
            if not sum(count_nonfinite(t)):
                continue
            if t._version != self.versions[i]:
                # Modified in place after its module returned: if a later module's output is
                # the same tensor (an in-place module), that module is the one to ask.
                ptr = t.data_ptr()
                if any(u.data_ptr() == ptr for u in self.refs[i + 1 :]):
                    continue
            return self.site(i), t, i
        if self.grad_flags:
            bad = (~torch.isfinite(torch.stack(self.grad_flags))).tolist()
            for spec, flag, g in zip(self.grad_sites, bad, self.grads, strict=True):
                if flag and (g is None or sum(count_nonfinite(g))):
                    return Site(*spec), g, -1
        # parameter gradients in backward order: owners that ran last come first
        last = {spec[0]: i for i, spec in enumerate(self.sites)}
        for spec, g in sorted(param_grads, key=lambda sg: -last.get(sg[0][0], -1)):
            if sum(count_nonfinite(g)):
                return Site(*spec), g, -1
        return None

    def check(
        self,
        step: int,
        inputs_of: Callable[[int], Sequence[torch.Tensor]] | None = None,
        param_grads: Sequence[tuple[SiteSpec, torch.Tensor]] = (),
    ) -> Finding | None:
        """Check the step; on a non-finite value, name where it appeared first.

        Args:
            step: The step, for the message.
            inputs_of: Returns the inputs of a recorded module call (flight recorder), used to
                tell a module that produced a NaN from one that received it.
            param_grads: The parameter gradients to check, with their sites.
        """
        grads = [g for _, g in param_grads]
        flagged = self.flagged(grads)
        found = self.locate(param_grads) if flagged else None
        self._weights = ([], [], ())
        if found is None:
            return None  # a sum of huge finite values overflowed: nothing is non-finite
        site, tensor, first = found
        step = site.step if site.step >= 0 else step
        nan, pos, neg = count_nonfinite(tensor)
        counted = tensor is not None
        role = site.role
        culprit = site
        detail = ""
        if first >= 0 and inputs_of is not None and site.io >= 0:
            bad_in = [t for t in inputs_of(site.io) if sum(count_nonfinite(t))]
            if bad_in:
                role = "input"
                detail = (
                    " It was already present in the module's input: it came from the data or "
                    "from code outside the watched submodules (e.g. a functional op in the "
                    "parent's forward)."
                )
        elif site.role == "grad_output":
            users = _innermost(self.consumers.get(self._producer_of(site), []))
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
        kind = "nan" if nan or not (pos or neg) else "inf"
        where = (
            f"module {culprit.module!r} ({culprit.module_type})"
            if culprit.module
            else f"the root module ({culprit.module_type})"
        )
        counts = f"{nan} NaN, {pos} +Inf, {neg} -Inf" if counted else "counts n/a"
        message = (
            f"step {step}: first non-finite value ({kind}) in the {site.phase} pass, produced "
            f"by {where}: {site.describe()} [{counts}].{detail}"
        )
        return Finding(kind, culprit, role, message, nan, pos, neg, step)

    def _producer_of(self, g: Site) -> int:
        # A grad_output site and the forward output site of the same tensor share module,
        # call and index; consumers are recorded against the forward site.
        for i, spec in enumerate(self.sites):
            s = Site(*spec)
            if (
                s.phase == "forward"
                and s.module == g.module
                and s.call == g.call
                and s.index == g.index
            ):
                return i
        return -1


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

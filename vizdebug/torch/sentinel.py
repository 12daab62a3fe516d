"""The NaN/Inf sentinel: one fused finiteness reduction per tensor, one check per step.

Hooks call :meth:`Sentinel.add` with each tensor they see, in execution order (forward outputs,
then output gradients and parameter gradients in backward order, then weights after the
optimizer step). ``add`` queues an ``aminmax`` of the tensor, nothing more: both values are
finite exactly when every element is, and the reduction never overflows. :meth:`Sentinel.check`
stacks the flags of the whole step and reads them back once (the one host sync of a step);
only when something is non-finite does it look further, to name the first site.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from ..adapters import NonFiniteError, NonFiniteWarning
from .devstats import finite_flags

__all__ = ["Finding", "NonFiniteError", "NonFiniteWarning", "Sentinel", "Site", "count_nonfinite"]


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


@dataclass
class Sentinel:
    """Collects per-tensor finiteness flags of one step and checks them once.

    Attributes:
        keep_bytes: Cap on the bytes of gradient tensors kept (by reference) for counting.
    """

    keep_bytes: int = 256 << 20
    sites: list[Site] = field(default_factory=list)
    flags: list[torch.Tensor] = field(default_factory=list)
    refs: list[torch.Tensor | None] = field(default_factory=list)
    #: For output sites: the sites (by index) of modules that took that tensor as input.
    consumers: dict[int, list[Site]] = field(default_factory=dict)
    _kept: int = 0

    def add(self, site: Site, t: torch.Tensor, *, keep: bool = True) -> int:
        """Queue the finiteness flags of a non-empty tensor; returns the site's index."""
        lo, hi = finite_flags(t)
        self.flags.append(lo)
        self.flags.append(hi)
        self.sites.append(site)
        if keep and self._kept < self.keep_bytes:
            self._kept += t.numel() * t.element_size()
            self.refs.append(t)
        else:
            self.refs.append(None)
        return len(self.sites) - 1

    def add_flag(self, site: Site, flag: torch.Tensor, ref: torch.Tensor | None = None) -> None:
        """Queue a ready 0-d flag (finite exactly when the tensor is), e.g. a norm."""
        self.flags.append(flag)
        self.flags.append(flag)
        self.sites.append(site)
        self.refs.append(ref)

    def consumed(self, producer: int, consumer: Site) -> None:
        """Record that the output checked at ``producer`` was an input of ``consumer``."""
        self.consumers.setdefault(producer, []).append(consumer)

    def reset(self) -> None:
        """Forget the step."""
        self.sites = []
        self.flags = []
        self.refs = []
        self.consumers = {}
        self._kept = 0

    def first_bad(self) -> int | None:
        """Index of the first non-finite site, or None; the step's one host sync."""
        if not self.flags:
            return None
        stacked = torch.stack(self.flags)
        finite = torch.isfinite(stacked)
        if bool(finite.all()):
            return None
        bad = (~finite).view(-1, 2).any(dim=1).nonzero()
        return int(bad[0, 0])

    def check(
        self, step: int, inputs_of: Callable[[int], Sequence[torch.Tensor]] | None = None
    ) -> Finding | None:
        """Check the step; on a non-finite value, name where it appeared first.

        Args:
            step: The step, for the message.
            inputs_of: Returns the inputs of a recorded module call (flight recorder), used to
                tell a module that produced a NaN from one that received it.
        """
        first = self.first_bad()
        if first is None:
            return None
        site = self.sites[first]
        step = site.step if site.step >= 0 else step
        nan, pos, neg = count_nonfinite(self.refs[first])
        role = site.role
        culprit = site
        detail = ""
        if site.role == "output" and inputs_of is not None and site.io >= 0:
            bad_in = [t for t in inputs_of(site.io) if sum(count_nonfinite(t))]
            if bad_in:
                role = "input"
                detail = (
                    " It was already present in the module's input: it came from the data or "
                    "from code outside the watched submodules (e.g. a functional op in the "
                    "parent's forward)."
                )
        elif site.role == "grad_output":
            users = _innermost(self.consumers.get(self._producer_of(first), []))
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
        counts = f"{nan} NaN, {pos} +Inf, {neg} -Inf" if sum((nan, pos, neg)) else "counts n/a"
        message = (
            f"step {step}: first non-finite value ({kind}) in the {site.phase} pass, produced "
            f"by {where}: {site.describe()} [{counts}].{detail}"
        )
        return Finding(kind, culprit, role, message, nan, pos, neg, step)

    def _producer_of(self, index: int) -> int:
        # A grad_output site and the forward output site of the same tensor share module,
        # call and index; consumers are recorded against the forward site.
        g = self.sites[index]
        for i, s in enumerate(self.sites):
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

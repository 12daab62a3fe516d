"""The step's NaN/Inf check of :class:`~vizdebug.torch.watcher.Watch`, and the replay it may need.

On a hooked step the sentinel traces exactly from what the module hooks gathered. On any other
step one fused finiteness check of the root outputs and the parameter gradients runs before the
optimizer update; a flagged step is replayed with every module hooked (:func:`.replay.replay`)
and traced from the replay. A replay that does not reproduce the value names where the check
saw it, says so, and switches the watch to exact tracing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import torch

from .finite import scan
from .graphwalk import place
from .index import ModelIndex
from .losscheck import LossCheck
from .recorder import FlightRecorder
from .replay import Tape, replay
from .report import Reporter
from .sentinel import Finding, Sentinel, Site, count_nonfinite
from .state import StepState

__all__ = ["StepCheck", "replay_target", "unreproduced"]


class StepCheck:
    """The NaN/Inf check of a step, and the replay a flagged step without module hooks needs.

    Args:
        state: The step's state (read: flags, step, updates; the replay swaps ``calls`` and
            sets ``replaying``; a replay that does not reproduce sets ``exact``).
        index: The model's modules and parameters with their sentinel sites.
        sentinel: The detection check and the search for the first site.
        recorder: The flight recorder (reset for a replay).
        reporter: What a finding becomes.
        tape: The step's root calls, for a replay.
        losses: Non-finite losses passed to ``watch.step`` (read at each check).
        target: What a replay calls.
        hook_modules: Adds or removes every module's hooks (the watch's).
    """

    def __init__(
        self,
        state: StepState,
        index: ModelIndex,
        sentinel: Sentinel,
        recorder: FlightRecorder,
        reporter: Reporter,
        tape: Tape,
        losses: LossCheck,
        target: torch.nn.Module,
        hook_modules: Callable[[bool], None],
    ) -> None:
        self.state, self.sentinel, self.recorder = state, sentinel, recorder
        self.reporter, self.tape, self.losses, self.target = reporter, tape, losses, target
        self.hook_modules = hook_modules
        self._slots = len(index.slots)
        self._grad_sites = index.grad_sites
        self._weight_sites = index.weight_sites
        self._owners = {id(p): (site.module, site.module_type) for site, p in index.grad_sites}
        # leaves among the indexed modules (a Keras layer's ParameterDict child is not one)
        parents = {slot.name.rpartition(".")[0] for slot in index.slots if slot.index}
        self._leaves = [
            (slot.name, type(m).__name__)
            for slot, m in zip(index.slots, index.modules, strict=True)
            if slot.index and slot.name not in parents
        ]
        tape.at_backward = self.root_backward

    def root_backward(self, t: torch.Tensor) -> None:
        """A root output's gradient arrived on a step without module hooks: check the output
        now, while the step's graph is whole (on CPU, where the check is a scan of its memory:
        the step's end then skips it), and place a non-finite value from the graph."""
        if self.state.replaying or self.tape.placed is not None:
            return
        found, rest = scan([t])
        if rest:
            return  # not on the CPU: checked at the step's end, as before
        if not found:
            roots = self.sentinel.roots
            roots[:] = [r for r in roots if r is not t]
            return
        try:
            self.tape.placed = place(t, self._owners, self._leaves)
        except Exception:  # an autograd binding this torch lacks: the step's end still reports
            self.tape.placed = None

    def check(self) -> Finding | None:
        """Check the step (before the optimizer update); report and return a finding."""
        state = self.state
        if not state.sentinel_on:
            return None
        if state.hooked:
            finding = self.sentinel.check(state.step, self._weights_used, self.param_grads)
        else:
            grads = [g for _, g in self.param_grads() if g is not None and not g.is_sparse]
            finding = self._replay() if self.sentinel.flagged(grads) else None
        if finding is not None:
            self.reporter.report(finding, state.step)
        self.losses.settle()
        return finding

    def _replay(self) -> Finding | None:
        """Trace a value flagged on a step without module hooks (see :mod:`.replay`).

        The step is always replayed, also when a weight is to blame: the flight recorder's
        snapshot then holds every module's inputs and outputs of the step.
        """
        s, state = self.sentinel, self.state
        step = state.step
        roots = s.roots
        root_grads = [
            (k, g) for call in self.tape.calls for k, g in enumerate(call.grads) if g is not None
        ]
        original = self.param_grads()
        s.reset()
        self.recorder.reset()
        calls, state.calls = state.calls, [0] * self._slots
        state.replaying = True
        self.hook_modules(True)
        try:
            result = replay(self.target, self.tape.calls, [p for _, p in self._grad_sites])
        finally:
            state.replaying = False
            self.hook_modules(False)
            state.calls = calls
        if not isinstance(result, str):
            sites = [site for site, _ in self._grad_sites]
            grads = lambda: list(zip(sites, result, strict=True))  # noqa: E731
            finding = s.trace(step, self._weights_used, grads)
            forward_bad = any(sum(count_nonfinite(t)) for t in roots)
            # a non-finite root output must be found in the replay's forward pass (or in the
            # weights): else the gradients fed back, non-finite through the loss, get blamed
            if finding is not None and (
                finding.site.phase == "forward" or finding.role == "weight" or not forward_bad
            ):
                return finding
        # Not reproduced: say where the check saw it, that the producer is unknown, and trace
        # exactly from now on (a one-shot fault is not blamed on the root module).
        why = f"it failed: {result}" if isinstance(result, str) else "it stayed finite"
        seen: list[tuple[str, torch.Tensor]] = [
            (f"output {k} of the root module (the forward pass)", t) for k, t in enumerate(roots)
        ]
        seen += [
            (f"the gradient reaching root output {k} (the backward pass)", g) for k, g in root_grads
        ]
        for where, t in seen:
            nan, pos, neg = count_nonfinite(t)
            if nan or pos or neg:
                state.exact = True
                placed = self.tape.placed if "forward" in where else None
                if placed is not None:
                    where += f" ({placed.text})"
                near = (
                    Site(placed.module, placed.module_type, "forward", "output")
                    if placed is not None and placed.module
                    else None
                )
                return unreproduced(step, where, why, nan, pos, neg, near)
        located = _from_parameter_gradients(original)
        if located is not None:
            state.exact = True
            site, where, (nan, pos, neg) = located
            return unreproduced(step, where, why, nan, pos, neg, site)
        return None  # a norm of huge finite values overflowed: nothing is non-finite

    def _weights_used(self) -> Sequence[tuple[Site, torch.Tensor]]:
        if not self.state.updates:
            return self._weight_sites
        # the weights this step used came from the last optimizer step
        return [
            (dataclasses.replace(site, phase="optimizer", step=self.state.step - 1), p)
            for site, p in self._weight_sites
        ]

    def param_grads(self) -> list[tuple[Site, torch.Tensor | None]]:
        """Each parameter's gradient now, with its sentinel site."""
        return [(site, p.grad) for site, p in self._grad_sites]


def replay_target(model: torch.nn.Module) -> torch.nn.Module:
    """What a replay calls: the module a DistributedDataParallel wraps (no collectives)."""
    ddp = torch.nn.parallel.DistributedDataParallel
    return model.module if isinstance(model, ddp) else model


def _from_parameter_gradients(
    grads: Sequence[tuple[Site, torch.Tensor | None]],
) -> tuple[Site, str, tuple[int, int, int]] | None:
    """Where a backward-pass value was made, from the parameter gradients alone (root outputs
    and the gradients reaching them finite): a non-finite value flows from where it is made
    towards the inputs, so it reaches the gradients of the parameters used before that point
    and not those used after it. In definition order (the order modules usually run in),
    the last parameter with a non-finite gradient marks the place, approximately."""
    bad = [(i, counts) for i, (_, g) in enumerate(grads) if sum(counts := count_nonfinite(g)) > 0]
    if not bad:
        return None
    last, counts = bad[-1]
    site = grads[last][0]
    after = next(
        (s for s, g in grads[last + 1 :] if g is not None and s.module != site.module), None
    )
    where = (
        f"the {site.describe()} in the backward pass ({len(bad)} of {len(grads)} parameters "
        "have non-finite gradients, the last of them in definition order is this one"
        + (f"; module {after.module!r}, defined after it, has finite ones" if after else "")
        + f"): the value was made at or after module {site.module!r} in forward order"
    )
    return dataclasses.replace(site, phase="backward"), where, counts


def unreproduced(
    step: int, where: str, why: str, nan: int, pos: int, neg: int, near: Site | None = None
) -> Finding:
    """The finding of a flagged step whose replay did not reproduce the value (a one-shot fault:
    Python-side state, a stateful module, data the replay did not see).

    The origin is approximate, and said to be: the site is where the step's check saw the
    value, with no module named as its producer (module "" and type "" mean unknown), or
    ``near``, the module the step's autograd graph (:mod:`.graphwalk`) or its parameter
    gradients place it at (never the root module).
    """
    kind = "nan" if nan or not (pos or neg) else "inf"
    who = (
        f"The module that produced it is approximately {near.module!r} ({near.module_type})"
        if near is not None and near.module
        else "The module that produced it is unknown"
    )
    message = (
        f"step {step}: a non-finite value ({kind}) was seen in {where} "
        f"[{nan} NaN, {pos} +Inf, {neg} -Inf]. {who} (origin approximate): replaying the "
        f"step with every module hooked, RNG state restored, did not reproduce it ({why}), so "
        "the model depends on state outside its parameters, buffers and the RNG (a one-shot "
        "fault). From now on every step is traced exactly, so a repeat is named at its module."
    )
    if near is not None and near.module:
        return Finding(kind, near, near.role, message, nan, pos, neg, step)
    site = Site("", "", "forward" if "forward" in where else "backward", "output")
    return Finding(kind, site, "output", message, nan, pos, neg, step)

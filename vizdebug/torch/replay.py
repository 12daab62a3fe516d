"""Replaying a step: how the fast sentinel finds where a NaN came from after the fact.

On a step that records no statistics the sentinel holds no module's tensors: keeping every
module output alive until the end of the step stops the allocator from reusing their memory,
measured at +14-24% of a step of the digits CNN, where the check itself costs about 1%. It
keeps only what a replay of the step needs, per call of the root module: the arguments (the
caller holds them anyway), the RNG state, the autocast and grad modes, and the gradients that
reached the root outputs. When the step's check flags a non-finite value, the watch runs the
root calls again with every module hooked and pushes the recorded output gradients back
through them (``torch.autograd.grad``, so no ``.grad`` changes), which finds the first
module to produce the value exactly as a fully hooked step would.

The replay happens before the optimizer step (or, without an optimizer, before the next root
call), so the weights are those the step used. It restores the RNG state and every buffer
(BatchNorm's running statistics) afterwards, so training goes on as if nothing had been
replayed. What it cannot restore is state a model keeps in plain Python attributes (a call
counter, a cache): a forward that depends on it may not reproduce the value. The watch then
reports where the check saw the value (the root output, or a parameter's gradient), says that
the replay did not reproduce it, and traces exactly (every module hooked) from then on.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable
from typing import Any

import torch

from .devstats import skip_reason
from .finite import Flag, finite_flag
from .graphwalk import Placement
from .hooks import hang, iter_tensors

__all__ = ["RootCall", "Tape", "grad_leaves", "replay"]


class RootCall:
    """One call of the root module: what running it again needs.

    Args:
        args, kwargs: The call's arguments.
        cuda: Whether to keep the CUDA generators' states too.
        at_backward: Called with each root output when its gradient arrives (the backward
            pass starting: the step's graph still whole), or None.
    """

    __slots__ = ("args", "at_backward", "autocast", "grad_enabled", "grads", "kwargs", "rng")

    def __init__(
        self,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        cuda: bool,
        at_backward: Callable[[torch.Tensor], None] | None = None,
    ) -> None:
        self.args = args
        self.at_backward = at_backward
        self.kwargs = kwargs
        self.rng: tuple[torch.Tensor, list[torch.Tensor]] = (
            torch.get_rng_state(),
            torch.cuda.get_rng_state_all() if cuda else [],
        )
        self.grad_enabled = torch.is_grad_enabled()
        self.autocast = [
            (dev, torch.get_autocast_dtype(dev))
            for dev in ("cpu", "cuda")
            if torch.is_autocast_enabled(dev)
        ]
        #: The gradient of each float output requiring grad, in :func:`grad_leaves` order.
        self.grads: list[torch.Tensor | None] = []

    def catch(self, t: torch.Tensor, flags: list[Flag]) -> None:
        """Keep the gradient that reaches root output ``t`` (and its flag in ``flags``)."""
        k = len(self.grads)
        self.grads.append(None)
        grads = self.grads
        at_backward = self.at_backward
        # a weak reference: the hook lives on t's own autograd node, and a strong one would
        # make a cycle (t -> node -> hook -> t) that keeps the step's graph until the cyclic
        # collector runs (a BERT-mini's 62 MB logits and their graph, +190 MB peak)
        output = weakref.ref(t) if at_backward is not None else None

        def keep(nr: int, grad_outputs: tuple[torch.Tensor | None, ...]) -> None:
            grad = grad_outputs[nr]
            if grad is not None:
                grads[k] = grad
                flags.append(finite_flag(grad))
            if at_backward is not None and output is not None:
                alive = output()
                if alive is not None:
                    at_backward(alive)

        hang(t, keep)


class Tape:
    """The root calls of the current step.

    Args:
        cuda: Whether the model has CUDA tensors (their RNG state is kept too).
    """

    def __init__(self, cuda: bool = False) -> None:
        self.cuda = cuda
        self.calls: list[RootCall] = []
        #: Called with a root output as the backward pass reaches it (see :class:`RootCall`).
        self.at_backward: Callable[[torch.Tensor], None] | None = None
        #: Where the step's graph placed a non-finite root output (:mod:`.graphwalk`).
        self.placed: Placement | None = None

    def begin(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> RootCall:
        """Record a root call about to run."""
        call = RootCall(args, kwargs, self.cuda, self.at_backward)
        self.calls.append(call)
        return call

    def reset(self) -> None:
        """Forget the step."""
        self.calls = []
        self.placed = None


def replay(
    target: torch.nn.Module, calls: list[RootCall], params: list[torch.Tensor]
) -> list[torch.Tensor | None] | str:
    """Run ``calls`` through ``target`` again, forward and backward; hooks see every tensor.

    Args:
        target: The module to call (the root, or what a DistributedDataParallel wraps).
        calls: The step's root calls, in order.
        params: Parameters whose gradients to compute (their ``.grad`` is left alone).

    Returns:
        The replayed gradients of ``params`` (None where unused, and for all when the step
        ran no backward), or why the replay failed.
    """
    if not calls:
        return [None] * len(params)
    buffers = [(b, b.detach().clone()) for b in target.buffers()]
    cuda = bool(calls[0].rng[1])
    devices = list(range(len(calls[0].rng[1]))) if cuda else []
    outputs: list[torch.Tensor] = []
    grads: list[torch.Tensor] = []
    try:
        with torch.random.fork_rng(devices=devices):
            for call in calls:
                torch.set_rng_state(call.rng[0])
                if cuda:
                    torch.cuda.set_rng_state_all(call.rng[1])
                out = _call(target, call)
                # strict=False: a forward that changed shape returns other outputs; the trace
                # then finds nothing, and the watch says the replay did not reproduce it
                leaves = zip(grad_leaves(out), call.grads, strict=False)
                pairs = [(t, g) for t, g in leaves if g is not None]
                outputs += [t for t, _ in pairs]
                grads += [g for _, g in pairs]
            wanted = [p for p in params if p.requires_grad]
            if not outputs or not wanted:
                return [None] * len(params)
            got = torch.autograd.grad(outputs, wanted, grads, allow_unused=True)
    except Exception as e:  # any failure of the user's model: the watch says why
        return f"{type(e).__name__}: {e}"
    finally:
        with torch.no_grad():
            for b, saved in buffers:
                b.copy_(saved)
    by_id = {id(p): g for p, g in zip(wanted, got, strict=True)}
    return [by_id.get(id(p)) for p in params]


def _call(target: torch.nn.Module, call: RootCall) -> Any:
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.set_grad_enabled(call.grad_enabled))
        for dev, dtype in call.autocast:
            stack.enter_context(torch.autocast(dev, dtype=dtype))
        return target(*call.args, **call.kwargs)


def grad_leaves(out: Any) -> list[torch.Tensor]:
    """The float outputs of a root call that gradients can reach, in a fixed order."""
    return [
        t
        for _, t in iter_tensors(out)
        if isinstance(t, torch.Tensor) and skip_reason(t) is None and t.requires_grad
    ]

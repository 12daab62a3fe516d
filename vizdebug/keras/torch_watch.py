"""The torch adapter's machinery on a Keras model (Keras 3, ``KERAS_BACKEND=torch``).

On the torch backend a Keras layer is a ``torch.nn.Module`` and ``Layer.__call__`` runs it
through ``torch.nn.Module.__call__``, so torch forward hooks fire on every layer call (a
shared layer once per call). The training step is plain eager torch: ``train_step`` runs the
forward pass, ``loss.backward()`` and then ``optimizer.apply(...)`` under ``no_grad``. That
is the torch adapter's step with Keras's optimizer in place of a ``torch.optim`` one, so
:class:`KerasTorchWatch` wires the torch adapter's collaborators (:mod:`vizdebug.torch`:
module hooks, statistics worker, sentinel, replay, flight recorder, reporter) to

* a :class:`~vizdebug.keras.torch_index.KerasIndex` (the layers and weights, named as the
  TensorFlow backend names them) instead of ``named_modules()``,
* the model's own forward hooks (root) and, on hooked steps, one forward hook per layer,
* a wrapper around the optimizer's ``apply``: before it the step's NaN/Inf check (and on a
  flagged step without layer hooks the replay, :mod:`vizdebug.torch.replay`, from the
  step's starting state), the weight copies and the gradients; after it the weights and
  updates and the end of the step,
* a wrapper around ``compute_loss`` (the step's loss, as a ``loss`` scalar and checked).

Everything is removed by :meth:`KerasTorchWatch.close`. Nothing here changes a value the
step computes: hooks only read, the replay uses ``torch.autograd.grad`` (no ``.grad``
changes) and puts the RNG and every non-trainable variable back.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import keras
import torch

from ..torch.checking import StepCheck
from ..torch.inplace import WriteGuard
from ..torch.modhooks import ModuleHooks
from ..torch.replay import Tape
from ..torch.report import Reporter
from ..torch.sentinel import Finding, Sentinel
from ..torch.state import Options, StepState
from ..torch.statqueue import StatQueue
from ..torch.stepping import StepClock
from ..torch.worker import StatsWorker
from ..writer import Writer
from .layers import structure
from .torch_index import KerasIndex, KerasRecorder, ReplayTarget
from .torch_loss import StepLoss

__all__ = ["KerasTorchWatch"]

_PLAIN, _OUTSIDE = 0, 1


class KerasTorchWatch:
    """Hooks on one Keras model (torch backend) feeding a writer.

    Args:
        model: The Keras model (built, compiled with an optimizer).
        writer: Where events go (never closed here).
        what, every, first, bins: The schedule (see :class:`vizdebug.keras.Callback`).
        include, exclude: Layer-name globs for statistics.
        on_anomaly: The torch reporter's mode: ``"warn"``, ``"raise"``, ``"log"`` or None.
        flight_recorder, max_snapshots: The anomaly snapshots.
        step: The first step's index (a callback kept open across ``fit`` calls goes on).
        structure: Write the structure event at the first step (once per run).
        compiled: Keras runs the train step under ``torch.compile`` (``jit_compile=True``):
            no hook on the model or its layers (see :meth:`_install`), the wrappers run
            outside the compiled graph (dynamo's ``disable``): weights, gradients, updates and
            the loss are recorded, and a flagged step is replayed eagerly with every layer
            hooked, from the batch :meth:`begin_step` was given.

    Attributes:
        findings: What the sentinel reported, in order.
    """

    def __init__(
        self,
        model: Any,
        writer: Writer,
        *,
        what: frozenset[str],
        every: int,
        first: int,
        bins: int,
        include: tuple[str, ...],
        exclude: tuple[str, ...],
        on_anomaly: str | None,
        flight_recorder: bool,
        max_snapshots: int,
        step: int = 0,
        structure: bool = True,
        compiled: bool = False,
    ) -> None:
        self.model, self.writer = model, writer
        self.index = index = KerasIndex(model, include, exclude)
        opts = Options(what, every, first, bins, True, on_anomaly)
        self.state = state = StepState(
            calls=[0] * len(index.slots), sentinel_on=on_anomaly is not None,
            recording=opts.scheduled(step), step=step, need_structure=structure,
            compiled=compiled,
        )  # fmt: skip
        self.findings: list[Finding] = []
        recorder = KerasRecorder(writer.snapshot_max_bytes, flight_recorder)
        self.sentinel = Sentinel(recorder)
        self.tape = Tape(cuda=any(p.is_cuda for _, p, _ in index.params))
        self.worker = StatsWorker(bins=bins)
        self.guard = WriteGuard(self.worker.swap)  # never entered: Keras's ops write no outputs
        reporter = Reporter(writer, recorder, None, on_anomaly, max_snapshots)
        self.losses = StepLoss(reporter)
        stats = StatQueue(opts, state, self.worker, writer)
        self.target = ReplayTarget(model)
        self._check = StepCheck(
            state, index, self.sentinel, recorder, reporter, self.tape, self.losses,  # type: ignore[arg-type]
            self.target, self._hook_modules,
        )  # fmt: skip
        self.hooks = ModuleHooks(
            opts, state, stats, self.sentinel, recorder, self.guard, None, self._root_done
        )
        self.clock = StepClock(
            opts, state, index.params, stats, self._checked, self._hook_modules, self.worker,
            writer, self.sentinel, recorder, self.guard, self.tape, None,
        )  # fmt: skip
        #: True while Keras's train function runs (other calls of the model are evaluation).
        self.in_step = False
        self._applied = False
        self._frames: list[int] = []
        self._handles: list[Any] = []
        self._layer_handles: list[Any] = []
        self._patched: list[tuple[Any, str]] = []
        self._install()
        self._hook_modules(state.recording or state.need_structure)
        writer.step = step

    # -- installation ----------------------------------------------------------------------

    def _install(self) -> None:
        if not self.state.compiled:
            # Under torch.compile the model's hooks would break the graph inside Keras's
            # Layer.__call__ (a name scope dynamo cannot resume in): the whole forward would
            # fall back to eager. A compiled step gets its tape from the batch (begin_step).
            root = self.index.modules[0]
            add = self._handles.append
            add(root.register_forward_pre_hook(self._root_pre, with_kwargs=True))
            add(
                root.register_forward_hook(
                    functools.partial(self.hooks.forward, self.index.slots[0])
                )
            )
            add(root.register_forward_hook(self._root_post, always_call=True))
        optimizer = self.model.optimizer
        self._patch(optimizer, "apply", self._wrap_apply(optimizer.apply))
        self._patch(self.model, "compute_loss", self._wrap_loss(self.model.compute_loss))

    def _outside(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        if not self.state.compiled:
            return fn
        # Outside a compiled step's graph: a graph break where train_step calls it. Dynamo's
        # own disable (it is imported anyway when Keras compiles): a frame dynamo resumes
        # into is then skipped too, which vizdebug.torch.compiled.eager's is not.
        import torch._dynamo

        disable: Any = torch._dynamo.disable
        outside: Callable[..., Any] = disable(fn, reason="vizdebug runs outside the compiled graph")
        return outside

    def _patch(self, owner: Any, name: str, fn: Callable[..., Any]) -> None:
        # an instance attribute shadowing the class's method: deleting it restores the method
        setattr(owner, name, fn)
        self._patched.append((owner, name))

    def _wrap_apply(self, apply: Callable[..., Any]) -> Callable[..., Any]:
        pre, post = self._outside(self.clock.opt_pre), self._outside(self.clock.opt_post)

        @functools.wraps(apply)
        def applied(*args: Any, **kwargs: Any) -> Any:
            if not self.in_step or self.state.closed:
                return apply(*args, **kwargs)
            self._applied = True
            pre(None, args, kwargs)  # raises NonFiniteError in "raise" mode
            out = apply(*args, **kwargs)
            post(None, args, kwargs)
            return out

        return applied

    def _wrap_loss(self, compute_loss: Callable[..., Any]) -> Callable[..., Any]:
        seen = self._outside(self._loss_seen)

        @functools.wraps(compute_loss)  # keeps the signature Keras inspects for ``training``
        def loss(*args: Any, **kwargs: Any) -> Any:
            value = compute_loss(*args, **kwargs)
            seen(value)
            return value

        return loss

    def _loss_seen(self, value: Any) -> None:
        if self.in_step and not self.state.replaying and isinstance(value, torch.Tensor):
            step = self.state.step
            if self.state.sentinel_on:
                self.losses.seen(step, value)
            detached: Any = value.detach()  # read on the writer thread: no host sync here
            self.writer.scalar("loss", detached, step=step)

    def _hook_modules(self, on: bool) -> None:
        """Add (or remove) every layer's forward hook: only a hooked step needs them."""
        if on and self.state.compiled and not self.state.replaying:
            on = False  # dynamo would recompile for every change of hooks
        self.state.hooked = on
        if on and not self._layer_handles:
            forward = self.hooks.forward
            for slot, module in zip(self.index.slots, self.index.modules, strict=True):
                if slot.index:
                    hook = functools.partial(forward, slot)
                    self._layer_handles.append(module.register_forward_hook(hook))
        elif not on:
            for handle in self._layer_handles:
                handle.remove()
            self._layer_handles = []

    # -- the model's own hooks -------------------------------------------------------------

    def _root_pre(self, module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        state = self.state
        if state.closed or not (self.in_step or state.replaying):
            state.evaluating += 1  # evaluation, prediction: not part of a training step
            self._frames.append(_OUTSIDE)
            return
        self._frames.append(_PLAIN)
        if state.replaying:
            return
        state.root_calls += 1
        if state.sentinel_on and not state.hooked:
            state.root_call = self.tape.begin(tuple(args), dict(kwargs))
            self.target.save()

    def _root_post(self, module: Any, args: Any, output: Any) -> None:
        if self._frames and self._frames.pop() == _OUTSIDE:
            self.state.evaluating -= 1

    def _root_done(self, output: Any) -> None:
        state = self.state
        self.worker.flush()  # the forward pass's outputs
        if state.need_structure and not state.replaying:
            state.need_structure = False
            infos = structure(self.index.layers, state.shapes)
            self.writer.structure("keras", infos, step=state.step)
            state.shapes = {}

    def _checked(self) -> Finding | None:
        finding = self._check.check()
        if finding is not None:
            self.findings.append(finding)
        return finding

    # -- the step --------------------------------------------------------------------------

    def begin_step(self, data: Any) -> None:
        """Keras's train function is about to run one step on ``data`` (its argument)."""
        self.in_step = True
        self._applied = False
        state = self.state
        if state.compiled and state.sentinel_on:
            # no model hooks under torch.compile: what a replay needs, taken from the batch
            x, _, _ = keras.utils.unpack_x_y_sample_weight(data[0])
            state.root_calls += 1
            state.root_call = self.tape.begin((x,), {"training": True})
            self.target.save()

    def end_step(self) -> None:
        """Keras's train function returned (or raised)."""
        self.in_step = False
        self.target.forget()
        state = self.state
        if state.need_structure and state.compiled:  # no root hook wrote it
            state.need_structure = False
            self.writer.structure("keras", structure(self.index.layers, {}), step=state.step)
        if not self._applied and not self.state.closed:
            # a train_step that never called optimizer.apply: end the step here
            self.clock.finish_step()

    @property
    def step(self) -> int:
        """The step under way (or next)."""
        return self.state.step

    def close(self) -> None:
        """Remove every hook and wrapper, stop the worker. Idempotent; the writer stays."""
        state = self.state
        if state.closed:
            return
        try:
            if state.entries:
                self.clock.end_step()
        finally:
            state.closed = True
            for handle in self._handles:
                handle.remove()
            self._handles = []
            self._hook_modules(False)
            for owner, name in self._patched:
                if name in vars(owner):
                    delattr(owner, name)
            self._patched = []
            self.worker.close()

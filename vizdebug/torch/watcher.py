"""``vizdebug.watch(model, optimizer)``: per-module health of a PyTorch model, in one line.

Hooks (all removed by :meth:`Watch.close`):

* always: a forward pre-hook and a forward hook on the root module (step clock without an
  optimizer, the sentinel's check of the root outputs, what a replay of the step needs) and
  optimizer step pre- and post-hooks (the step's one sentinel check, before the update so
  ``on_anomaly="raise"`` stops a NaN update; weight, gradient and update statistics);
* on hooked steps only (steps that record statistics, the first step, steps with a live
  debugger client, every step with ``sentinel="exact"``): a forward hook on every module
  (output statistics, the flight recorder's references) and a pre-hook on the autograd node
  behind each output that requires grad (see :func:`~vizdebug.torch.hooks.hang`: cheaper than
  a full backward hook, survives in-place ops and never changes what autograd computes) for
  gradient statistics and the sentinel's gradient flags; during the forward pass a
  :class:`~vizdebug.torch.inplace.WriteGuard` copies a recorded output before an in-place op
  overwrites it. They are added and
  removed at step boundaries: on other steps the model runs at full speed, and a flagged step
  is replayed with them (:mod:`.replay`). The root's hooks live in :mod:`.roothooks`, the
  module hooks in :mod:`.modhooks`, the step's check and replay in :mod:`.checking`, the
  optimizer hooks and the step's end in :mod:`.stepping`; this module builds them and holds
  the public API.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import torch

from ..adapters import DEFAULT_EVERY, DEFAULT_FIRST, WHAT, check_schedule, globs
from ..live.breaks import parse_breaks
from ..sinks import Sink
from ..stats import HIST_BINS
from ..writer import Writer
from .checking import StepCheck, replay_target
from .compiled import compiled_original, eager, probe
from .hooks import claim, dist_rank, release
from .index import ModelIndex
from .inplace import WriteGuard
from .live import TorchLive
from .losscheck import LossCheck
from .modhooks import ModuleHooks
from .recorder import FlightRecorder
from .replay import Tape
from .report import Reporter
from .roothooks import RootHooks
from .sentinel import Sentinel
from .state import Options, StepState
from .statqueue import StatQueue
from .stepping import StepClock
from .worker import StatsWorker
from .zerograd import ZeroGradGuard

__all__ = ["DEFAULT_EVERY", "DEFAULT_FIRST", "WHAT", "Watch", "watch"]

log = logging.getLogger("vizdebug")

_ANOMALY_MODES = ("warn", "raise", "pause", "log", None)
OnAnomaly = Literal["warn", "raise", "pause", "log"] | None


class Watch:
    """Hooks on one model (and optimizer) feeding a :class:`~vizdebug.Writer`.

    Create it with :func:`watch`; the arguments are documented there. Use it as a context
    manager or call :meth:`close`.

    Attributes:
        writer: The writer events go to.
        model: The watched model.
        optimizer: The watched optimizer, if any.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        logdir: str | os.PathLike[str] | None = None,
        every: int = DEFAULT_EVERY,
        first: int = DEFAULT_FIRST,
        what: Iterable[str] | None = None,
        include: str | Sequence[str] | None = None,
        exclude: str | Sequence[str] | None = None,
        sinks: Sequence[str | Sink] | None = None,
        on_anomaly: OnAnomaly = "warn",
        break_on: str | Sequence[str] | None = None,
        live: bool = True,
        live_timeout: float | None = 60.0,
        graph: bool = False,
        writer: Writer | None = None,
        offload: bool = True,
        flight_recorder: bool = True,
        max_snapshots: int = 3,
        bins: int = HIST_BINS,
        sentinel: Literal["replay", "exact"] = "replay",
    ) -> None:
        if not isinstance(model, torch.nn.Module):
            raise TypeError(
                f"vizdebug.watch needs a torch.nn.Module, got {type(model).__name__}: {model!r:.80}"
            )
        if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(
                f"optimizer must be a torch.optim.Optimizer or None, got {type(optimizer).__name__}"
            )
        chosen = set(check_schedule(every, first, what))
        if sentinel not in ("replay", "exact"):
            raise ValueError(f"sentinel must be 'replay' or 'exact', got {sentinel!r}")
        if on_anomaly not in _ANOMALY_MODES:
            raise ValueError(f"on_anomaly must be one of {_ANOMALY_MODES}, got {on_anomaly!r}")
        if break_on is not None and not live:
            raise ValueError("break_on needs the live debugger: drop live=False")
        parse_breaks(break_on)  # bad specifications fail before anything is hooked
        if writer is not None and not isinstance(writer, Writer):
            raise TypeError(f"writer must be a vizdebug.Writer, got {type(writer).__name__}")
        inc, exc = globs(include, "include"), globs(exclude, "exclude")
        original = compiled_original(model)
        compiled = original is not None  # torch.compile's wrapper: no module hooks (.compiled)
        if original is not None:
            model = original
        claim(model, id(self))
        try:
            self.model, self.optimizer = model, optimizer
            self.every, self.first, self.what = every, first, frozenset(chosen)
            self.on_anomaly, self.break_on, self.live = on_anomaly, break_on, live
            self.offload, self.bins, self.max_snapshots = offload, bins, max_snapshots
            if writer is None:
                rank, world = dist_rank()
                versions = {"torch": torch.__version__}
                writer = Writer(logdir, sinks=sinks, framework="torch", versions=versions,
                                rank=rank, world_size=world)  # fmt: skip
                self._owns_writer = True
            else:
                self._owns_writer = False
            self.writer = writer
            self._live = (
                TorchLive(model, optimizer, writer, break_on=break_on, resume_timeout=live_timeout)
                if live
                else None
            )
            index = ModelIndex(model, inc, exc)
            self._modules, self._slots = index.modules, index.slots
            # the collaborators (see .state): each gets the options, the step's state and
            # the others it calls, by name
            opts = Options(self.what, every, first, bins, offload, on_anomaly)
            self._state = state = StepState(
                calls=[0] * len(self._slots), compiled=compiled, exact=sentinel == "exact",
                sentinel_on=on_anomaly is not None, recording=opts.scheduled(0),
            )  # fmt: skip
            self._options = opts
            recorder = FlightRecorder(writer.snapshot_max_bytes, flight_recorder)
            self._sentinel = Sentinel(recorder)
            self._tape = Tape(cuda=any(p.is_cuda for p in model.parameters()))
            self._worker = StatsWorker(bins=bins)
            self._guard = WriteGuard(self._worker.swap)
            reporter = Reporter(writer, recorder, self._live, on_anomaly, max_snapshots)
            self._losses = LossCheck(writer, reporter.flagged_steps, on_anomaly)
            stats = StatQueue(opts, state, self._worker, writer)
            self._check = StepCheck(
                state, index, self._sentinel, recorder, reporter, self._tape, self._losses,
                replay_target(model), self._hook_modules,
            )  # fmt: skip
            self._clock = StepClock(
                opts, state, index.params, stats, self._check.check, self._hook_modules,
                self._worker, writer, self._sentinel, recorder, self._guard, self._tape,
                self._live,
            )  # fmt: skip
            self._roots = RootHooks(
                model, optimizer is not None, state, self._clock, self._tape, self._guard,
                self._worker, writer, self._hook_modules, self._live, graph,
            )  # fmt: skip
            self._hooks = ModuleHooks(
                opts, state, stats, self._sentinel, recorder, self._guard, self._live,
                self._roots.done,
            )  # fmt: skip
            self._handles: list[Any] = []
            self._module_handles: list[Any] = []
            self._install()
            self._hook_modules(True)  # the first step: the structure event needs every output
            writer.step = 0
        except BaseException:
            # nothing half-made survives a failed watch: no claim, no server, no open writer
            release(model, id(self))
            live_part = getattr(self, "_live", None)
            if live_part is not None:
                live_part.close()
            if getattr(self, "_owns_writer", False):
                self.writer.close()
            raise

    # -- setup ---------------------------------------------------------------------------

    def _install(self) -> None:
        """The hooks that stay for the whole watch: root module and optimizer."""
        add = self._handles.append
        root = self._modules[0]
        # under torch.compile: the probe is traced and says so, the others run outside the
        # graph (see .compiled)
        roots = self._roots
        probed = functools.partial(probe, eager(roots.saw_compiled))
        add(root.register_forward_pre_hook(probed, with_kwargs=True))
        add(root.register_forward_pre_hook(eager(roots.pre), with_kwargs=True))
        forward = eager(functools.partial(self._hooks.forward, self._slots[0]))
        add(root.register_forward_hook(forward))
        # runs after the one above, also when the forward raised: the guard's mode is popped
        add(root.register_forward_hook(eager(roots.post), always_call=True))
        if self.optimizer is not None:
            add(self.optimizer.register_step_pre_hook(self._clock.opt_pre))
            add(self.optimizer.register_step_post_hook(self._clock.opt_post))
            add(ZeroGradGuard(self.optimizer, self._worker.wait_idle))

    def _hook_modules(self, on: bool) -> None:
        """Add (or remove) the other modules' hooks: only a hooked step needs them.

        A module with no hooks runs at PyTorch's full speed: a step that records nothing and
        has no debugger client costs only the root's and the optimizer's hooks.
        """
        state = self._state
        if on and state.compiled and not state.replaying:
            on = False  # dynamo would recompile for every change of hooks (see .compiled)
        state.hooked = on
        if on and not self._module_handles:
            add = self._module_handles.append
            for slot, module in zip(self._slots, self._modules, strict=True):
                if slot.index:
                    add(module.register_forward_hook(functools.partial(self._hooks.forward, slot)))
        elif not on:
            for handle in self._module_handles:
                handle.remove()
            self._module_handles = []

    # -- public API -----------------------------------------------------------------------

    @property
    def step_index(self) -> int:
        """The current step (counted from optimizer steps, else root-module calls)."""
        return self._state.step

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._state.closed

    def step(self, loss: Any = None, **scalars: Any) -> None:
        """Record the loss (and any other scalars) of the step that last ran a forward pass.

        Args:
            loss: A number or a 0-d tensor; a tensor is converted on the writer thread. A
                non-finite loss at a step where the sentinel found nothing is reported as an
                anomaly of its own (role ``loss``).
            scalars: More values by tag, recorded the same way.
        """
        state = self._state
        if state.closed:
            return
        values = dict(scalars) if loss is None else {"loss": loss, **scalars}
        if loss is not None and state.sentinel_on:
            self._losses.seen(state.last_forward_step, loss)
        for tag, value in values.items():
            if isinstance(value, torch.Tensor):
                value = value.detach()
            self.writer.scalar(tag, value, step=state.last_forward_step)

    def close(self) -> None:
        """Finish the current step, remove every hook, stop the worker. Idempotent.

        Closes the writer if the watch created it (else flushes it).
        """
        state = self._state
        if state.closed:
            return
        try:
            if any(state.calls) or state.entries:
                finding = self._check.check()
                del finding  # at close, report only: never raise from close()
                self._clock.end_step()
        finally:
            state.closed = True
            for handle in self._handles:
                handle.remove()
            self._handles = []
            self._hook_modules(False)
            self._worker.close()
            if self._live is not None:
                self._live.close()
            release(self.model, id(self))
            if self._owns_writer:
                self.writer.close()
            else:
                self.writer.flush()

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def watch(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    **options: Any,
) -> Watch:
    """Watch a PyTorch model: per-module statistics, NaN/Inf tracing, a flight recorder.

    Args:
        model: The model (any ``nn.Module``, also DDP-wrapped or compiled models' originals).
        optimizer: Its optimizer; steps are counted from ``optimizer.step()``, else from calls
            of the root module.
        **options: Keyword-only options of :class:`Watch`: ``logdir``, ``every`` (record every
            N-th step, default 100), ``first`` (always record the first K steps, default 5),
            ``what`` (subset of ``{"activations", "gradients", "weights", "updates"}``),
            ``include``/``exclude`` (module-name globs, for statistics), ``sinks``,
            ``on_anomaly`` (``"warn"``, ``"raise"``, ``"log"``, ``"pause"`` or None to turn
            the sentinel off; ``"pause"`` pauses training at the step of the anomaly for
            ``vizdebug tui --attach``, with the flight recorder's tensors on offer),
            ``live`` (serve the live debugger on a loopback port, default True),
            ``live_timeout`` (seconds a paused run waits for a vanished client, default 60;
            None stays paused), ``break_on`` (breakpoints: ``"nan"``, ``"step:N"``,
            ``"module:GLOB"``, ``"abs>T"``, ``"grad_norm>T"``, ``"zero_frac>F"``),
            ``writer`` (an existing :class:`~vizdebug.Writer`), ``offload`` (compute CPU
            statistics on a worker thread, default True), ``flight_recorder`` (default True),
            ``max_snapshots`` (anomaly snapshots per watch, default 3), ``sentinel``
            (``"replay"``, the default: steps that record nothing check only the root outputs
            and parameter gradients and replay a flagged step with every module hooked to
            find its origin; ``"exact"``: every module hooked every step, for models whose
            forward depends on Python-side state a replay cannot restore), ``bins`` and
            ``graph`` (trace the model once, on the first step's inputs, for TensorBoard's
            Graphs dashboard; off by default because tracing runs ``forward`` one extra time,
            which Python-side state in a model would notice; an untraceable model gets a note).

    Returns:
        The :class:`Watch` handle (``close()``, context manager, ``step(loss=...)``).

    Raises:
        TypeError: ``model`` is not an ``nn.Module`` (or another argument has a wrong type).
        ValueError: A bad option value.
        AlreadyWatchedError: The model (or a submodule) is already watched; close that first.
    """
    return Watch(model, optimizer, **options)

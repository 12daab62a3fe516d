"""The root module's hooks of a watch: where a step's forward pass begins and ends.

Always installed (unlike the module hooks of :mod:`.modhooks`, which only hooked steps have):
the pre-hook tells a training pass from an evaluation pass, starts the step's clock (the
weights handed to the worker, the step ended at the next root call without an optimizer),
enters the in-place :class:`~vizdebug.torch.inplace.WriteGuard` on hooked steps and keeps what
a replay of the step needs; the post-hook leaves what the pre-hook entered (also when the
forward raised); :meth:`RootHooks.done` runs when the root's output is recorded (the structure
event, the graph, the end of an inference-only step). No host sync.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..runs.native import Graph
from ..writer import Writer
from .graph import trace_graph
from .hooks import iter_tensors
from .inplace import WriteGuard
from .live import TorchLive
from .replay import Tape
from .state import StepState
from .stepping import StepClock
from .structure import module_infos
from .worker import StatsWorker

__all__ = ["RootHooks"]

#: What a root call under way began, for its post-hook: nothing, an evaluation pass, the guard.
_PLAIN, _EVAL, _GUARDED = 0, 1, 2


class RootHooks:
    """The root module's pre- and post-hooks and what follows its recorded output.

    Args:
        model: The watched model (the root module).
        has_optimizer: Whether the watch has an optimizer (its hooks end the steps).
        state: The step's state (read; ``root_calls``, ``evaluating``, ``root_call``,
            ``need_structure``, ``shapes`` and ``compiled`` written here).
        clock: The step clock (a step's start, and its end without an optimizer).
        tape: Keeps each root call for a replay.
        guard: The in-place guard, entered for a hooked step's forward pass.
        worker: The statistics worker (flushed when the forward pass ends).
        writer: Notes, the structure event and the graph.
        hook_modules: Adds or removes every module's hooks (the watch's).
        live: The live debugger's hook points, if served.
        graph: Whether to trace the model's graph on the first step.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        has_optimizer: bool,
        state: StepState,
        clock: StepClock,
        tape: Tape,
        guard: WriteGuard,
        worker: StatsWorker,
        writer: Writer,
        hook_modules: Callable[[bool], None],
        live: TorchLive | None,
        graph: bool,
    ) -> None:
        self.model, self.has_optimizer, self.state = model, has_optimizer, state
        self.clock, self.tape, self.guard, self.worker = clock, tape, guard, worker
        self.writer, self.hook_modules, self.live, self.graph = writer, hook_modules, live, graph
        self._graph_args: tuple[Any, ...] | None = None
        self._trained = False
        self._eval_noted = False
        #: What each root call under way began (for its post-hook): _PLAIN, _EVAL, _GUARDED
        self._frames: list[int] = []

    def pre(self, module: torch.nn.Module, args: Any, kwargs: dict[str, Any]) -> None:
        """The root's forward pre-hook."""
        state = self.state
        if state.closed:
            self._frames.append(_PLAIN)
            return
        if state.evaluating or self._is_evaluation():
            state.evaluating += 1  # until post(): no module hook records this pass
            self._frames.append(_EVAL)
            return
        if not state.root_calls and not state.replaying and self.has_optimizer:
            self.clock.begin_step()  # the weights, to the worker (before the guard's mode)
        if state.hooked and (state.recording or state.sentinel_on) and not state.compiled:
            self.guard.enter()  # outputs read before in-place ops overwrite them
            self._frames.append(_GUARDED)
        else:
            self._frames.append(_PLAIN)
        if state.replaying:
            return
        if state.need_structure and self.graph and self._graph_args is None:
            self._graph_args = tuple(args)
        if not self.has_optimizer and state.root_calls:
            self.clock.finish_step()
        if not state.root_calls:
            live = self.live
            if live is not None and live.debugger.armed and not state.hooked:
                self.hook_modules(True)  # the debugger's hook points: every module
        state.root_calls += 1
        if state.sentinel_on and not state.hooked:
            state.root_call = self.tape.begin(tuple(args), dict(kwargs))

    def post(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        """The root's last forward hook (also called when the forward raised)."""
        frame = self._frames.pop() if self._frames else _PLAIN
        if frame == _EVAL:
            self.state.evaluating -= 1
        elif frame == _GUARDED:
            self.guard.leave()

    def saw_compiled(self) -> None:
        """The probe saw dynamo trace the root's forward: the model is compiled after all."""
        if not self.state.compiled:
            self.state.compiled = True
            self.hook_modules(False)
            self.writer.note(
                "vizdebug/torch",
                "the model runs under torch.compile: module outputs and output gradients are "
                "not recorded (hooks would make dynamo recompile); weights, gradients and "
                "updates are, and a NaN is traced by an eager replay of its step",
            )

    def _is_evaluation(self) -> bool:
        """Whether a root call is an evaluation pass, outside any training step.

        Under ``no_grad``/``inference_mode``, or in ``eval()`` mode once training-mode calls
        were seen: such passes are not recorded, so they never land in a training step's
        statistics or call counts. Without an optimizer, a watch that never saw a gradient
        (inference only) records every call as a step, as before.
        """
        if torch.is_grad_enabled() and self.model.training:
            self._trained = True
            return False
        if not torch.is_grad_enabled():
            evaluation = self._trained or self.has_optimizer
        else:
            evaluation = self._trained
        if evaluation and not self._eval_noted:
            self._eval_noted = True
            self.writer.note(
                "vizdebug/torch",
                "forward passes outside training (no_grad, inference_mode or eval() mode) "
                "are not recorded: they are not part of a training step",
                step=self.state.last_forward_step,
            )
        return evaluation

    def done(self, output: Any) -> None:
        """The root module's forward returned (called by the root's module hook)."""
        state = self.state
        state.last_forward_step = state.step
        self.worker.flush()  # the forward pass's outputs
        if state.need_structure:
            state.need_structure = False
            infos = module_infos(self.model, state.shapes)
            self.writer.structure("torch", infos, step=state.step)
            state.shapes = {}
            if self._graph_args is not None:
                self._record_graph(self._graph_args)
        if not self.has_optimizer and not any(
            isinstance(t, torch.Tensor) and t.requires_grad for _, t in iter_tensors(output)
        ):
            self.clock.finish_step()  # no backward can follow: end the step now

    def _record_graph(self, args: tuple[Any, ...]) -> None:
        self._graph_args = None
        state = self.state
        state.closed = True  # our hooks stay quiet while the tracer runs the model
        try:
            with self.guard.suspended():
                result = trace_graph(self.model, args)
        finally:
            state.closed = False
        if isinstance(result, bytes):
            self.writer.write(Graph(step=state.step, graph_def=result))
        else:
            self.writer.note("vizdebug/torch", f"model graph not traced: {result}", state.step)

"""The step clock of a watch: the optimizer hooks and the step end.

A step ends at the optimizer's step post-hook (or, without an optimizer, at the next root
call, or when a root call's outputs need no gradient). Before the update the step is checked
for NaN/Inf and, on a recorded step, the weights are copied and the parameter gradients handed
to the statistics worker; after it the weights and updates are; the step's entries then go to
the worker and the writer as one :class:`~vizdebug.torch.worker.StatsBatch`, and the next
step's schedule decides which module hooks it needs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

import torch

from ..writer import Writer
from .flat import FlatGroup, flat_groups
from .inplace import WriteGuard
from .live import TorchLive
from .recorder import FlightRecorder
from .replay import Tape
from .sentinel import Finding, NonFiniteError, Sentinel
from .state import Options, StepState
from .statqueue import StatQueue
from .worker import Entry, StatsBatch, StatsWorker

__all__ = ["StepClock"]


class StepClock:
    """The optimizer's hooks, the weight/gradient/update entries and the end of a step.

    Args:
        options: The watch's options (``what``, the schedule, ``on_anomaly``, ``bins``).
        state: The step's state (the clock advances it).
        params: ``(name, parameter, selected)`` of the model, in order.
        stats: Where weights, gradients and updates go.
        check: The step's NaN/Inf check (:meth:`.checking.StepCheck.check`).
        hook_modules: Adds or removes every module's hooks (the watch's).
        worker: The statistics worker (the step's batch goes to it).
        writer: The writer (the step's batch, the step counter).
        sentinel, recorder, guard, tape: Reset at each step's end.
        live: The live debugger's hook points, if served.
    """

    def __init__(
        self,
        options: Options,
        state: StepState,
        params: list[tuple[str, torch.nn.Parameter, bool]],
        stats: StatQueue,
        check: Callable[[], Finding | None],
        hook_modules: Callable[[bool], None],
        worker: StatsWorker,
        writer: Writer,
        sentinel: Sentinel,
        recorder: FlightRecorder,
        guard: WriteGuard,
        tape: Tape,
        live: TorchLive | None,
    ) -> None:
        self.options, self.state, self.stats, self.check = options, state, stats, check
        self.hook_modules, self.worker, self.writer = hook_modules, worker, writer
        self.sentinel, self.recorder, self.guard, self.tape = sentinel, recorder, guard, tape
        self.live = live
        self._params = params
        self._flat, self._single = flat_groups(params)
        self._before: list[tuple[FlatGroup, torch.Tensor]] = []
        self._before_single: list[tuple[str, torch.nn.Parameter, torch.Tensor]] = []
        #: The worker's entries of weights handed over at the step's start (:meth:`begin_step`),
        #: and the groups they were handed for (the update follows them).
        self._weights: list[Entry] = []
        self._deferred: list[FlatGroup] = []

    # -- optimizer ------------------------------------------------------------------------

    def opt_pre(self, opt: Any, args: Any, kwargs: Any) -> None:
        """The optimizer's step pre-hook: check the step, copy the weights, hand over grads."""
        state, what = self.state, self.options.what
        if state.closed:
            return
        finding = self.check()
        if finding is not None and self.options.on_anomaly == "raise":
            self.end_step()
            raise NonFiniteError(finding)
        live = self.live
        if live is not None and live.debugger.armed:
            live.optimizer_step(state.step)
        if state.recording and what & {"weights", "updates"}:
            if self._deferred:  # handed over at the step's start: read before they change
                for entry in self._weights:
                    self.worker.wait_read(entry)
            else:
                self._take_weights()
        if state.recording and "gradients" in what:
            self._record_param_grads()
        self.worker.flush()  # the backward pass's gradients

    def begin_step(self) -> None:
        """The step's first root call (with an optimizer): hand the weights to the worker,
        which copies them into a flat tensor and reads them while the forward and backward
        passes run (the parameters do not change until the optimizer step, whose pre-hook
        waits for that read); after the step the update is written into the same tensor. On
        a ResNet-18 that took the 47 MB copy off the training thread, and the wait for a free
        tensor: the worker, reading in order, has the previous step's update read before it
        fills the next step's weights."""
        what = self.options.what
        if not self.state.recording or "weights" not in what or self._deferred or self._before:
            return
        if any(group.stale or group.moved() for group in self._flat):  # p.data reassigned
            self._flat, self._single = flat_groups(self._params)
        hold = "updates" in what
        for group in self._flat:
            entry = self.stats.flat(group, "weight", None, partial(group.fill_weights, hold))
            if entry is not None:
                self._weights.append(entry)
        self._deferred = list(self._flat)
        self.worker.flush()  # the worker starts on them now
        with torch.no_grad():
            self._before_single = [(name, p, p.clone()) for name, p in self._single]

    def _take_weights(self) -> None:
        """The weights copied now (no root call started the step), handed to the worker first,
        before the gradients: the update is made in their tensor once read (see .flat)."""
        what = self.options.what
        self._before = self._copy_weights()
        for group, before in self._before:
            if "updates" in what:
                group.hold(before)
            if "weights" in what:
                self.stats.flat(group, "weight", before)
            else:
                group.recycle(before)  # only the update is recorded: no read to wait for
        with torch.no_grad():
            self._before_single = [(name, p, p.clone()) for name, p in self._single]

    def opt_post(self, opt: Any, args: Any, kwargs: Any) -> None:
        """The optimizer's step post-hook: weights and updates, then the step's end."""
        if self.state.closed:
            return
        what = self.options.what
        updates = "updates" in what
        if updates:
            for group in self._deferred:  # the update, written into the weights' tensor
                held = group.take_read()
                # here, not on the worker: code between steps (weight clipping, p.data = ...)
                # must not reach the update
                update = group.subtract(*held) if held is not None else None
                if update is not None:
                    self.stats.flat(group, "update", update)
            self.worker.flush()  # the weights' entries, if the worker is still to read them
            for group, before in self._before:
                update = group.update(before)  # into ``before`` once the worker has read it
                if update is not None:  # None: p.data was reassigned in the step
                    self.stats.flat(group, "update", update)
        for name, p, value in self._before_single:
            if "weights" in what:
                self.stats.tensor(name, "weight", 0, value)
            if updates:
                with torch.no_grad():
                    self.stats.tensor(name, "update", 0, p - value)
        self._before, self._before_single, self._weights, self._deferred = [], [], [], []
        self.end_step()
        self.state.updates += 1

    def _copy_weights(self) -> list[tuple[FlatGroup, torch.Tensor]]:
        """Flat copies of the selected parameters' values, one per group (see :mod:`.flat`)."""
        copies = [(group, group.copy()) for group in self._flat]
        if any(flat is None for _, flat in copies):  # p.data reassigned: group them again
            self._flat, self._single = flat_groups(self._params)
            copies = [(group, group.copy()) for group in self._flat]
        return [(group, flat) for group, flat in copies if flat is not None]

    def _record_param_grads(self) -> None:
        # One flat copy per group up to FLAT_GRAD_BYTES (see .flat); else by reference:
        # zero_grad() replaces .grad by default, and optimizer.zero_grad(set_to_none=False)
        # waits for the worker's read (zerograd.ZeroGradGuard); any other in-place change
        # before the read moves the version counter, which replaces the row by a note.
        stats = self.stats
        for group in self._flat:
            flat = group.grads()
            if flat is not None:
                stats.flat(group, "grad", flat)
                continue
            for name, p in zip(group.parts.names, group.params, strict=True):
                if p.grad is not None:
                    stats.tensor(name, "grad", 0, p.grad)
        for name, p in self._single:
            if p.grad is not None:
                stats.tensor(name, "grad", 0, p.grad)

    # -- step end (the one host sync of a step) --------------------------------------------

    def finish_step(self) -> None:
        """End a step without an optimizer: check it, record weights and gradients."""
        state, what = self.state, self.options.what
        finding = self.check()
        if state.recording:
            if "weights" in what:
                for group, flat in self._copy_weights():
                    self.stats.flat(group, "weight", flat)
                for name, p in self._single:
                    self.stats.tensor(name, "weight", 0, p.detach().clone())
            if "gradients" in what:
                self._record_param_grads()
        self.end_step()
        if finding is not None and self.options.on_anomaly == "raise":
            raise NonFiniteError(finding)

    def end_step(self) -> None:
        """Hand the step's entries over, reset what the step held, start the next step."""
        state = self.state
        # a step that ended without its optimizer step: no update follows
        for group, before in self._before:
            group.unhold(before)
        if self._deferred:
            for entry in self._weights:
                self.worker.wait_read(entry)
            for group in self._deferred:
                group.release_held()
        self._before, self._before_single, self._weights, self._deferred = [], [], [], []
        if state.entries:
            batch = StatsBatch(state.step, time.time(), state.entries, self.options.bins)
            state.entries = []
            self.worker.end_step(batch)
            self.writer.defer(batch)
        self.sentinel.reset()
        self.recorder.reset()
        self.guard.reset()
        self.tape.reset()
        state.next_step(self.options.scheduled(state.step + 1))
        self.writer.step = state.step
        if not state.recording:
            for group in self._flat:
                group.drop_spares()  # kept only while consecutive steps are recorded
        exact = state.exact and state.sentinel_on
        self.hook_modules(state.recording or state.need_structure or exact)

"""The step clock of :class:`~vizdebug.torch.watcher.Watch`: the optimizer hooks and the step end.

A step ends at the optimizer's step post-hook (or, without an optimizer, at the next root
call, or when a root call's outputs need no gradient). Before the update the step is checked
for NaN/Inf and, on a recorded step, the weights are copied and the parameter gradients handed
to the statistics worker; after it the weights and updates are; the step's entries then go to
the worker and the writer as one :class:`~vizdebug.torch.worker.StatsBatch`, and the next
step's schedule decides which module hooks it needs.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from ..writer import Writer
from .flat import FlatGroup, flat_groups
from .inplace import WriteGuard
from .live import TorchLive
from .recorder import FlightRecorder
from .replay import RootCall, Tape
from .sentinel import Finding, NonFiniteError, Sentinel
from .worker import Entry, StatsBatch, StatsWorker

__all__ = ["StepClock"]


class StepClock:
    """The optimizer-hook and step-end half of :class:`~vizdebug.torch.watcher.Watch` (a mixin)."""

    writer: Writer
    what: frozenset[str]
    every: int
    first: int
    bins: int
    on_anomaly: str | None
    _closed: bool
    _live: TorchLive | None
    _step: int
    _recording: bool
    _params: list[tuple[str, torch.nn.Parameter, bool]]
    _flat: list[FlatGroup]
    _single: list[tuple[str, torch.nn.Parameter]]
    _before: list[tuple[FlatGroup, torch.Tensor]]
    _before_single: list[tuple[str, torch.nn.Parameter, torch.Tensor]]
    _updates: int
    _worker: StatsWorker
    _entries: list[Entry]
    _sentinel: Sentinel
    _sentinel_on: bool
    _exact: bool
    _recorder: FlightRecorder
    _guard: WriteGuard
    _tape: Tape
    _root_call: RootCall | None
    _hung: list[Any]
    _calls: list[int]
    _slots: list[Any]
    _root_calls: int
    _need_structure: bool

    def _check(self) -> Finding | None:
        raise NotImplementedError

    def _stat(self, name: str, role: str, call: int, t: torch.Tensor) -> Entry | None:
        raise NotImplementedError

    def _stat_flat(self, group: FlatGroup, role: str, flat: torch.Tensor) -> None:
        raise NotImplementedError

    def _hook_modules(self, on: bool) -> None:
        raise NotImplementedError

    def _scheduled(self, step: int) -> bool:
        return bool(self.what) and (step < self.first or step % self.every == 0)

    # -- optimizer ------------------------------------------------------------------------

    def _opt_pre(self, opt: Any, args: Any, kwargs: Any) -> None:
        if self._closed:
            return
        finding = self._check()
        if finding is not None and self.on_anomaly == "raise":
            self._end_step()
            raise NonFiniteError(finding)
        live = self._live
        if live is not None and live.debugger.armed:
            live.optimizer_step(self._step)
        if self._recording and self.what & {"weights", "updates"}:
            self._before = self._copy_weights()
            with torch.no_grad():
                self._before_single = [(name, p, p.clone()) for name, p in self._single]
        if self._recording and "gradients" in self.what:
            self._record_param_grads()
        self._worker.flush()  # the backward pass's gradients

    def _opt_post(self, opt: Any, args: Any, kwargs: Any) -> None:
        if self._closed:
            return
        updates = "updates" in self.what
        for group, before in self._before:
            # the update first: once handed over, ``before`` may be read and recycled into
            # the very copy the update is made in
            update = group.update(before) if updates else None
            self._stat_flat(group, "weight", before)
            if update is not None:  # None: p.data was reassigned in the step
                self._stat_flat(group, "update", update)
        for name, p, value in self._before_single:
            self._stat(name, "weight", 0, value)
            if updates:
                with torch.no_grad():
                    self._stat(name, "update", 0, p - value)
        self._before, self._before_single = [], []
        self._end_step()
        self._updates += 1

    def _copy_weights(self) -> list[tuple[FlatGroup, torch.Tensor]]:
        """Flat copies of the selected parameters' values, one per group (see :mod:`.flat`)."""
        copies = [(group, group.copy()) for group in self._flat]
        if any(flat is None for _, flat in copies):  # p.data reassigned: group them again
            self._flat, self._single = flat_groups(self._params)
            copies = [(group, group.copy()) for group in self._flat]
        return [(group, flat) for group, flat in copies if flat is not None]

    def _record_param_grads(self) -> None:
        # One flat copy per group (see .flat); else by reference: zero_grad() replaces .grad by
        # default, and an in-place change (zero_grad(set_to_none=False)) before the worker's
        # read moves the version counter, which drops the row with a note rather than report
        # mixed values.
        for group in self._flat:
            flat = group.grads()
            if flat is not None:
                self._stat_flat(group, "grad", flat)
                continue
            for name, p in zip(group.parts.names, group.params, strict=True):
                if p.grad is not None:
                    self._stat(name, "grad", 0, p.grad)
        for name, p in self._single:
            if p.grad is not None:
                self._stat(name, "grad", 0, p.grad)

    # -- step end (the one host sync of a step) --------------------------------------------

    def _finish_step(self) -> None:
        finding = self._check()
        if self._recording:
            if "weights" in self.what:
                for group, flat in self._copy_weights():
                    self._stat_flat(group, "weight", flat)
                for name, p in self._single:
                    self._stat(name, "weight", 0, p.detach().clone())
            if "gradients" in self.what:
                self._record_param_grads()
        self._end_step()
        if finding is not None and self.on_anomaly == "raise":
            raise NonFiniteError(finding)

    def _end_step(self) -> None:
        if self._entries:
            batch = StatsBatch(self._step, time.time(), self._entries, self.bins)
            self._entries = []
            self._worker.end_step(batch)
            self.writer.defer(batch)
        self._sentinel.reset()
        self._recorder.reset()
        self._guard.reset()
        self._tape.reset()
        self._root_call = None
        self._hung = []
        self._calls = [0] * len(self._slots)
        self._root_calls = 0
        self._step += 1
        self.writer.step = self._step
        self._recording = self._scheduled(self._step)
        if not self._recording:
            for group in self._flat:
                group.drop_spares()  # kept only while consecutive steps are recorded
        exact = self._exact and self._sentinel_on
        self._hook_modules(self._recording or self._need_structure or exact)

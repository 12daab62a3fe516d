"""The training side of the live debugger: where training stands, when to pause, breakpoints.

Adapters call :meth:`Debugger.at` at every hook point (a module's forward, its backward, the
optimizer step). With nothing to do (no pause requested, no breakpoint) that call returns after
one attribute test. When it decides to pause, the training thread waits inside :meth:`at`, in
short timed waits so Ctrl-C still works, until a client continues or steps, until the
controlling client leaves (:meth:`Debugger.release`: the run goes on at once), or until no
controlling client has been attached for ``resume_timeout`` seconds (a pause nobody asked for:
``break_on`` set in code, ``on_anomaly="pause"``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..runs.snapshots import to_numpy
from .breaks import BREAK_KINDS, CONDITIONS, MAX_STEP, Breakpoint, check_break, validate_break

__all__ = ["BREAK_KINDS", "Breakpoint", "Debugger", "Position", "enclosing", "measure"]

log = logging.getLogger("vizdebug")

TensorMap = Mapping[str, Any]
Measure = Callable[[Any], tuple[float, float, float, float]]


@dataclass(frozen=True)
class Position:
    """A hook point.

    Attributes:
        step: Training step.
        phase: "forward", "backward", "optimizer" or "batch" (Keras batch boundary).
        module: Qualified module (layer) name; "" for the whole model.
        module_type: Its class name.
        call: Index of this module's call within the step.
        chain: Enclosing modules, outermost first.
        index: Ordinal of the hook point within the step.
    """

    step: int
    phase: str
    module: str = ""
    module_type: str = ""
    call: int = 0
    chain: tuple[str, ...] = ()
    index: int = 0

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict."""
        return asdict(self)


def enclosing(name: str) -> tuple[str, ...]:
    """The modules enclosing a dotted module name, outermost (the root, ``""``) first."""
    parts = name.split(".") if name else []
    return ("", *(".".join(parts[:i]) for i in range(1, len(parts))))


def measure(tensor: Any) -> tuple[float, float, float, float]:
    """Non-finite count, largest finite |value|, L2 norm and zero fraction (numpy, on the host)."""
    a = to_numpy(tensor).astype(np.float64, copy=False).ravel()
    if a.size == 0:
        return 0.0, 0.0, 0.0, 0.0
    finite = a[np.isfinite(a)]
    nonfinite = float(a.size - finite.size)
    maxabs = float(np.abs(finite).max()) if finite.size else 0.0
    return nonfinite, maxabs, float(np.sqrt(np.square(finite).sum())), float((a == 0).mean())


class Debugger:
    """Pause/step/breakpoint state shared by an adapter (training thread) and the server.

    Args:
        resume_timeout: Seconds a paused run waits without a controlling client before it
            resumes on its own; None waits forever.
        measure: Computes the condition metrics of one tensor (adapters pass an on-device one).
        clock: Monotonic clock, injectable for tests.
        step: The current training step (e.g. ``lambda: writer.step``), reported while
            training runs; hook points are not called then, so the position alone is stale.
    """

    def __init__(
        self,
        *,
        resume_timeout: float | None = 60.0,
        measure: Measure = measure,
        clock: Callable[[], float] = time.monotonic,
        step: Callable[[], int] | None = None,
    ) -> None:
        self.resume_timeout = resume_timeout
        self.measure = measure
        self.clock = clock
        self._step = step
        #: Fast-path flag read by every hook point: anything to check at all?
        self.armed = False
        self.position: Position | None = None
        self.paused = False
        self.reason = ""
        #: Controlling clients attached (0 or 1 with the server).
        self.controllers = 0
        self._tensors: Callable[[], TensorMap] | None = None
        self._mode = "run"
        self._target: Any = None
        self._breaks: dict[int, Breakpoint] = {}
        self._next_id = 1
        self._fired: dict[int, int] = {}  # breakpoint id -> the step it last fired at
        self._cond = threading.Condition()
        self._listeners: list[Callable[[dict[str, Any]], None]] = []
        self._unattended_since: float | None = None

    # -- called by the server thread ----------------------------------------------------------

    def add_listener(self, fn: Callable[[dict[str, Any]], None]) -> None:
        """Call ``fn(message)`` on pause and resume (from the training thread).

        ``fn`` must not block: it runs on the training thread.
        """
        self._listeners.append(fn)

    def acquire(self) -> bool:
        """Take control if nobody has it; returns whether it was taken."""
        with self._cond:
            if self.controllers:
                return False
            self.controllers = 1
            self._unattended_since = None
            return True

    def release(self) -> bool:
        """The controlling client left: the run goes on at once (it was the only one to step it).

        Breakpoints stay. Returns whether a paused or stepping run was let go.
        """
        with self._cond:
            self.controllers = max(0, self.controllers - 1)
            if self.controllers or self._mode == "run":
                return False
            self._mode, self._target = "run", None
            self._rearm()
            self._cond.notify_all()
            return True

    def command(self, op: str, arg: Any = None) -> None:
        """Apply a control command: pause, continue, step, next_step, run_to.

        Raises:
            ValueError: Unknown command or bad argument.
        """
        with self._cond:
            if op == "pause":
                self._mode = "pause"
            elif op == "continue":
                self._mode = "run"
            elif op == "step":
                self._mode = "step"
            elif op == "next_step":
                if self.position is None:
                    raise ValueError("next_step needs a paused position; pause first")
                p = self.position
                self._mode, self._target = "next", (p.step + 1, p.phase, p.module, p.call)
            elif op == "run_to":
                if not isinstance(arg, int) or isinstance(arg, bool) or not 0 <= arg <= MAX_STEP:
                    raise ValueError(f"run_to needs a step number 0..2**63-1, got {arg!r}")
                self._mode, self._target = "run_to", arg
            else:
                raise ValueError(f"unknown command {op!r}")
            self._rearm()
            self._cond.notify_all()

    def set_break(
        self, kind: Any, value: Any = None, module: Any = "*", *, once: Any = False
    ) -> Breakpoint:
        """Add a breakpoint.

        Raises:
            ValueError: Unknown kind or a value of the wrong type or out of range.
        """
        spec = validate_break(kind, value, module, once)
        with self._cond:
            bp = Breakpoint(self._next_id, spec.kind, spec.value, spec.module, spec.once)
            self._next_id += 1
            self._breaks[bp.id] = bp
            self._rearm()
        return bp

    def clear_break(self, bp_id: Any = None) -> None:
        """Remove one breakpoint (or all with None).

        Raises:
            ValueError: No breakpoint has that id.
        """
        if bp_id is not None and (not isinstance(bp_id, int) or isinstance(bp_id, bool)):
            raise ValueError(f"break_id must be an integer or null, got {bp_id!r}")
        with self._cond:
            if bp_id is None:
                self._breaks.clear()
            elif self._breaks.pop(bp_id, None) is None:
                raise ValueError(f"no breakpoint with id {bp_id}")
            self._rearm()

    @property
    def breakpoints(self) -> list[Breakpoint]:
        """The breakpoints set."""
        return list(self._breaks.values())

    @property
    def stepping(self) -> bool:
        """Whether the client asked to stop at the very next hook point."""
        return self._mode == "step"

    def tensors(self) -> TensorMap:
        """The tensors available at the paused position (empty when running)."""
        source = self._tensors
        return source() if (self.paused and source is not None) else {}

    def current_step(self) -> int | None:
        """The training step now (paused: the position's; running: the step source's)."""
        position = self.position
        if self.paused and position is not None:
            return position.step
        if self._step is not None:
            try:
                return int(self._step())
            except Exception:  # a step source must not break a status reply
                return None
        return position.step if position is not None else None

    def status(self) -> dict[str, Any]:
        """A JSON-able snapshot of the state."""
        return {
            "paused": self.paused,
            "reason": self.reason,
            "mode": self._mode,
            "step": self.current_step(),
            "position": self.position.to_json() if self.position else None,
            "breakpoints": [b.to_json() for b in self.breakpoints],
            "tensors": sorted(self.tensors()) if self.paused else [],
            "controlled": self.controllers > 0,
        }

    def _rearm(self) -> None:
        self.armed = self._mode != "run" or bool(self._breaks)

    # -- called by the adapter on the training thread -------------------------------------

    def at(self, position: Position, tensors: Callable[[], TensorMap]) -> None:
        """A hook point; pauses here if a command or breakpoint says so."""
        self.position = position
        if not self.armed:
            return
        reason = self._should_pause(position, tensors)
        if reason:
            self._pause(position, tensors, reason)

    def halt(self, position: Position, tensors: Callable[[], TensorMap], reason: str) -> None:
        """Pause here now, whatever the mode (``on_anomaly="pause"``), if a client may come.

        Waits like any pause, including the unattended-resume timeout.
        """
        self.position = position
        self._pause(position, tensors, reason)

    def _should_pause(self, p: Position, tensors: Callable[[], TensorMap]) -> str:
        mode = self._mode
        if mode in ("pause", "step"):
            return "paused" if mode == "pause" else "step"
        if mode == "next":
            target_step = self._target[0]
            same_point = (p.phase, p.module, p.call) == self._target[1:]
            # the same point one step later, or anything later if that point never comes
            if (p.step == target_step and same_point) or p.step > target_step:
                return "next_step"
        if mode == "run_to" and p.step >= self._target:
            return f"reached step {self._target}"
        for bp in list(self._breaks.values()):
            hit = self._check(bp, p, tensors)
            if hit:
                self._fired[bp.id] = p.step
                if bp.once:
                    with self._cond:
                        self._breaks.pop(bp.id, None)
                        self._rearm()
                    hit += " (one-shot: removed)"
                return hit
        return ""

    def _check(self, bp: Breakpoint, p: Position, tensors: Callable[[], TensorMap]) -> str:
        last = self._fired.get(bp.id)
        if bp.kind == "step":
            # fires once, at the first hook point at or after its step
            if p.step >= bp.value and last is None:
                return f"breakpoint {bp.id}: step {bp.value}"
            return ""
        if bp.kind in CONDITIONS and last == p.step:
            return ""  # once a step: a NaN reaches every hook point downstream of its origin
        return check_break(bp, p.step, p.module, tensors, self.measure)

    def _pause(self, p: Position, tensors: Callable[[], TensorMap], reason: str) -> None:
        with self._cond:
            self._mode = "hold"
            self._tensors = tensors
            self.paused = True
            self.reason = reason
            self._unattended_since = None
        self._notify({"event": "paused", "reason": reason, "position": p.to_json()})
        try:
            with self._cond:
                while self._mode == "hold":
                    self._cond.wait(0.1)  # short waits: Ctrl-C reaches the main thread
                    if self._mode == "hold" and self._timed_out():
                        log.warning(
                            "vizdebug: no client controlled the paused run for %.0f s; resuming",
                            self.resume_timeout,
                        )
                        self._mode = "run"
        finally:
            with self._cond:
                if self._mode == "hold":  # interrupted (Ctrl-C): do not stay paused
                    self._mode = "run"
                self.paused = False
                self._tensors = None
                self._rearm()
            self._notify({"event": "resumed", "position": p.to_json()})

    def _timed_out(self) -> bool:
        if self.resume_timeout is None:
            return False
        if self.controllers > 0:
            self._unattended_since = None
            return False
        now = self.clock()
        if self._unattended_since is None:
            self._unattended_since = now
        return now - self._unattended_since >= self.resume_timeout

    def _notify(self, message: dict[str, Any]) -> None:
        for fn in list(self._listeners):
            try:
                fn(message)
            except Exception as exc:  # a broken client must not break training
                log.debug("vizdebug live listener failed: %s", exc)

"""The training side of the live debugger: where training stands, when to pause, breakpoints.

Adapters call :meth:`Debugger.at` at every hook point (a module's forward, its backward, the
optimizer step). With nothing to do (no pause requested, no breakpoint) that call returns after
one attribute test. When it decides to pause, the training thread waits inside :meth:`at`, in
short timed waits so Ctrl-C still works, until a client continues or steps, or until no
controlling client has been attached for ``resume_timeout`` seconds.
"""

from __future__ import annotations

import fnmatch
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..runs.snapshots import to_numpy

__all__ = ["BREAK_KINDS", "Breakpoint", "Debugger", "Position", "enclosing", "measure"]

log = logging.getLogger("vizdebug")

#: Breakpoint kinds: a step, a module glob, and conditions on the tensors at a hook point.
BREAK_KINDS = ("step", "module", "nan", "abs_gt", "grad_norm_gt", "zero_frac_gt")

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


@dataclass(frozen=True)
class Breakpoint:
    """A condition that pauses training.

    Attributes:
        id: Assigned by the debugger.
        kind: One of :data:`BREAK_KINDS`.
        value: The step (``step``), glob (``module``) or threshold (the conditions).
        module: For conditions, a glob limiting the modules checked.
    """

    id: int
    kind: str
    value: Any = None
    module: str = "*"

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict."""
        return asdict(self)


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
    """

    def __init__(
        self,
        *,
        resume_timeout: float | None = 60.0,
        measure: Measure = measure,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.resume_timeout = resume_timeout
        self.measure = measure
        self.clock = clock
        #: Fast-path flag read by every hook point: anything to check at all?
        self.armed = False
        self.position: Position | None = None
        self.paused = False
        self.reason = ""
        self.controllers = 0
        self._tensors: Callable[[], TensorMap] | None = None
        self._mode = "run"
        self._target: Any = None
        self._breaks: dict[int, Breakpoint] = {}
        self._next_id = 1
        self._fired_step = -1
        self._cond = threading.Condition()
        self._listeners: list[Callable[[dict[str, Any]], None]] = []
        self._unattended_since: float | None = None

    # -- called by the server thread ----------------------------------------------------------

    def add_listener(self, fn: Callable[[dict[str, Any]], None]) -> None:
        """Call ``fn(message)`` on pause and resume (from the training thread)."""
        self._listeners.append(fn)

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
                if not isinstance(arg, int) or isinstance(arg, bool) or arg < 0:
                    raise ValueError(f"run_to needs a non-negative step number, got {arg!r}")
                self._mode, self._target = "run_to", arg
            else:
                raise ValueError(f"unknown command {op!r}")
            self._rearm()
            self._cond.notify_all()

    def set_break(self, kind: str, value: Any = None, module: str = "*") -> Breakpoint:
        """Add a breakpoint.

        Raises:
            ValueError: Unknown kind or a value of the wrong type.
        """
        if kind not in BREAK_KINDS:
            raise ValueError(
                f"unknown breakpoint kind {kind!r}; use one of {', '.join(BREAK_KINDS)}"
            )
        if kind == "step" and (not isinstance(value, int) or isinstance(value, bool)):
            raise ValueError(f"a step breakpoint needs an integer step, got {value!r}")
        if kind == "module" and not isinstance(value, str):
            raise ValueError(f"a module breakpoint needs a name or glob, got {value!r}")
        if kind in ("abs_gt", "grad_norm_gt", "zero_frac_gt"):
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise ValueError(f"a {kind} breakpoint needs a number, got {value!r}")
            value = float(value)
        if not isinstance(module, str):
            raise ValueError("module must be a glob string")
        with self._cond:
            bp = Breakpoint(self._next_id, kind, value, module)
            self._next_id += 1
            self._breaks[bp.id] = bp
            self._rearm()
        return bp

    def clear_break(self, bp_id: int | None = None) -> None:
        """Remove one breakpoint (or all with None).

        Raises:
            ValueError: No breakpoint has that id.
        """
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

    def status(self) -> dict[str, Any]:
        """A JSON-able snapshot of the state."""
        return {
            "paused": self.paused,
            "reason": self.reason,
            "mode": self._mode,
            "position": self.position.to_json() if self.position else None,
            "breakpoints": [b.to_json() for b in self.breakpoints],
            "tensors": sorted(self.tensors()) if self.paused else [],
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
                return hit
        return ""

    def _check(self, bp: Breakpoint, p: Position, tensors: Callable[[], TensorMap]) -> str:
        if bp.kind == "step":
            if p.step >= bp.value and self._fired_step < bp.value:
                self._fired_step = p.step
                return f"breakpoint {bp.id}: step {bp.value}"
            return ""
        if bp.kind == "module":
            if p.module and fnmatch.fnmatchcase(p.module, bp.value):
                return f"breakpoint {bp.id}: module {p.module}"
            return ""
        if not fnmatch.fnmatchcase(p.module, bp.module):
            return ""
        for name, tensor in tensors().items():
            if bp.kind == "grad_norm_gt" and not name.startswith("grad"):
                continue
            nonfinite, maxabs, norm, zero_frac = self.measure(tensor)
            if bp.kind == "nan" and nonfinite:
                return f"breakpoint {bp.id}: {int(nonfinite)} NaN/Inf in {p.module}:{name}"
            if bp.kind == "abs_gt" and maxabs > bp.value:
                return f"breakpoint {bp.id}: |value| {maxabs:.4g} > {bp.value:g} in {name}"
            if bp.kind == "grad_norm_gt" and norm > bp.value:
                return f"breakpoint {bp.id}: gradient norm {norm:.4g} > {bp.value:g} in {name}"
            if bp.kind == "zero_frac_gt" and zero_frac > bp.value and not math.isnan(zero_frac):
                return f"breakpoint {bp.id}: zero fraction {zero_frac:.2f} > {bp.value:g} in {name}"
        return ""

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
                    if self._timed_out():
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

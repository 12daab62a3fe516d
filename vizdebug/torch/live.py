"""The PyTorch side of the live debugger: hook points and the tensors available at each.

Hook points, in the order training meets them: each module's forward (after it returns:
inputs, outputs, its own parameters), each module output's backward (its gradient, in reverse
order), and the optimizer step (before the update: every parameter and its gradient). A hook
calls in here only when the debugger is armed (a pause, a step command or a breakpoint is
pending), so with no client and no breakpoint the cost is one attribute test. A step the
debugger was armed in the middle of (its first hook point is the root's) has no hook points
for its children and is not stopped in: the pause lands on the next step's first module.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from ..live.breaks import parse_breaks
from ..live.debugger import Debugger, Position, enclosing
from ..live.server import ControlServer
from ..writer import Writer

__all__ = ["TorchLive", "torch_measure"]


def torch_measure(t: Any) -> tuple[float, float, float, float]:
    """Non-finite count, max finite |x|, L2 norm and zero fraction, computed on the device.

    One host sync; used only while a condition breakpoint is set.
    """
    if not isinstance(t, torch.Tensor):
        from ..live.debugger import measure

        return measure(t)
    with torch.no_grad():
        x = t.detach()
        if x.numel() == 0 or not (x.is_floating_point() or x.dtype == torch.bool):
            return 0.0, 0.0, 0.0, 0.0
        x = x.float()
        finite = torch.isfinite(x)
        clean = torch.where(finite, x, torch.zeros((), dtype=x.dtype, device=x.device))
        values = torch.stack(
            [
                (~finite).sum().float(),
                clean.abs().amax(),
                torch.linalg.vector_norm(clean),
                (x == 0).float().mean(),
            ]
        ).tolist()
    return values[0], values[1], values[2], values[3]


class TorchLive:
    """Owns the debugger and control server of one :class:`~vizdebug.torch.Watch`.

    Args:
        model: The watched model.
        optimizer: Its optimizer, if any.
        writer: The watch's writer (its run directory gets ``live.json``).
        break_on: Breakpoint specifications (see :func:`vizdebug.live.breaks.parse_breaks`).
        resume_timeout: Seconds a paused run waits for a vanished client; None stays paused.

    Raises:
        ValueError: A bad ``break_on`` specification.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer | None,
        writer: Writer,
        *,
        break_on: str | Sequence[str] | None,
        resume_timeout: float | None,
    ) -> None:
        breaks = parse_breaks(break_on)
        self.debugger = Debugger(
            resume_timeout=resume_timeout, measure=torch_measure, step=lambda: writer.step
        )
        for spec in breaks:
            self.debugger.set_break(spec.kind, spec.value, spec.module, once=spec.once)
        self.modules = [m for _, m in model.named_modules()]
        self.params = list(model.named_parameters())
        self.optimizer = optimizer
        self.server = ControlServer(self.debugger, writer.run_dir, run=writer.run)
        self._index = 0
        self._step = -1
        self._partial = False

    @property
    def armed(self) -> bool:
        """Whether hook points must call in."""
        return self.debugger.armed

    def _own_params(self, index: int) -> dict[str, torch.Tensor]:
        return {f"param:{n}": p for n, p in self.modules[index].named_parameters(recurse=False)}

    def forward(
        self, index: int, name: str, mtype: str, call: int, step: int, args: Any, output: Any
    ) -> None:
        """A module returned."""
        from .hooks import iter_tensors

        def tensors() -> Mapping[str, Any]:
            found: dict[str, Any] = {}
            ins = [a for a in args if isinstance(a, torch.Tensor)]
            for k, a in enumerate(ins):
                found[f"input{k}"] = a
            for path, t in iter_tensors(output):
                found[f"output{path}"] = t
            found.update(self._own_params(index))
            return found

        self._at(Position(step, "forward", name, mtype, call, enclosing(name)), tensors)

    def backward(
        self, index: int, name: str, mtype: str, call: int, step: int, path: str, grad: Any
    ) -> None:
        """The gradient of a module output arrived."""

        def tensors() -> Mapping[str, Any]:
            found: dict[str, Any] = {f"grad_output{path}": grad}
            for pname, p in self.modules[index].named_parameters(recurse=False):
                found[f"param:{pname}"] = p
                if p.grad is not None:
                    found[f"grad:{pname}"] = p.grad
            return found

        self._at(Position(step, "backward", name, mtype, call, enclosing(name)), tensors)

    def optimizer_step(self, step: int) -> None:
        """The optimizer is about to update the parameters."""

        def tensors() -> Mapping[str, Any]:
            found: dict[str, Any] = {}
            for pname, p in self.params:
                found[f"param:{pname}"] = p
                if p.grad is not None:
                    found[f"grad:{pname}"] = p.grad
            return found

        mtype = type(self.optimizer).__name__ if self.optimizer is not None else ""
        self._at(Position(step, "optimizer", "", mtype, 0, ()), tensors)

    def halt(
        self,
        step: int,
        phase: str,
        module: str,
        mtype: str,
        reason: str,
        tensors: Callable[[], Mapping[str, Any]],
    ) -> None:
        """Pause now (``on_anomaly="pause"``) with the given tensors (the flight recorder's)."""
        self.debugger.halt(
            Position(step, phase, module, mtype, 0, enclosing(module)), tensors, reason
        )

    def _at(self, position: Position, tensors: Callable[[], Mapping[str, Any]]) -> None:
        if position.step != self._step:
            self._step, self._index = position.step, 0
            # Armed in the middle of a step (a pause asked for during its forward pass), the
            # watch hooks modules only from the next step on: this step's children have no
            # hook points, so stepping here would go root forward -> root backward ->
            # optimizer and skip every child. Such a step is left to run; the pause lands on
            # the next step's first module, from where stepping meets every hook point.
            self._partial = len(self.modules) > 1 and position.module == ""
        if self._partial:
            return
        self._index += 1
        position = dataclasses.replace(position, index=self._index)
        self.debugger.at(position, functools.lru_cache(maxsize=1)(tensors))

    def close(self) -> None:
        """Stop the server and let a paused training go."""
        self.debugger.command("continue")
        self.server.close()

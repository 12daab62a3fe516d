"""The Keras side of the live debugger: batch boundaries, then the layers of the paused batch.

Keras runs a whole training step inside one compiled function, so training can only stop
between steps. At the end of every step the callback calls :meth:`KerasLive.batch_end`; when
the debugger is armed (a pause, a step command or a breakpoint), the step has returned every
layer's inputs and outputs for that batch (the engine's ``capture`` flag), so a client that
pauses there can step through the batch's layers one by one, in the order their calls
returned, and fetch their inputs, outputs and weights. Stepping past the last layer goes to the
next batch boundary. With no client and no breakpoint a step pays one attribute test.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..live.breaks import parse_breaks
from ..live.debugger import Debugger, Position, enclosing
from ..live.server import ControlServer
from ..writer import Writer

__all__ = ["KerasLive"]


class KerasLive:
    """Debugger and control server of one :class:`~vizdebug.keras.Callback`.

    Args:
        writer: The callback's writer (``live.json`` goes into its run directory).
        model: The Keras model.
        layer_types: Layer class name by qualified layer name.
        layer_weights: ``(weight name, variable)`` pairs by qualified layer name.
        break_on: Breakpoint specifications (:func:`vizdebug.live.breaks.parse_breaks`).
        resume_timeout: Seconds a paused run waits for a vanished client; None stays paused.
    """

    def __init__(
        self,
        writer: Writer,
        model: Any,
        layer_types: Mapping[str, str],
        layer_weights: Mapping[str, Sequence[tuple[str, Any]]],
        *,
        break_on: str | Sequence[str] | None,
        resume_timeout: float | None,
    ) -> None:
        self.debugger = Debugger(resume_timeout=resume_timeout, step=lambda: writer.step)
        for spec in parse_breaks(break_on):
            self.debugger.set_break(spec.kind, spec.value, spec.module, once=spec.once)
        self.model = model
        self.layer_types = dict(layer_types)
        self.layer_weights = {k: list(v) for k, v in layer_weights.items()}
        self.server = ControlServer(self.debugger, writer.run_dir, run=writer.run)

    @property
    def armed(self) -> bool:
        """Whether the next step must return its layer inputs and outputs."""
        return self.debugger.armed

    def _weights(self) -> dict[str, Any]:
        return {f"param:{w.path}": w for w in self.model.weights}

    def batch_end(self, step: int, io: Mapping[str, Any]) -> None:
        """Training step ``step`` finished; ``io`` holds its layers' inputs and outputs."""
        dbg = self.debugger

        def everything() -> Mapping[str, Any]:
            return {**io, **self._weights()}

        dbg.at(Position(step, "batch", "", type(self.model).__name__), everything)
        if not dbg.stepping:
            return
        for index, (layer, call) in enumerate(self._layers(io)):
            key = layer if not call else f"{layer}#{call}"  # as the flight recorder names them
            name = "" if layer == "(model)" else layer
            position = Position(
                step, "forward", name, self.layer_types.get(name, ""), call, enclosing(name), index
            )
            dbg.at(position, self._layer_tensors(io, key))
            if not dbg.stepping:
                return

    def _layers(self, io: Mapping[str, Any]) -> list[tuple[str, int]]:
        seen: dict[str, tuple[str, int]] = {}
        for tensor_name in io:
            key = tensor_name.rpartition("/")[0]
            layer, _, call = key.partition("#")
            seen.setdefault(key, (layer, int(call) if call else 0))
        return list(seen.values())

    def _layer_tensors(self, io: Mapping[str, Any], key: str) -> Callable[[], Mapping[str, Any]]:
        def tensors() -> Mapping[str, Any]:
            prefix = key + "/"
            found: dict[str, Any] = {
                name[len(prefix) :]: value for name, value in io.items() if name.startswith(prefix)
            }
            layer = key.partition("#")[0]
            for wname, variable in self.layer_weights.get(layer, ()):
                found[f"param:{wname.rpartition('.')[2]}"] = variable
            return found

        return tensors

    def close(self) -> None:
        """Stop the server and let a paused training go."""
        self.debugger.command("continue")
        self.server.close()

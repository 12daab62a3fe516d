"""The layer probe: what every layer of a Keras model returned during one forward pass.

The probe replaces each layer's ``call`` with a thin wrapper (an instance attribute, removed
again by :meth:`LayerProbe.remove`). Outside :meth:`LayerProbe.recording` the wrapper only
forwards the call. Inside it, the wrapper records the layer's inputs and float outputs, in the
order the calls *complete* (a nested model after its own layers, shared layers once per call),
and marks each output with ``tape.watch`` so the gradient of the loss with respect to it comes out
of the same backward pass as the weight gradients. Recording works the same while a
``tf.function`` is traced (the tensors are then symbolic, used later in that same graph) and
eagerly (``run_eagerly=True``, custom loops).

Every model kind goes through ``Layer.__call__`` -> ``self.call``: Sequential and functional
models run their layers through their graph, subclassed models call them from their own ``call``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import keras
import tensorflow as tf

from ..tf.ops import skip_reason
from .layers import Slot, layer_slots, structure

__all__ = ["Call", "LayerProbe", "Slot", "layer_slots", "structure"]


@dataclass(eq=False)
class Call:
    """One completed layer call recorded by the probe."""

    slot: Slot
    call: int
    inputs: list[Any]
    outputs: list[tuple[str, Any]]


class LayerProbe:
    """Wraps every layer's ``call`` to record what it returns while :meth:`recording`.

    Args:
        slots: From :func:`layer_slots`.

    Attributes:
        calls: The calls recorded by the current (or last) :meth:`recording`.
        skipped: ``(layer name, reason)`` of outputs that got no statistics.
        error_slot: The innermost layer whose ``call`` raised a ``tf.errors.InvalidArgumentError``
            (``tf.debugging.enable_check_numerics`` raises one when run eagerly).
    """

    def __init__(self, slots: Sequence[Slot]) -> None:
        self.slots = list(slots)
        self.calls: list[Call] = []
        self.skipped: dict[tuple[str, str], None] = {}
        self.error_slot: Slot | None = None
        self._active = False
        self._tape: tf.GradientTape | None = None
        self._counts = [0] * len(self.slots)
        self._patched: list[Any] = []
        self._graph: Any = None

    def install(self) -> None:
        """Wrap every layer's ``call`` (idempotent)."""
        if self._patched:
            return
        for slot in self.slots:
            layer = slot.layer
            layer.call = self._wrap(slot, layer.call)
            self._patched.append(layer)

    def remove(self) -> None:
        """Restore every layer's own ``call``."""
        for layer in self._patched:
            with contextlib.suppress(AttributeError):
                del layer.call
        self._patched = []

    def _wrap(self, slot: Slot, call: Callable[..., Any]) -> Callable[..., Any]:
        def probed(*args: Any, **kwargs: Any) -> Any:
            try:
                out = call(*args, **kwargs)
            except tf.errors.InvalidArgumentError:
                if self.error_slot is None:
                    self.error_slot = slot
                raise
            if self._active:
                self._record(slot, args, out)
            return out

        probed.__wrapped__ = call  # type: ignore[attr-defined]
        return probed

    @contextmanager
    def recording(self, tape: tf.GradientTape | None = None) -> Iterator[list[Call]]:
        """Record the layer calls made inside the block; ``tape`` watches every output."""
        self.calls = []
        self._counts = [0] * len(self.slots)
        self._tape = tape
        # Keras may trace a layer in a scratch graph (to infer shapes while building); only
        # tensors of the graph being recorded (or eager tensors) belong to the step.
        self._graph = tf.compat.v1.get_default_graph() if tf.inside_function() else None
        self._active = True
        try:
            yield self.calls
        finally:
            self._active = False
            self._tape = None

    def _ours(self, t: Any) -> bool:
        if self._graph is None:
            return isinstance(t, tf.__internal__.EagerTensor)
        return getattr(t, "graph", None) is self._graph

    def _record(self, slot: Slot, args: tuple[Any, ...], out: Any) -> None:
        leaves = keras.tree.flatten(out)
        if not any(self._ours(t) for t in leaves):
            return
        outputs: list[tuple[str, Any]] = []
        for k, leaf in enumerate(leaves):
            path = f"[{k}]" if len(leaves) > 1 else ""
            reason = skip_reason(leaf)
            if reason is not None:
                self.skipped.setdefault((slot.name + path, reason), None)
                continue
            if self._tape is not None:
                self._tape.watch(leaf)
            outputs.append((path, leaf))
        inputs = [a for a in keras.tree.flatten(args[:1]) if skip_reason(a) is None]
        call = self._counts[slot.index]
        self._counts[slot.index] = call + 1
        self.calls.append(Call(slot, call, inputs, outputs))

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
import fnmatch
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import keras
import tensorflow as tf

from ..events import ModuleInfo
from ..tf.ops import skip_reason

__all__ = ["Call", "LayerProbe", "Slot", "layer_slots"]


@dataclass(eq=False)
class Slot:
    """One layer of the model.

    Attributes:
        index: Position in layer order (the root model first, then depth first).
        name: Qualified name: ``""`` for the root, ``"block.dense"`` inside nested models.
        layer: The layer.
        type: Its class name.
        selected: Whether include/exclude let its statistics through.
        weights: ``(name, variable)`` of the trainable weights it owns directly.
        parent: Index of the enclosing slot (-1 for the root).
    """

    index: int
    name: str
    layer: Any
    type: str
    selected: bool = True
    weights: list[tuple[str, Any]] = field(default_factory=list)
    parent: int = -1


@dataclass(eq=False)
class Call:
    """One completed layer call recorded by the probe."""

    slot: Slot
    call: int
    inputs: list[Any]
    outputs: list[tuple[str, Any]]


def _children(layer: Any) -> list[Any]:
    # Keras 3 lists the layers a layer tracks (for a model: its layers; for a custom layer: the
    # layers set as attributes). The method is underscored but is what Model.layers uses.
    flatten = getattr(layer, "_flatten_layers", None)
    if flatten is None:
        return list(getattr(layer, "layers", []))
    return list(flatten(include_self=False, recursive=False))


def _selected(name: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    if include and not any(fnmatch.fnmatchcase(name, g) for g in include):
        return False
    return not any(fnmatch.fnmatchcase(name, g) for g in exclude)


def layer_slots(model: Any, include: Sequence[str] = (), exclude: Sequence[str] = ()) -> list[Slot]:
    """Every layer of ``model`` (the root first, then depth first, input layers left out).

    Each trainable weight is owned by the innermost layer that holds it and is named
    ``"<layer>.<weight>"`` (``"kernel"`` of root-level layer ``dense`` is ``"dense.kernel"``).
    """
    slots: list[Slot] = []
    seen: set[int] = set()

    def visit(layer: Any, name: str, parent: int) -> None:
        if id(layer) in seen or isinstance(layer, keras.layers.InputLayer):
            return
        seen.add(id(layer))
        slot = Slot(len(slots), name, layer, type(layer).__name__, parent=parent)
        slot.selected = _selected(name, include, exclude)
        slots.append(slot)
        for child in _children(layer):
            visit(child, f"{name}.{child.name}" if name else child.name, slot.index)

    visit(model, "", -1)
    owner: dict[int, Slot] = {}
    for slot in slots:  # parents come before children: the innermost owner wins
        for v in slot.layer.trainable_weights:
            owner[id(v)] = slot
    used: set[str] = set()
    for v in model.trainable_weights:
        slot = owner.get(id(v), slots[0])
        short = str(v.name).rpartition("/")[2]
        name = f"{slot.name}.{short}" if slot.name else short
        base, n = name, 1
        while name in used:
            name = f"{base}_{n}"
            n += 1
        used.add(name)
        slot.weights.append((name, v))
    return slots


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


def structure(
    slots: Sequence[Slot], shapes: dict[str, tuple[tuple[int, ...], ...]]
) -> list[ModuleInfo]:
    """One :class:`ModuleInfo` per layer, with the parameters it owns directly.

    Args:
        slots: The layers.
        shapes: Output shapes of each layer's first call by name (-1 for an unknown dimension).
    """
    infos = []
    for slot in slots:
        child_ids = {id(v) for s in slots if s.parent == slot.index for v in s.layer.weights}
        own = [v for v in slot.layer.weights if id(v) not in child_ids]
        infos.append(
            ModuleInfo(
                name=slot.name,
                type=slot.type,
                params=sum(_size(v) for v in own),
                trainable=sum(_size(v) for v in own if v.trainable),
                output_shapes=shapes.get(slot.name, ()),
            )
        )
    return infos


def _size(v: Any) -> int:
    n = 1
    for d in v.shape:
        n *= int(d)
    return n

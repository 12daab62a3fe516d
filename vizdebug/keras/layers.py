"""The layers of a Keras model, named as every Keras view names them (framework-free part).

:func:`layer_slots` walks a model (the root first, then depth first) and gives each layer a
qualified name (``""`` for the root, ``"block.dense"`` inside nested models) and each trainable
weight an owner and a name (``"dense.kernel"``); :func:`structure` turns them into the run's
structure event. Only ``keras`` is imported here, never a backend: the TensorFlow adapter
(:mod:`vizdebug.keras.probe`) and the torch-backend adapter (:mod:`vizdebug.keras.torch_backend`)
share these names, so their runs read the same.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import keras

from ..events import ModuleInfo

__all__ = ["Slot", "layer_slots", "structure"]


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

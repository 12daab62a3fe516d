"""A Keras model on the torch backend, seen as the torch adapter's collaborators need it.

On Keras 3's torch backend every layer is a ``torch.nn.Module``, but a model does not register
its layers as submodules: ``named_modules()`` of a functional model is the model itself and
one ``ParameterDict``. :class:`KerasIndex` therefore lists the layers the way the TensorFlow
adapter does (:func:`vizdebug.keras.layers.layer_slots`: same names, same weight names) and
gives them the shape of :class:`vizdebug.torch.index.ModelIndex` (slots, parameters with their
sentinel sites). :class:`ReplayTarget` is what the torch adapter's replay calls: the model,
with its non-trainable variables (BatchNorm's moving statistics, the random seed states of
Dropout and other random layers) handed back as the step's "buffers".
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch

from ..torch.hooks import Slot
from ..torch.recorder import FlightRecorder
from ..torch.sentinel import Site
from .layers import Slot as LayerSlot
from .layers import layer_slots

__all__ = ["KerasIndex", "KerasRecorder", "ReplayTarget"]


class KerasIndex:
    """The layers and trainable weights of a Keras model (torch backend).

    Args:
        model: The Keras model (built).
        include: Layer-name globs selecting what gets statistics (empty: all).
        exclude: Layer-name globs left out.

    Attributes:
        layers: The layer slots (:func:`~vizdebug.keras.layers.layer_slots`), for the
            structure event.
        modules: The layers as ``torch.nn.Module`` s; ``modules[0]`` is the model.
        slots: The torch adapter's slot of each layer (same index, name and selection).
        params: ``(weight name, parameter, selected)`` in ``model.trainable_weights`` order.
        grad_sites: The sentinel's site of each weight's gradient.
        weight_sites: The sentinel's site of each weight's value.
    """

    def __init__(
        self, model: Any, include: Sequence[str] = (), exclude: Sequence[str] = ()
    ) -> None:
        self.layers: list[LayerSlot] = layer_slots(model, include, exclude)
        self.modules: list[torch.nn.Module] = [s.layer for s in self.layers]
        self.slots = [Slot(s.index, s.name, s.layer, s.selected) for s in self.layers]
        owned = {id(v): (name, s) for s in self.layers for name, v in s.weights}
        self.params: list[tuple[str, torch.nn.Parameter, bool]] = []
        self.grad_sites: list[tuple[Site, torch.nn.Parameter]] = []
        self.weight_sites: list[tuple[Site, torch.nn.Parameter]] = []
        for v in model.trainable_weights:
            name, slot = owned[id(v)]
            p = v.value  # the variable's own Parameter: Keras assigns into it in place
            self.params.append((name, p, slot.selected))
            self.grad_sites.append((Site(slot.name, slot.type, "backward", "grad", param=name), p))
            self.weight_sites.append(
                (Site(slot.name, slot.type, "forward", "weight", param=name), p)
            )


class ReplayTarget(torch.nn.Module):
    """The model as the torch adapter's replay runs it again (:func:`vizdebug.torch.replay`).

    The replay clones a target's buffers before it runs the step again and copies them back
    afterwards. A Keras model's state lives in non-trainable variables instead (moving
    statistics, seed states): they are this target's buffers. Their values at the start of
    the step (:meth:`save`, at the model's call) are copied in before the replayed forward, so
    Dropout draws the step's masks again; the replay's own end restores those after the step.

    Args:
        model: The Keras model.
    """

    _keras: Any

    def __init__(self, model: Any) -> None:
        super().__init__()
        # a plain attribute, not a submodule: this wrapper must not re-own the model's layers
        object.__setattr__(self, "_keras", model)
        self._state: list[torch.Tensor] = [v.value for v in model.non_trainable_variables]
        self._saved: list[torch.Tensor] = []

    def save(self) -> None:
        """Keep the non-trainable values as the step starts (a copy of each; they are small)."""
        with torch.no_grad():
            self._saved = [t.detach().clone() for t in self._state]

    def forget(self) -> None:
        """Drop the copies (the step ended)."""
        self._saved = []

    def buffers(self, recurse: bool = True) -> Iterator[torch.Tensor]:
        """The model's non-trainable variables (what a replay restores afterwards)."""
        return iter(self._state)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Run the model again from the step's starting state."""
        if len(self._saved) == len(self._state):
            with torch.no_grad():
                for t, saved in zip(self._state, self._saved, strict=True):
                    t.copy_(saved)
        return self._keras(*args, **kwargs)


class KerasRecorder(FlightRecorder):
    """The torch adapter's flight recorder, its snapshot names as the TensorFlow backend's:
    the model's own inputs and outputs are ``(model)/input0``, not ``(root)/input0``."""

    def capture(self) -> tuple[dict[str, torch.Tensor], list[str]]:
        """See :meth:`vizdebug.torch.recorder.FlightRecorder.capture`."""
        tensors, modified = super().capture()
        return {_model(k): t for k, t in tensors.items()}, [_model(k) for k in modified]


def _model(name: str) -> str:
    return "(model)" + name[len("(root)") :] if name.startswith("(root)") else name

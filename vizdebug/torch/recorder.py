"""The flight recorder: the inputs and outputs of every module call of the current step.

Design (and its trade-off). When the sentinel finds a NaN at the end of a step it is too late to
capture anything, and cloning every tensor of every step "just in case" would double the cost of
training. So the recorder keeps *references* (no copies) to each module call's arguments and
output tensors, together with the outputs' version counters, for the current step only, and
forgets them when the step ends cleanly. The sentinel reads the same references to find, on a
flagged step, the first module output that holds a non-finite value. Only on an anomaly are
they cloned (up to ``max_bytes``) and written as a safetensors snapshot named
``<module>/input<k>`` and ``<module>/output<k>`` (``<module>#<call>`` for a second call in the
step).

What that costs and what it cannot do:

* Memory: the activations of one step stay alive until the step ends. In training most of them
  are kept by autograd for the backward pass anyway; in inference (no graph) the step ends when
  the root module returns, so at most one forward pass is held.
* In-place ops: an output overwritten in place after its module returned
  (``ReLU(inplace=True)``, ``x += residual``) is copied just before the write by
  :class:`~vizdebug.torch.inplace.WriteGuard`, so the recorder holds the values the module
  returned. A write the guard cannot see (C++ code outside Python's torch API) is detected by
  the version counter and listed in a note; those snapshot values are the later ones.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["Call", "FlightRecorder"]


class Call:
    """One module call of the step: references to its arguments and float outputs."""

    __slots__ = ("args", "call", "name", "outputs", "returned", "type", "versions")

    def __init__(
        self,
        name: str,
        type_: str,
        call: int,
        args: tuple[Any, ...],
        outputs: tuple[tuple[str, torch.Tensor], ...],
    ) -> None:
        self.name = name
        self.type = type_
        self.call = call
        self.args = args
        self.outputs = outputs
        #: The tensors the module returned (``outputs`` may hold copies taken before an
        #: in-place write, :mod:`.inplace`): consumers are found by identity with these.
        self.returned = outputs
        if len(outputs) == 1:  # the common case, without a generator
            self.versions: tuple[int, ...] = (outputs[0][1]._version,)
        else:
            self.versions = tuple(t._version for _, t in outputs)

    def replace(self, k: int, copy: torch.Tensor) -> None:
        """Output ``k`` as it was returned, copied before an in-place op overwrote it."""
        path = self.outputs[k][0]
        self.outputs = (*self.outputs[:k], (path, copy), *self.outputs[k + 1 :])
        self.versions = (*self.versions[:k], copy._version, *self.versions[k + 1 :])

    @property
    def inputs(self) -> tuple[torch.Tensor, ...]:
        """The tensor arguments."""
        return tuple(a for a in self.args if isinstance(a, torch.Tensor))


class FlightRecorder:
    """References to the module calls of one step (the sentinel reads them too).

    Args:
        max_bytes: Cap on the tensor data cloned into one snapshot.
        enabled: Whether an anomaly is captured into a snapshot.
    """

    def __init__(self, max_bytes: int = 256 << 20, enabled: bool = True) -> None:
        self.max_bytes = max_bytes
        self.enabled = enabled
        self.calls: list[Call] = []

    def record(self, call: Call) -> None:
        """Keep one module call (references to its arguments and outputs, no copies)."""
        self.calls.append(call)

    def reset(self) -> None:
        """Forget the step."""
        self.calls = []

    def capture(self) -> tuple[dict[str, torch.Tensor], list[str]]:
        """Clone what was recorded, up to ``max_bytes``.

        Returns:
            The tensors by snapshot name, and the names of outputs modified in place after
            their module returned (their values are the later ones).
        """
        out: dict[str, torch.Tensor] = {}
        modified: list[str] = []
        total = 0
        for c in self.calls:
            base = (c.name or "(root)") + (f"#{c.call}" if c.call else "")
            items = [(f"{base}/input{k}", t) for k, t in enumerate(c.inputs)]
            items += [(f"{base}/output{k}", t) for k, (_, t) in enumerate(c.outputs)]
            for k, (_, t) in enumerate(c.outputs):
                if t._version != c.versions[k]:
                    modified.append(f"{base}/output{k}")
            for key, t in items:
                size = t.numel() * t.element_size()
                if total + size > self.max_bytes or t.is_meta or t.layout != torch.strided:
                    continue
                total += size
                out[key] = t.detach().clone()
        return out, modified

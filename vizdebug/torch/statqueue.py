"""The step's statistics entries: a tensor handed to the worker, or its row computed on the
device; a flat copy of parameters as one entry with a row per parameter; skipped outputs noted
once. Used by the module hooks (outputs, output gradients) and the step clock (weights,
gradients, updates); everything here runs on the training thread, with no host sync.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..writer import Writer
from .devstats import dtype_name, stats_row
from .flat import FlatGroup
from .state import Options, StepState
from .worker import Entry, StatsWorker

__all__ = ["StatQueue"]


class StatQueue:
    """Turns recorded tensors into the step's entries (``state.entries``).

    Args:
        options: The watch's options (``offload``, ``bins``).
        state: The step's state; entries are appended to ``state.entries``.
        worker: Computes the rows of CPU tensors off the training thread.
        writer: Where notes about skipped tensors go.
    """

    def __init__(
        self, options: Options, state: StepState, worker: StatsWorker, writer: Writer
    ) -> None:
        self.options, self.state, self.worker, self.writer = options, state, worker, writer
        self._skipped: set[tuple[str, str]] = set()

    def tensor(self, name: str, role: str, call: int, t: torch.Tensor) -> Entry | None:
        """Queue ``t``'s statistics; returns the worker's entry (None: computed in stream
        order on the device, which an in-place op queued later cannot overtake)."""
        # the worker reads without grad mode: no detach (a tenth of this hook's time), and
        # fills in the dtype and shape
        if self.options.offload and t.is_cpu:
            entry = Entry(name, role, call, "", (), t, t._version)
            self.worker.submit(entry)
            self.state.entries.append(entry)
            return entry
        entry = Entry(name, role, call, dtype_name(t), tuple(t.shape), None, t._version)
        entry.row = stats_row(t, bins=self.options.bins)
        self.state.entries.append(entry)
        return None

    def flat(
        self,
        group: FlatGroup,
        role: str,
        flat: torch.Tensor | None,
        fill: Callable[[], torch.Tensor | None] | None = None,
    ) -> Entry | None:
        """Statistics of a flat copy of parameters (:mod:`.flat`): one entry, a row per part;
        the group takes the copy back once it is read. ``fill`` makes the tensor to read
        (on the worker, just before its read); returns the worker's entry (None: read
        already, on the device)."""
        parts = group.parts
        if self.options.offload and group.params[0].is_cpu:
            version = flat._version if flat is not None else 0
            entry = Entry(
                "parameters", role, 0, "", (), flat, version, parts=parts,
                recycle=group.recycle, fill=fill,
            )  # fmt: skip
            self.worker.submit(entry)
            self.state.entries.append(entry)
            return entry
        if fill is not None:
            flat = fill()
        if flat is None:
            self.skip("parameters", role, "they changed shape, dtype or device under the watch")
            return None
        views = torch.split(flat, parts.sizes)
        for name, shape, part in zip(parts.names, parts.shapes, views, strict=True):
            self.tensor(name, role, 0, part.view(shape))
        group.recycle(flat)  # the device reads in stream order, before any later copy into it
        return None

    def skip(self, name: str, role: str, reason: str) -> None:
        """Note once that a tensor is not recorded, and why."""
        if (name, reason) not in self._skipped:
            self._skipped.add((name, reason))
            self.writer.note("vizdebug/torch", f"{name or '(root)'} {role} skipped: {reason}")

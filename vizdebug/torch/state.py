"""What a watch's collaborators share: its options, and the state of the step under way.

:class:`~vizdebug.torch.watcher.Watch` is a few collaborators wired together: the module hooks
(:mod:`.modhooks`), the statistics queue (:mod:`.statqueue`), the step's check
(:mod:`.checking`) and the step clock (:mod:`.stepping`). Each is handed the :class:`Options`
(read only) and the one :class:`StepState` (what the step has gathered so far), plus the
collaborators it calls, by name: a reader of any of them sees what it may touch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from .replay import RootCall
    from .worker import Entry

__all__ = ["Options", "StepState"]


@dataclass(frozen=True, slots=True)
class Options:
    """The watch's options that its collaborators read (see :func:`vizdebug.watch`)."""

    what: frozenset[str]
    every: int
    first: int
    bins: int
    offload: bool
    on_anomaly: str | None

    def scheduled(self, step: int) -> bool:
        """Whether ``step`` records statistics."""
        return bool(self.what) and (step < self.first or step % self.every == 0)


@dataclass(eq=False, slots=True)
class StepState:
    """The state of the watch and of the step under way.

    The watch-wide flags (``closed``, ``compiled``, ``exact``, ``sentinel_on``) change rarely;
    everything else is the step's and is reset by :meth:`next_step`.
    """

    #: Calls per module slot in this step (a module called twice has calls 0 and 1).
    calls: list[int]
    step: int = 0
    closed: bool = False
    #: The model runs under torch.compile: no module hooks (see .compiled).
    compiled: bool = False
    #: Every step traced with every module hooked (``sentinel="exact"``, or after a replay
    #: that did not reproduce).
    exact: bool = False
    sentinel_on: bool = True
    #: This step records statistics.
    recording: bool = False
    #: Every module is hooked in this step.
    hooked: bool = False
    #: A flagged step is being replayed (its hooks record for the sentinel only).
    replaying: bool = False
    #: Evaluation passes under way (not recorded).
    evaluating: int = 0
    root_calls: int = 0
    #: The step of the last forward pass (``watch.step(loss=...)`` belongs to it).
    last_forward_step: int = 0
    #: Optimizer steps taken.
    updates: int = 0
    #: The first step's structure event is still to be written.
    need_structure: bool = True
    #: The statistics entries of this step.
    entries: list[Entry] = field(default_factory=list)
    #: What a replay of this step needs (a step without module hooks).
    root_call: RootCall | None = None
    #: The outputs the last hooked module call hung a gradient hook on (tensor, node, sites).
    hung: list[tuple[torch.Tensor, Any, list[Any]]] = field(default_factory=list)
    #: Output shapes of the first step's module calls (for the structure event).
    shapes: dict[str, tuple[tuple[int, ...], ...]] = field(default_factory=dict)

    def next_step(self, recording: bool) -> None:
        """Forget the step and start the next."""
        self.root_call = None
        self.hung = []
        self.calls = [0] * len(self.calls)
        self.root_calls = 0
        self.step += 1
        self.recording = recording

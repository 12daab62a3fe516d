"""The event model: frozen, typed dataclasses for everything vizdebug records.

Events flow one way: an adapter (or user code) creates them, the :class:`~vizdebug.Writer`
stamps and queues them, and sinks consume them. Every event carries ``run``, ``step``,
``wall_time`` and ``rank``; the writer fills those in when the caller leaves them at their
defaults.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "PHASES",
    "ROLES",
    "Anomaly",
    "Event",
    "Histogram",
    "ModelStructure",
    "ModuleInfo",
    "Note",
    "RunInfo",
    "Scalar",
    "SnapshotRef",
    "Stats",
    "TensorStats",
]

Phase = Literal["forward", "backward", "optimizer", "eval", "other"]
PHASES: tuple[str, ...] = ("forward", "backward", "optimizer", "eval", "other")

#: Roles a recorded tensor plays. ``output``/``grad_output`` are a module's output activation
#: and the gradient of the loss with respect to it; ``weight``/``grad``/``update`` describe a
#: parameter, its gradient and its change over one optimizer step; ``input`` is a module input.
ROLES: tuple[str, ...] = ("output", "grad_output", "weight", "grad", "update", "input", "loss")


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Fields every event carries.

    Attributes:
        step: Training step the event belongs to (``-1`` means "the writer's current step").
        wall_time: Seconds since the epoch (``0.0`` means "stamp when enqueued").
        run: Run name (the run directory's name); stamped by the writer.
        rank: Process rank in a distributed job; stamped by the writer.
    """

    step: int = -1
    wall_time: float = 0.0
    run: str = ""
    rank: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Scalar(Event):
    """One scalar value (a loss, a metric, a learning rate)."""

    tag: str
    value: float


@dataclass(frozen=True, slots=True)
class Stats:
    """Statistics of one tensor, as defined by :func:`vizdebug.stats.reference_stats`.

    ``min``, ``max``, ``mean``, ``std`` (population, ``ddof=0``) and ``l2`` are taken over the
    finite values only; they are NaN when there is no finite value (``l2`` is then 0). The
    histogram has ``len(hist_counts)`` equal-width bins over ``[hist_lo, hist_hi]`` and counts
    finite values only, so a NaN or an Inf never breaks it.
    """

    numel: int
    dtype: str
    shape: tuple[int, ...]
    nan: int
    posinf: int
    neginf: int
    zeros: int
    min: float
    max: float
    mean: float
    std: float
    l2: float
    hist_lo: float
    hist_hi: float
    hist_counts: tuple[int, ...]

    @property
    def finite(self) -> int:
        """Number of finite elements."""
        return self.numel - self.nan - self.posinf - self.neginf

    @property
    def nonfinite(self) -> int:
        """Number of NaN, +Inf and -Inf elements."""
        return self.nan + self.posinf + self.neginf

    @property
    def zero_fraction(self) -> float:
        """Fraction of elements that are exactly zero (NaN for an empty tensor)."""
        return self.zeros / self.numel if self.numel else math.nan

    def hist_edges(self) -> list[float]:
        """The ``len(hist_counts) + 1`` bin edges."""
        n = len(self.hist_counts)
        width = (self.hist_hi - self.hist_lo) / n if n else 0.0
        return [self.hist_lo + i * width for i in range(n + 1)]


@dataclass(frozen=True, slots=True, kw_only=True)
class TensorStats(Event):
    """Statistics of one tensor of one module (or layer) at one step.

    Attributes:
        name: Qualified module name (``model.named_modules()``) or parameter name.
        role: One of :data:`ROLES`.
        stats: The statistics.
        call: Index of the call within the step, for modules called several times.
    """

    name: str
    role: str
    stats: Stats
    call: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Histogram(Event):
    """A histogram read from another tool's event file (bucket limits are right edges)."""

    tag: str
    min: float
    max: float
    num: float
    sum: float
    sum_squares: float
    bucket_limits: tuple[float, ...]
    bucket_counts: tuple[float, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Anomaly(Event):
    """A non-finite value (or another health problem) traced to where it first appeared.

    Attributes:
        kind: ``"nan"``, ``"inf"``, ``"nonfinite"`` or an adapter-specific kind.
        module: Qualified name of the module or layer that produced it first ("" if unknown).
        module_type: Its class name.
        phase: One of :data:`PHASES`.
        role: Role of the tensor (see :data:`ROLES`).
        op: The operation, where known (for example from ``tf.debugging``).
        message: A sentence a user can act on.
        nan, posinf, neginf: Counts in the offending tensor.
    """

    kind: str
    module: str = ""
    module_type: str = ""
    phase: str = "other"
    role: str = ""
    op: str = ""
    message: str = ""
    nan: int = 0
    posinf: int = 0
    neginf: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotRef(Event):
    """A safetensors file of captured tensors, stored beside the event files.

    Attributes:
        path: Path relative to the run directory.
        tensors: Names of the tensors in the file.
        reason: Why it was captured ("anomaly", "breakpoint", ...).
        nbytes: Size of the tensor data.
    """

    path: str
    tensors: tuple[str, ...]
    reason: str = ""
    nbytes: int = 0


@dataclass(frozen=True, slots=True)
class ModuleInfo:
    """One module (layer) of a model.

    Attributes:
        name: Qualified name ("" for the root).
        type: Class name.
        params: Number of parameters it owns directly (not counting children).
        trainable: Number of those that require gradients.
        output_shapes: Output shapes seen on the first recorded call.
    """

    name: str
    type: str
    params: int = 0
    trainable: int = 0
    output_shapes: tuple[tuple[int, ...], ...] = ()

    @property
    def parent(self) -> str | None:
        """Qualified name of the enclosing module (None for the root)."""
        if not self.name:
            return None
        return self.name.rpartition(".")[0]


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelStructure(Event):
    """The module tree of a model, in ``named_modules()`` (or layer) order."""

    framework: str
    modules: tuple[ModuleInfo, ...]

    @property
    def total_params(self) -> int:
        """Total number of parameters."""
        return sum(m.params for m in self.modules)


@dataclass(frozen=True, slots=True, kw_only=True)
class Note(Event):
    """A line of text worth keeping: a skipped layer and why, a sink that failed, ..."""

    tag: str
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RunInfo(Event):
    """Facts about the process that writes a run.

    Attributes:
        framework: "torch", "tensorflow", "keras" or "" for plain writer use.
        versions: Package versions (python, vizdebug, the framework, ...).
        host, pid: Where the run is written from.
        world_size: Number of processes in the job.
        start_time: Seconds since the epoch.
        argv: The command line.
        dropped: Events dropped by the writer's queue-full policy, by kind.
    """

    framework: str = ""
    versions: Mapping[str, str] = field(default_factory=dict)
    host: str = ""
    pid: int = 0
    world_size: int = 1
    start_time: float = 0.0
    argv: tuple[str, ...] = ()
    dropped: Mapping[str, int] = field(default_factory=dict)


_new = object.__new__
_slots: Any = Scalar  # the slot descriptors bypass the frozen __setattr__
_set_step = _slots.step.__set__
_set_wall = _slots.wall_time.__set__
_set_run = _slots.run.__set__
_set_rank = _slots.rank.__set__
_set_tag = _slots.tag.__set__
_set_value = _slots.value.__set__


def make_scalar(step: int, wall_time: float, run: str, rank: int, tag: str, value: float) -> Scalar:
    """Build a :class:`Scalar` about 3x faster than its ``__init__`` (the writer's hot loop).

    Sets the slots directly; the result is an ordinary, equal, frozen :class:`Scalar`.
    """
    obj: Scalar = _new(Scalar)
    _set_step(obj, step)
    _set_wall(obj, wall_time)
    _set_run(obj, run)
    _set_rank(obj, rank)
    _set_tag(obj, tag)
    _set_value(obj, value)
    return obj

"""Inside the training step: which tensors to check and to describe, as one set of TF ops.

:func:`collect` runs where the training step runs -- while its ``tf.function`` is traced, or
eagerly -- and turns what the probe recorded, the gradients and the weights into a few tensors
the step returns: the values to describe packed in one vector, one int32 shape vector, one
float32 vector of finiteness flags, and -- only on a step with a non-finite flag -- NaN/Inf
counts of every checked tensor and every layer's inputs and outputs packed into one vector for
the flight recorder. The matching :class:`Plan` (plain Python, built once per trace) says what
each row, flag and packed tensor is.

Flag order is the order in which a non-finite value can first appear in a step: layer outputs in
the order their calls completed, the loss, output gradients in backward order (last layer
first), weight gradients in backward order. The weights after the optimizer step come last and
are counted only on a flagged step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import tensorflow as tf

from ..tf.deferred import Row
from ..tf.ops import dtype_name, finite_flags, nonfinite_counts, pack
from .probe import Call, Slot

if TYPE_CHECKING:
    from .replay import Layout

__all__ = ["Plan", "Site", "WeightRef", "collect"]


@dataclass(frozen=True, slots=True)
class Site:
    """Where a checked tensor came from (see :class:`vizdebug.events.Anomaly`)."""

    module: str
    module_type: str
    phase: str
    role: str
    call: int = 0
    path: str = ""
    param: str = ""

    def describe(self) -> str:
        """A phrase such as ``output of layer 'dense' (Dense)``."""
        if self.role == "loss":
            return "the loss"
        where = (
            f"layer {self.module!r} ({self.module_type})"
            if self.module
            else f"the model ({self.module_type})"
        )
        if self.param:
            what = "gradient" if self.role == "grad" else "value after the optimizer step"
            return f"{what} of weight {self.param!r} of {where}"
        call = f", call {self.call}" if self.call else ""
        return f"{self.role}{self.path} of {where}{call}"


@dataclass(frozen=True, slots=True)
class WeightRef:
    """A trainable weight and the layer that owns it."""

    name: str
    slot: Slot
    variable: Any


@dataclass
class Plan:
    """What the tensors returned by one traced step mean.

    Attributes:
        rows: One per statistics row.
        sites: One per flag (and per checked reference).
        io_names: Flight-recorder names, one per layer input/output reference.
        io_of: For each forward-output site, the indices into ``io_names`` of that call's inputs.
        io_ranks: Rank of each flight-recorder tensor (to unpack them).
        shapes: Static output shapes of each layer's first call (for the structure event).
        users: For each output-gradient site, the innermost layer calls that consumed that
            output (as ``grad_input`` sites): the backward of one of them produced its gradient.
        layout: The light check's payload layout (steps checked by
            :func:`vizdebug.keras.replay.light_check` only).
    """

    rows: list[Row] = field(default_factory=list)
    sites: list[Site] = field(default_factory=list)
    io_names: list[str] = field(default_factory=list)
    io_of: dict[int, list[int]] = field(default_factory=dict)
    io_ranks: list[int] = field(default_factory=list)
    shapes: dict[str, tuple[tuple[int, ...], ...]] = field(default_factory=dict)
    layout: Layout | None = None
    users: dict[int, list[Site]] = field(default_factory=dict)


#: The dtypes the writer's row kernel reads as they are (others go as float32).
_HOST_DTYPES = (tf.float32, tf.float64)


def _rank(t: Any) -> int:
    return int(t.shape.rank)


def _static(t: Any) -> tuple[int, ...]:
    return tuple(-1 if d is None else int(d) for d in t.shape)


def collect(
    calls: Sequence[Call],
    *,
    loss: Any | None,
    out_grads: Sequence[Any] | None,
    weights: Sequence[WeightRef],
    grads: Sequence[Any] | None,
    before: Sequence[Any] | None,
    after: Sequence[Any] | Callable[[], Sequence[Any]] | None,
    record: bool,
    sentinel: bool,
    recorder: bool,
    what: frozenset[str],
    bins: int,
    capture: Any | None = None,
    packed: bool = True,
) -> tuple[Plan, dict[str, Any]]:
    """Build the step's extra outputs (call inside the step, after the optimizer update).

    Args:
        calls: What the probe recorded.
        loss: The loss tensor (None if unknown).
        out_grads: Gradient of the loss w.r.t. each recorded output, in record order.
        weights: The trainable weights.
        grads: Their gradients (None if unavailable).
        before: Their values before the optimizer step (for weight and update statistics).
        after: Their values after it (for updates and the sentinel), or a function that reads
            them: the sentinel then reads them only on a step with a non-finite flag (a read
            after the update costs the step a synchronisation with it; a weight that turned
            non-finite makes the next step's outputs non-finite, which is flagged).
        record: Whether to compute statistics.
        sentinel: Whether to compute finiteness flags.
        recorder: Unused (the flight recorder's tensors are packed only on a bad step); kept
            so callers state what they want.
        what: Which statistics.
        bins: Histogram bins.
        capture: A boolean ``tf.Variable``; when true the layer inputs and outputs are returned
            even on a healthy step (the live debugger steps through them).
        packed: Return the described tensors packed in one vector (``extra["values"]``, with
            ``extra["shapes"]``); False: as a list, each in float32 or float64, and no
            ``"shapes"`` -- no copy of them in the step (a function of vizdebug's own returns
            them as they are; the writer thread reads each where it lies).

    Returns:
        The plan and a dict of tensors to return from the step.
    """
    plan = Plan()
    outs = [(c, path, t) for c in calls for path, t in c.outputs]
    for c in calls:
        if c.call == 0 and c.slot.name not in plan.shapes:
            plan.shapes[c.slot.name] = tuple(_static(t) for _, t in c.outputs)
    extra: dict[str, Any] = {}
    if loss is not None:
        extra["loss"] = tf.identity(loss)
    if record:
        stat: list[Any] = []

        def add(name: str, role: str, call: int, t: Any) -> None:
            plan.rows.append(Row(name, role, call, dtype_name(t), _rank(t)))
            stat.append(t)

        if "activations" in what:
            for c, path, t in outs:
                if c.slot.selected:
                    add(c.slot.name + path, "output", c.call, t)
        if "gradients" in what and out_grads is not None:
            for (c, path, _), g in zip(outs, out_grads, strict=True):
                if c.slot.selected:
                    add(c.slot.name + path, "grad_output", c.call, g)
        chosen = [i for i, w in enumerate(weights) if w.slot.selected]
        if before is not None and ("weights" in what or "updates" in what):
            for i in chosen:
                if "weights" in what:
                    add(weights[i].name, "weight", 0, before[i])
                if "updates" in what and after is not None and not callable(after):
                    add(weights[i].name, "update", 0, after[i] - before[i])
        if "gradients" in what and grads is not None:
            for i in chosen:
                add(weights[i].name, "grad", 0, grads[i])
        # The values go to the host as they are (or in one vector); the writer thread computes
        # the statistics (vizdebug.hoststats, the C kernel without the GIL): far less than the
        # ~20 graph ops per tensor that computing them here took.
        if packed:
            wide = any(t.dtype == tf.float64 for t in stat)
            extra["values"], extra["shapes"] = pack(stat, wide=wide)
        else:
            extra["values"] = [t if t.dtype in _HOST_DTYPES else tf.cast(t, tf.float32)
                               for t in stat]  # fmt: skip
    if sentinel:
        checked: list[Any] = []

        def check(site: Site, t: Any) -> None:
            plan.sites.append(site)
            checked.append(t)

        io: list[Any] = []  # every layer call's inputs and outputs (only read when bad)
        for c in calls:
            base = (c.slot.name or "(model)") + (f"#{c.call}" if c.call else "")
            first_in = len(io)
            for k, t in enumerate(c.inputs):
                plan.io_names.append(f"{base}/input{k}")
                io.append(t)
            ins = list(range(first_in, len(io)))
            for k, (path, t) in enumerate(c.outputs):
                plan.io_names.append(f"{base}/output{k}")
                io.append(t)
                plan.io_of[len(plan.sites)] = ins
                check(Site(c.slot.name, c.slot.type, "forward", "output", c.call, path), t)
        if loss is not None:
            check(Site("", "loss", "forward", "loss"), loss)
        if out_grads is not None:
            consumers: dict[int, list[Call]] = {}
            for c in calls:
                for t in c.inputs:
                    consumers.setdefault(id(t), []).append(c)
            for (c, path, t), g in reversed(list(zip(outs, out_grads, strict=True))):
                users = _innermost(consumers.get(id(t), []), calls)
                if users:
                    plan.users[len(plan.sites)] = [
                        Site(u.slot.name, u.slot.type, "backward", "grad_input", u.call)
                        for u in users
                    ]
                check(Site(c.slot.name, c.slot.type, "backward", "grad_output", c.call, path), g)
        if grads is not None:
            for w, g in reversed(list(zip(weights, grads, strict=True))):
                check(Site(w.slot.name, w.slot.type, "backward", "grad", param=w.name), g)
        # Detection, every step: the loss, the model's outputs and the weight gradients (a
        # NaN made in the forward pass reaches all three, one made in the backward pass the
        # gradients), one sum each; the per-layer counts are computed only on a flagged step.
        # Without the gradients (a model's own train_step), every checked tensor is summed.
        roots = [t for c in calls if not c.slot.name for _, t in c.outputs]
        detect = (
            checked if grads is None else [*([loss] if loss is not None else []), *roots, *grads]
        )
        flags = finite_flags(detect)
        late: Callable[[], Sequence[Any]] = (lambda: ()) if after is None else (
            after if callable(after) else lambda: after
        )  # fmt: skip
        for w in weights if after is not None else ():
            plan.sites.append(Site(w.slot.name, w.slot.type, "optimizer", "weight", param=w.name))
        plan.io_ranks = [_rank(t) for t in io]
        bad = tf.logical_not(tf.reduce_all(tf.math.is_finite(flags)))

        # Only a step with a non-finite flag pays for counts, for reading the weights after the
        # update and for the flight recorder's copy; the step returns four small tensors
        # either way (each returned tensor costs).
        def on_bad() -> tuple[Any, Any, Any]:
            return (nonfinite_counts([*checked, *late()]), *pack(io))

        def on_ok() -> tuple[Any, Any, Any]:
            return tf.zeros([0, 3], tf.int32), tf.zeros([0], tf.float32), tf.zeros([0], tf.int32)

        wanted = bad if capture is None else tf.logical_or(bad, capture)
        counts, io_flat, io_shapes = tf.cond(wanted, on_bad, on_ok)
        extra["counts"] = counts
        extra["io"] = io_flat
        extra["io_shapes"] = io_shapes
    return plan, extra


def _innermost(users: list[Call], calls: Sequence[Call]) -> list[Call]:
    """The consumers that are not containers of another consumer, in backward order."""
    parent = {c.slot.index: c.slot.parent for c in calls}
    ancestors: set[int] = set()
    for u in users:
        p = parent.get(u.slot.index, -1)
        while p >= 0:
            ancestors.add(p)
            p = parent.get(p, -1)
    return [u for u in reversed(users) if u.slot.index not in ancestors]

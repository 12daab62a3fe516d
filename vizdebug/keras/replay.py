"""The light NaN/Inf check of an unscheduled Keras step, and the replay of a flagged one.

A step that records nothing is checked with one sum: the loss, the model's outputs and every
weight gradient, added up (a NaN made in the forward pass reaches all three, one made
in the backward pass the gradients). The step returns a single float64 vector: ``[loss, sum]``
on a healthy step. Only when the sum is not finite does a ``tf.cond`` append, before the
optimizer update, everything needed to run the step again: the batch, the trainable weights as
they were before the update, and the non-trainable state (random-seed states, moving
statistics, ...) as it was before the forward pass. Measured on the digits CNN, this check costs
a step a third of what counting NaNs in every layer output and output gradient did (returned
tensors cost: each one is wrapped and unwrapped on the host).

On the host, :class:`Replayer` sets the model's variables back to those values, runs the step's
forward and backward pass once more with every layer checked -- no optimizer update, no metrics
-- and puts the variables back as they were. The per-layer search of
:meth:`vizdebug.keras.engine.Engine.locate` then names the first layer exactly as it does on a
recorded step. A forward pass that depends on state the replay does not restore (Python-side
counters, a global random generator) may not reproduce the value: the finding then says where
the check saw it, that the replay did not show it, and the engine checks every layer of every
step from then on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import tensorflow as tf

from ..tf.ops import own_function

if TYPE_CHECKING:
    from .engine import Engine, Finding
    from .plan import Plan

__all__ = ["Layout", "Replayer", "health_sum", "light_check", "replayable"]

_F64 = tf.float64


@dataclass
class Layout:
    """Where each piece of state sits in a flagged step's vector (see :func:`light_check`).

    Attributes:
        weights: Shapes of the trainable weights (``Engine.weights`` order).
        state: The non-trainable variables restored for a replay, and their shapes.
        structure: The batch's structure (``tf.nest``).
        leaves: Each batch leaf's dtype and rank.
    """

    weights: list[tuple[int, ...]] = field(default_factory=list)
    state: list[tuple[Any, tuple[int, ...]]] = field(default_factory=list)
    structure: Any = None
    leaves: list[tuple[Any, int]] = field(default_factory=list)

    def unpack(
        self, vector: np.ndarray[Any, Any]
    ) -> tuple[list[np.ndarray[Any, Any]], list[np.ndarray[Any, Any]], Any]:
        """Split a flagged step's payload: weights, state values, and the batch (as tensors)."""
        at = 0
        dims: list[tuple[int, ...]] = []
        for _, rank in self.leaves:
            dims.append(tuple(int(d) for d in vector[at : at + rank]))
            at += rank

        def take(shape: tuple[int, ...]) -> np.ndarray[Any, Any]:
            nonlocal at
            size = math.prod(shape)
            out = vector[at : at + size].reshape(shape)
            at += size
            return out

        weights = [take(s) for s in self.weights]
        state = [take(s) for _, s in self.state]
        leaves = [
            tf.cast(take(shape), dtype)  # float64 -> the leaf's dtype, bool included
            for (dtype, _), shape in zip(self.leaves, dims, strict=True)
        ]
        return weights, state, tf.nest.pack_sequence_as(self.structure, leaves)


def replayable(data: Any) -> bool:
    """Whether a batch can travel in a float64 vector (numbers and booleans only).

    Integers beyond 2**53 do not survive the trip; a replay of such a batch may then not
    reproduce the step, which the replay notices (see :class:`Replayer`).
    """
    leaves = tf.nest.flatten(data)
    return bool(leaves) and all(
        isinstance(t, tf.Tensor)
        and t.shape.rank is not None
        and (t.dtype.is_floating or t.dtype.is_integer or t.dtype == tf.bool)
        for t in leaves
    )


def _flat64(t: Any) -> tf.Tensor:
    return tf.reshape(tf.cast(t, _F64), [-1])


def health_sum(tensors: Sequence[Any]) -> tf.Tensor:
    """``[sum of the first tensor, sum of all]`` (float64): not finite when any value is not.

    As few ops as possible (each op costs the step a few microseconds): one sum per tensor in
    its own dtype, one add_n. A sum of huge finite values can overflow; the replay tells.
    """
    parts = [tf.cast(tf.reduce_sum(t), tf.float32) for t in tensors]
    return tf.cast(tf.stack([parts[0], tf.add_n(parts)]), _F64)


def light_check(
    *,
    data: Any,
    loss: Any,
    roots: Sequence[Any],
    grads: Sequence[Any],
    variables: Sequence[Any],
    state: Sequence[tuple[Any, Any]],
    layout: Layout,
) -> tf.Tensor:
    """The check of an unscheduled step, in the step (call it before the optimizer update).

    Args:
        data: The batch the step trained on.
        loss: The loss tensor.
        roots: The model's outputs.
        grads: The weight gradients, in ``variables`` order.
        variables: The trainable weights (read here, before the update, on a flagged step).
        state: ``(variable, value read before the forward pass)`` of the non-trainable state.
        layout: Filled in here (plain Python, at trace time).

    Returns:
        ``[loss, sum]`` (float64); with the replay's payload appended when ``sum`` is not
        finite. Run the optimizer update under a control dependency on it.
    """
    layout.weights = [tuple(int(d) for d in v.shape) for v in variables]
    layout.state = [(v, tuple(int(d) for d in v.shape)) for v, _ in state]
    layout.structure = tf.nest.map_structure(lambda _: None, data)  # no graph tensors kept
    leaves = tf.nest.flatten(data)
    layout.leaves = [(t.dtype, int(t.shape.rank)) for t in leaves]
    head = health_sum([loss, *roots, *grads])
    total = head[1]

    def flagged() -> tf.Tensor:
        dims = [tf.cast(tf.shape(t), _F64) for t in leaves]
        values = [_flat64(v) for v in variables] + [_flat64(value) for _, value in state]
        return tf.concat([head, *dims, *values, *(_flat64(t) for t in leaves)], axis=0)

    return tf.cond(tf.math.is_finite(total), lambda: head, flagged)


class Replayer:
    """Runs a flagged step again with every layer checked (see the module docstring).

    Args:
        engine: The engine whose model and schedule it serves.
        build: ``build(plans)`` makes the replay step ``step(data) -> extra``, putting the
            plan of each trace in ``plans["replay"]`` (:func:`vizdebug.keras.step.make_replay`).
    """

    def __init__(self, engine: Engine, build: Any) -> None:
        self.engine = engine
        self._build = build
        self._fn: Any = None
        self.plan: Plan | None = None

    def __call__(self, step: int, layout: Layout, vector: np.ndarray[Any, Any]) -> Finding | None:
        """The finding of flagged step ``step`` (None: a sum that overflowed, nothing else)."""
        weights, state, data = layout.unpack(vector[2:])
        variables = [v for v, _ in layout.state]
        return self.run(step, float(vector[0]), float(vector[1]), weights, variables, state, data)

    def run(
        self,
        step: int,
        loss: float,
        total: float,
        weights: list[np.ndarray[Any, Any]],
        variables: Sequence[Any],
        state: list[np.ndarray[Any, Any]],
        data: Any,
        after: list[np.ndarray[Any, Any]] | None = None,
    ) -> Finding | None:
        """The finding of flagged step ``step`` replayed from these values.

        Args:
            step: The step.
            loss: Its loss (NaN if unknown): a replay with another loss did not reproduce it.
            total: The check's non-finite sum.
            weights: The trainable weights before the step (``Engine.weights`` order).
            variables: The non-trainable variables to set back ...
            state: ... and their values before the step.
            data: The batch.
            after: The weights after the step, when it was flagged by them: a replay with
                every value finite then names the step's optimizer update.
        """
        engine = self.engine
        stale = engine.stale_weight(step, weights)
        if stale is not None:
            return stale
        extra = self._run(weights, variables, state, data)
        plan = self.plan
        if plan is None:  # the replay step sets it when traced or run: never absent here
            raise RuntimeError("vizdebug: the replay step produced no plan")
        finding = engine.locate(step, plan, extra)
        if finding is not None:
            return finding
        again = float(np.asarray(extra["loss"]))
        # a loss read back from Keras's running sums (``after`` given) carries their rounding
        tol = 1e-4 if after is None else 1e-3
        if math.isfinite(loss) and math.isclose(again, loss, rel_tol=tol, abs_tol=1e-6):
            # reproduced, every value finite: the update itself overflowed, or the sum did
            return None if after is None else engine.stale_weight(step + 1, after)
        return engine.unreproduced(step, loss, total)

    def _run(
        self,
        weights: list[np.ndarray[Any, Any]],
        variables: Sequence[Any],
        state: list[np.ndarray[Any, Any]],
        data: Any,
    ) -> dict[str, Any]:
        engine = self.engine
        model = engine.model
        if self._fn is None:
            plans: dict[str, Plan] = {}
            step = self._build(plans)

            def run(batch: Any) -> Any:
                extra = step(batch)
                self.plan = plans["replay"]
                return extra

            eager = model.run_eagerly
            self._fn = run if eager else own_function(run, reduce_retracing=True)
        # metrics too: a model with several losses feeds per-output loss metrics from
        # compute_loss
        saved = [(v, v.numpy()) for v in [*model.variables, *model.metrics_variables]]
        try:
            for ref, value in zip(engine.weights, weights, strict=True):
                ref.variable.assign(tf.cast(value, ref.variable.dtype))
            for v, value in zip(variables, state, strict=True):
                v.assign(tf.cast(value, v.dtype))
            extra = self._fn(data)
            return {k: v.numpy() if hasattr(v, "numpy") else v for k, v in extra.items()}
        finally:
            for v, value in saved:
                v.assign(value)

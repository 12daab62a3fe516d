"""Training arithmetic untouched: the model's own train function trains, vizdebug looks outside.

Any tensor an instrumented train function fetches (a layer output for statistics, a sum for the
NaN check) is one more consumer in the graph grappler optimizes, and grappler then rewrites the
step differently (fusions and arithmetic rewrites apply only to single-consumer nodes):
MobileNetV2's weights drifted by up to 3e-2 after four watched steps. So, for a model that keeps
Keras's default ``train_step`` (one step per execution, the default distribution strategy),
:class:`OutsideStep` pulls each batch from the iterator itself and hands it to Keras's own
function (which runs one ``one_step_on_data`` per element of a Python iterable: the same traced
step as ``fit``'s, bit for bit), and does its own work in functions of its own:

* a scheduled step first runs the *record* function on the same batch with the same weights:
  forward and backward pass with every layer probed, no update, no metrics, the non-trainable
  state (moving statistics, seed-generator states) put back, so the training step that follows
  sees exactly what it would have. It returns the tensors to describe as they are (see
  :func:`vizdebug.keras.plan.collect`, ``packed=False``) and one check sum (the loss, the
  model's outputs and the weight gradients); a non-finite sum is replayed at once with every
  layer checked (:class:`vizdebug.keras.replay.Replayer`: the variables still hold the step's
  starting values). Keras's own function then trains while a helper thread hands the tensors
  to the writer thread, which computes their statistics on the other core meanwhile; after the
  training step one small function returns each weight and its update (after - before). The
  gradients described are those of the record pass (the same values up to the rounding of
  grappler's rewrites);
* any other step copies the weights and the non-trainable state into shadow variables, trains,
  and sums the weights after the update: a NaN or Inf made anywhere in the step reaches them
  (a loss-scale optimizer that skips a non-finite step is, rightly, not flagged). A flagged step
  is replayed from the shadow copy (:class:`vizdebug.keras.replay.Replayer`), which names the
  layer, role and phase.

A recorded step costs a second forward and backward pass (the floor of this design: about as
long as Keras's own step without its update); the default schedule records few.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from ..tf.deferred import Row
from ..tf.ops import own_function
from .engine import Engine, Finding
from .plan import Plan, collect
from .replay import Replayer, health_sum
from .step import forward_backward, unchecked, uses_default_train_step

__all__ = ["OutsideStep", "applies", "pull"]


class _Handover:
    """A step's statistics handed to the writer by a helper thread (see ``OutsideStep.record``).

    The thread only calls ``writer.defer`` (waiting for room: back-pressure), and only while
    the training thread waits in Keras's train function, which writes nothing; :meth:`join`
    is called before the training thread writes again.
    """

    def __init__(self, engine: Engine, step: int, rows: Sequence[Row], values: list[Any]) -> None:
        self.engine, self.step = engine, step
        self.lost = False
        self.error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(rows, values), name="vizdebug-keras-handover", daemon=True
        )
        self._thread.start()

    def _run(self, rows: Sequence[Row], values: list[Any]) -> None:
        try:
            self.lost = self.engine.hand_over(self.step, rows, values, None)
        except BaseException as exc:  # re-raised on the training thread
            self.error = exc

    def join(self) -> None:
        """Wait until every chunk is handed over; warn about a loss, re-raise an error."""
        self._thread.join()
        if self.error is not None:
            raise self.error
        if self.lost:
            self.engine.lost(self.step)


def applies(model: Any) -> bool:
    """Whether the model's steps can run outside (see the module docstring)."""
    return (
        uses_default_train_step(model)
        and int(getattr(model, "steps_per_execution", 1) or 1) == 1
        and not tf.distribute.has_strategy()
        and not getattr(model, "run_eagerly", False)
    )


def pull(iterator: Any) -> Any:
    """The next batch, read here (eagerly); raises ``StopIteration`` at the end."""
    # one op (a tf.data iterator's __next__ turns the end of the data into StopIteration)
    return next(iterator if hasattr(iterator, "__next__") else iter(iterator))


class OutsideStep:
    """The record, backup and health functions of one model (see the module docstring).

    Args:
        engine: The engine.
        original: Keras's own train function (called with a one-element list).
        replayer: Runs a flagged step again, or None without the NaN check.
    """

    def __init__(self, engine: Engine, original: Any, replayer: Replayer | None) -> None:
        self.engine = engine
        self.original = original
        self.replayer = replayer
        self.plan: Plan | None = None
        self.update_rows: list[Row] = []
        model = engine.model
        self._variables = [w.variable for w in engine.weights]
        self._state = list(model.non_trainable_variables)
        what = engine.what
        self._wu = bool(what & {"weights", "updates"})
        self._chosen = [i for i, w in enumerate(engine.weights) if w.slot.selected]
        for i in self._chosen:
            v, name = self._variables[i], engine.weights[i].name
            for role in ("weight", "update"):
                if f"{role}s" in what:
                    self.update_rows.append(Row(name, role, 0, str(v.dtype), len(v.shape)))
        self._record = self._function(self._record_step)
        self._updates = own_function(self._update_step, reduce_retracing=True)
        self._shadow: list[Any] | None = None
        self._backup: Callable[[], Any] | None = None
        self._health: Callable[[], Any] | None = None

    @staticmethod
    def _function(fn: Callable[[Any], Any]) -> Any:
        return own_function(fn, reduce_retracing=True)

    # -- a scheduled step ----------------------------------------------------------------

    def _record_step(self, data: Any) -> dict[str, Any]:
        engine = self.engine
        variables = self._variables
        with unchecked(engine.numerics):
            saved = [tf.identity(tf.convert_to_tensor(v)) for v in self._state]
            before = [tf.identity(tf.convert_to_tensor(v)) for v in variables] if self._wu else []
        loss, calls, g = forward_backward(engine, data, variables)
        grads = g[: len(variables)]
        with unchecked(engine.numerics):
            # statistics only: the tensors as they are (no copy into one vector in the step);
            # the check is one sum, a flagged step is replayed (see record)
            plan, extra = collect(
                calls, loss=loss, out_grads=g[len(variables) :], weights=engine.weights,
                grads=grads, before=None, after=None, record=True, sentinel=False,
                recorder=False, what=engine.what, bins=engine.bins, packed=False,
            )  # fmt: skip
            if engine.sentinel:
                roots = [t for c in calls if not c.slot.name for _, t in c.outputs]
                extra["head"] = health_sum([loss, *roots, *grads])
        # the forward pass in training mode moved the moving statistics and seed states: back
        # (ordered after it: stateful ops of one resource run in program order in a function)
        with tf.control_dependencies([t for t in g if t is not None]):
            for v, value in zip(self._state, saved, strict=True):
                v.assign(value)
        self.plan = plan
        extra["before"] = before
        return extra

    def _update_step(self, before: list[Any]) -> list[Any]:
        parts = []
        for i in self._chosen:
            v = tf.convert_to_tensor(self._variables[i])
            if "weights" in self.engine.what:
                parts.append(before[i])
            if "updates" in self.engine.what:
                parts.append(v - before[i])
        return [p if p.dtype in (tf.float32, tf.float64) else tf.cast(p, tf.float32) for p in parts]

    def record(self, step: int, data: Any) -> tuple[Any, Finding | None]:
        """Run scheduled step ``step`` on ``data``; returns Keras's logs and any finding.

        The record pass runs first; a flagged one is replayed at once (the variables still
        hold the step's starting values), then Keras's own function trains while a helper
        thread hands the statistics to the writer, which computes them on the other core
        meanwhile: the step waits only for what the writer has not done by the end of
        Keras's step (back-pressure, nothing dropped), and the next record pass starts with
        at most half the writer's budget of this step's values still queued.
        """
        engine = self.engine
        extra = self._record(data)
        plan = self.plan
        if plan is None:  # set while tracing: never absent after a call
            raise RuntimeError("vizdebug: the record step produced no plan")
        before = extra.pop("before")
        values = extra.pop("values", None)
        head = extra.pop("head", None)
        finding = None
        if head is not None:
            loss, total = (float(v) for v in head.numpy())
            if not math.isfinite(total) and self.replayer is not None:
                finding = self._replay_now(step, loss, total, data)
        engine.finish(step, plan, extra)  # the structure, notes and the loss, before the rows
        handed = _Handover(engine, step, plan.rows, values) if values else None
        del values, extra
        try:
            logs = self.original([data])
        finally:
            if handed is not None:
                handed.join()
        if self._wu and self.update_rows:
            engine.defer_stats(step, self.update_rows, self._updates(list(before)), None)
        return logs, finding

    def _replay_now(self, step: int, loss: float, total: float, data: Any) -> Finding | None:
        """A flagged record pass, replayed before Keras trains (from the current values)."""
        replayer = self.replayer
        if replayer is None:
            return None
        weights = [np.asarray(v.numpy()) for v in self._variables]
        state = [np.asarray(v.numpy()) for v in self._state]
        return replayer.run(step, loss, total, weights, self._state, state, data)

    # -- any other step ------------------------------------------------------------------

    def _build_check(self) -> None:
        watched = [*self._variables, *self._state]
        self._shadow = [
            tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False, name="vizdebug_shadow")
            for v in watched
        ]
        shadow = self._shadow

        tracker = getattr(self.engine.model, "_loss_tracker", None)
        pair = [getattr(tracker, name, None) for name in ("total", "count")]
        running = pair if all(v is not None for v in pair) else []

        def sums() -> Any:  # the loss tracker's running total and count (float64)
            if not running:
                return tf.zeros([2], tf.float64)
            return tf.stack([tf.cast(tf.convert_to_tensor(v), tf.float64) for v in running])

        def backup() -> Any:
            for s, v in zip(shadow, watched, strict=True):
                s.assign(v)
            return sums()

        variables = self._variables

        def health() -> Any:
            # one sum per weight in float32 (a cast each only for other dtypes), one add_n: a
            # third fewer ops than float64 sums (measured on MobileNetV2: 1.25 ms vs 1.70 ms)
            parts = [tf.reduce_sum(v) for v in variables]
            parts = [p if p.dtype == tf.float32 else tf.cast(p, tf.float32) for p in parts]
            total = tf.cast(tf.add_n(parts), tf.float64) if parts else tf.zeros([], tf.float64)
            return tf.concat([tf.reshape(total, [1]), sums()], axis=0)

        self._backup = own_function(backup)
        self._health = own_function(health)

    def check(self, step: int, data: Any) -> tuple[Any, Finding | None]:
        """Run unscheduled step ``step`` on ``data`` with the NaN check."""
        if self._backup is None or self._health is None:
            self._build_check()
        if self._backup is None or self._health is None or not self._shadow:
            raise RuntimeError("vizdebug: the Keras check functions could not be built")
        with unchecked(self.engine.numerics):
            start = self._backup().numpy()
        logs = self.original([data])
        with unchecked(self.engine.numerics):
            total, loss_sum, count = (float(v) for v in self._health().numpy())
        # the step's loss: what it added to Keras's loss tracker (its running mean's parts)
        loss = float("nan")
        if count > start[1]:
            loss = (loss_sum - start[0]) / (count - start[1])
            self.engine.writer.scalar("loss", loss, step)
        if np.isfinite(total) or self.replayer is None:
            return logs, None
        n = len(self._variables)
        weights = [s.numpy() for s in self._shadow[:n]]
        state = [s.numpy() for s in self._shadow[n:]]
        after = [np.asarray(v.numpy()) for v in self._variables]
        finding = self.replayer.run(
            step, loss, total, weights, self._state, state, data, after=after
        )
        return logs, finding

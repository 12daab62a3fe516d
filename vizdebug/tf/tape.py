"""``vizdebug.tf.watch(model)``: per-layer health in a custom ``GradientTape`` training loop.

Three calls per step, eager or inside ``tf.function``::

    w = vizdebug.tf.watch(model)
    for x, y in batches:
        with tf.GradientTape() as tape:
            with w.forward(tape):                     # records (and watches) every layer output
                logits = model(x, training=True)
            loss = loss_fn(y, logits)
        grads = w.gradient(tape, loss)   # tape.gradient(loss, model.trainable_weights), and more
        optimizer.apply_gradients(zip(grads, model.trainable_weights))
        w.end_step(loss)                 # after the update: statistics, NaN check
    w.close()

``w.gradient`` asks the tape, in the same backward pass, for the gradients of the loss with
respect to every layer output. Run eagerly, the schedule is a Python integer compare. Inside a
``tf.function`` the schedule is a ``tf.cond`` on a step counter variable, and the host side (the
hand-off to the writer and the NaN check) runs in one ``tf.py_function`` per step. There,
``on_anomaly="raise"`` surfaces as the ``tf.errors`` error TensorFlow makes of the
:class:`~vizdebug.keras.NonFiniteError`; ``"stop"`` sets :attr:`TapeWatch.should_stop`, which the
loop should test.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import keras
import tensorflow as tf

from ..keras.callback import versions
from ..keras.engine import (
    DEFAULT_EVERY,
    DEFAULT_FIRST,
    Engine,
    Finding,
    NonFiniteError,
    OnAnomaly,
    check_options,
)
from ..keras.plan import Plan, collect
from ..sinks import Sink
from ..stats import HIST_BINS
from ..writer import Writer

__all__ = ["TapeWatch", "watch"]


def _read(variables: Sequence[Any]) -> list[Any]:
    return [tf.identity(tf.convert_to_tensor(v)) for v in variables]


class TapeWatch:
    """The handle :func:`watch` returns; see the module docstring for the three calls.

    Attributes:
        writer: The writer events go to.
        findings: Every NaN/Inf finding so far.
        should_stop: True after a finding with ``on_anomaly="stop"``.
    """

    def __init__(
        self,
        model: Any,
        *,
        logdir: str | os.PathLike[str] | None = None,
        every: int = DEFAULT_EVERY,
        first: int = DEFAULT_FIRST,
        what: Iterable[str] | None = None,
        include: str | Sequence[str] | None = None,
        exclude: str | Sequence[str] | None = None,
        sinks: Sequence[str | Sink] | None = None,
        on_anomaly: OnAnomaly = "warn",
        flight_recorder: bool = True,
        max_snapshots: int = 3,
        bins: int = HIST_BINS,
        writer: Writer | None = None,
    ) -> None:
        if not isinstance(model, keras.Model):
            raise TypeError(
                "vizdebug.tf.watch needs a Keras 3 model (keras.Model), got "
                f"{type(model).__module__}.{type(model).__name__}"
            )
        chosen = check_options(every, first, what, on_anomaly)
        if writer is not None and not isinstance(writer, Writer):
            raise TypeError(f"writer must be a vizdebug.Writer, got {type(writer).__name__}")
        self._owns_writer = writer is None
        self.writer = writer or Writer(logdir, sinks=sinks, framework="tensorflow",
                                       versions=versions())  # fmt: skip
        self.engine = Engine(
            model, self.writer, every=every, first=first, what=chosen, include=include,
            exclude=exclude, on_anomaly=on_anomaly, flight_recorder=flight_recorder,
            max_snapshots=max_snapshots, bins=bins,
        )  # fmt: skip
        self.engine.probe.install()
        self.findings: list[Finding] = []
        self.should_stop = False
        self._step = 0
        self._step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="vizdebug_step")
        self._calls: list[Any] = []
        self._before: list[Any] | None = None
        self._grads: Sequence[Any] | None = None
        self._out_grads: Sequence[Any] | None = None
        self._closed = False

    @property
    def step(self) -> int:
        """Steps ended so far (eager loops; in a ``tf.function``, read the events' steps)."""
        return self._step

    @contextmanager
    def forward(self, tape: tf.GradientTape) -> Iterator[None]:
        """Record the model's layer outputs inside the block and watch them on ``tape``."""
        engine = self.engine
        variables = [w.variable for w in engine.weights]
        self._before = _read(variables) if engine.what & {"weights", "updates"} else None
        self._grads = self._out_grads = None
        with engine.probe.recording(tape) as calls:
            yield
        self._calls = list(calls)

    def gradient(self, tape: tf.GradientTape, loss: Any) -> list[Any]:
        """``tape.gradient(loss, model.trainable_weights)``, plus the layer-output gradients."""
        variables = [w.variable for w in self.engine.weights]
        outs = [t for c in self._calls for _, t in c.outputs]
        g = tape.gradient(
            loss, variables + outs, unconnected_gradients=tf.UnconnectedGradients.ZERO
        )
        self._grads, self._out_grads = g[: len(variables)], g[len(variables) :]
        order = {id(w.variable): i for i, w in enumerate(self.engine.weights)}
        return [self._grads[order[id(v)]] for v in self.engine.model.trainable_weights]

    def end_step(self, loss: Any = None) -> None:
        """Close the step (after the optimizer update): statistics, NaN check, step + 1.

        Raises:
            NonFiniteError: With ``on_anomaly="raise"``, when a NaN or Inf appeared.
        """
        if self._closed:
            return
        engine = self.engine
        variables = [w.variable for w in engine.weights]
        # values after the update: for update statistics, else read only on a flagged step
        after: Any = _read(variables) if self._before is not None else lambda: _read(variables)

        def build(record: bool, sentinel: bool) -> tuple[Plan, dict[str, Any]]:
            return collect(
                self._calls, loss=loss, out_grads=self._out_grads, weights=engine.weights,
                grads=self._grads, before=self._before, after=after, record=record,
                sentinel=sentinel, recorder=engine.flight_recorder, what=engine.what,
                bins=engine.bins,
            )  # fmt: skip

        if not tf.inside_function():
            step = self._step
            plan, extra = build(engine.scheduled(step), engine.sentinel)
            self._advance()
            self._finish(step, plan, extra)
            return
        # Graph mode: the schedule is a tf.cond, the host side one py_function.
        holder: dict[str, Plan] = {}
        step_t = self._step_var.read_value()
        scheduled = tf.logical_and(
            bool(engine.what),
            tf.logical_or(step_t < engine.first, tf.equal(step_t % engine.every, 0)),
        )

        def record() -> tuple[Any, Any]:
            plan, extra = build(True, False)
            holder["rows"] = plan
            return tf.cast(extra["values"], tf.float64), extra["shapes"]

        def skip() -> tuple[Any, Any]:
            return tf.zeros([0], tf.float64), tf.zeros([0], tf.int32)

        stats, shapes = tf.cond(scheduled, record, skip)
        plan, extra = build(False, engine.sentinel)
        plan.rows = holder["rows"].rows
        loss_t = extra.get("loss", tf.zeros([]))
        sentinel = [
            extra.get("counts", tf.zeros([0, 3], tf.int32)),
            extra.get("io", tf.zeros([0], tf.float32)),
            extra.get("io_shapes", tf.zeros([0], tf.int32)),
        ]

        def host(*args: Any) -> int:
            step, sched, st, sh, ls, counts, io, io_shapes = args
            got: dict[str, Any] = {}
            if engine.sentinel:
                got.update(counts=counts, io=io, io_shapes=io_shapes)
            if loss is not None:
                got["loss"] = ls
            if bool(sched):
                got["values"], got["shapes"] = st, sh
            self._finish(int(step), plan, got)
            return 0

        tf.py_function(host, [step_t, scheduled, stats, shapes, loss_t, *sentinel], Tout=tf.int32)
        self._step_var.assign_add(1)

    def _advance(self) -> None:
        self._step += 1
        self._step_var.assign_add(1)
        self.writer.step = self._step

    def _finish(self, step: int, plan: Plan, extra: dict[str, Any]) -> None:
        finding = self.engine.finish(step, plan, extra)
        self.writer.step = step + 1
        if finding is None:
            return
        self.findings.append(finding)
        if self.engine.on_anomaly == "stop":
            self.should_stop = True
        elif self.engine.on_anomaly == "raise":
            raise NonFiniteError(finding)

    def close(self) -> None:
        """Unwrap the layers; close the writer if the watch created it (else flush). Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.engine.probe.remove()
        if self._owns_writer:
            self.writer.close()
        else:
            self.writer.flush()

    def __enter__(self) -> TapeWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def watch(model: Any, **options: Any) -> TapeWatch:
    """Watch a Keras model trained by a custom ``GradientTape`` loop.

    Args:
        model: A Keras 3 model (Sequential, functional or subclassed).
        **options: As :class:`vizdebug.keras.Callback` (``logdir``, ``every``, ``first``,
            ``what``, ``include``, ``exclude``, ``sinks``, ``on_anomaly``, ``flight_recorder``,
            ``max_snapshots``, ``bins``, ``writer``).

    Returns:
        The :class:`TapeWatch` handle (``forward``, ``gradient``, ``end_step``, ``close``).

    Raises:
        TypeError: ``model`` is not a Keras model.
        ValueError: A bad option value.
    """
    return TapeWatch(model, **options)

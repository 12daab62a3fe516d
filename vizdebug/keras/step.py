"""The instrumented training step the callback swaps in for the model's own.

For a model that keeps Keras's default ``train_step``, :func:`make_step` returns the same
computation -- forward pass, ``compute_loss``, loss tracker, ``optimizer.scale_loss``, one
``tape.gradient``, ``apply_gradients``, ``compute_metrics`` -- with the layer probe recording.
A recording (or fully checked) step makes one extra request in the gradient call: the gradient
of the loss with respect to every recorded layer output, which comes out of the same backward
pass; the statistics and per-layer checks (:func:`vizdebug.keras.plan.collect`) are computed in
the same function and returned under :data:`EXTRA` next to the metrics. Any other step gets
the light check of :mod:`vizdebug.keras.replay` (one sum, one returned vector), and
:func:`make_replay` builds the step that runs a flagged batch again.

A model that overrides ``train_step`` keeps it: the probe records the layer outputs while it runs
and weights are read before and after it. The gradients it hands the optimizer (``apply`` and
``apply_gradients`` are wrapped while the step is traced) are recorded and checked when every
trainable weight gets one; output gradients (and the loss tensor) stay inside the user's tape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import keras
import tensorflow as tf

from .engine import Engine
from .plan import Plan, collect
from .replay import Layout, light_check, replayable

__all__ = ["EXTRA", "make_replay", "make_step", "uses_default_train_step"]

#: Key of vizdebug's results in what the instrumented step returns (removed before Keras sees it).
EXTRA = "__vizdebug__"


def uses_default_train_step(model: Any) -> bool:
    """Whether the model's class keeps Keras's own ``train_step``."""
    return getattr(type(model), "train_step", None) is keras.Model.train_step


def _read(variables: list[Any]) -> list[Any]:
    return [tf.identity(tf.convert_to_tensor(v)) for v in variables]


def make_step(engine: Engine, *, kind: str, plans: dict[str, Plan]) -> Callable[[Any], Any]:
    """The instrumented ``train_step(data)``; the plan of each trace lands in ``plans[kind]``.

    Args:
        engine: The engine.
        kind: ``"record"`` (statistics and the check), ``"check"`` (the check only),
            ``"full"`` or ``"record_full"`` (the same with every layer checked in the step,
            for exact tracing and the live debugger). The check is the light one of
            :mod:`vizdebug.keras.replay` where it applies -- Keras's own ``train_step`` and a
            batch of numbers -- else the full one.
        plans: Where each trace's plan goes.
    """
    model = engine.model
    default = uses_default_train_step(model)
    own_step = type(model).train_step.__get__(model)  # the class's, not a swapped-in one
    what = engine.what
    record = kind.startswith("record")
    need_before = record and bool(what & {"weights", "updates"})

    def step(data: Any) -> Any:
        light = kind in ("check", "record") and default and engine.sentinel and replayable(data)
        want_out_grads = (engine.sentinel and not light) or (record and "gradients" in what)
        variables = [w.variable for w in engine.weights]
        with unchecked(engine.numerics):
            state = [(v, _read([v])[0]) for v in model.non_trainable_variables] if light else []
            before = _read(variables) if need_before else None
        loss = grads = out_grads = check = None
        layout = Layout()
        if default:
            x, y, sw = keras.utils.unpack_x_y_sample_weight(data)
            with tf.GradientTape() as tape:
                y_pred, calls = _forward(engine, x, tape if want_out_grads else None)
                loss = _loss(model, x, y, y_pred, sw, track=True)
                scaled = model.optimizer.scale_loss(loss) if model.optimizer else loss
            outs = [t for c in calls for _, t in c.outputs] if want_out_grads else []
            if variables or outs:
                g = tape.gradient(
                    scaled, variables + outs, unconnected_gradients=tf.UnconnectedGradients.ZERO
                )
                grads, out_grads = g[: len(variables)], (g[len(variables) :] if outs else None)
                if light:
                    roots = [t for c in calls if not c.slot.name for _, t in c.outputs]
                    with unchecked(engine.numerics):
                        check = light_check(
                            data=data, loss=loss, roots=roots, grads=grads,
                            variables=variables, state=state, layout=layout,
                        )  # fmt: skip
                if variables:
                    with tf.control_dependencies([] if check is None else [check]):
                        model.optimizer.apply_gradients(zip(grads, variables, strict=True))
            logs = model.compute_metrics(x, y, y_pred, sample_weight=sw)
        else:
            with engine.probe.recording(None) as calls, _applied(model) as applied:
                logs = own_step(data)
            grads = _own_gradients(engine, applied)
        with unchecked(engine.numerics):
            plan, extra = _describe(engine, calls, loss, out_grads, grads, before, check, kind)
        if check is not None:
            plan.layout = layout
        plans[kind] = plan
        result = dict(logs) if isinstance(logs, dict) else {"output": logs}
        result[EXTRA] = extra
        return result

    return step


def _describe(
    engine: Engine,
    calls: list[Any],
    loss: Any,
    out_grads: Any,
    grads: Any,
    before: Any,
    check: Any,
    kind: str,
) -> tuple[Plan, dict[str, Any]]:
    """The step's extra outputs (after the update): statistics, and the full check or ``check``."""
    variables = [w.variable for w in engine.weights]
    what, record = engine.what, kind.startswith("record")
    after: Any = _read(variables) if before is not None else None
    if check is not None:
        plan, extra = collect(
            calls, loss=None, out_grads=out_grads, weights=engine.weights, grads=grads,
            before=before, after=after, record=record, sentinel=False,
            recorder=False, what=what, bins=engine.bins,
        )  # fmt: skip
        extra["light"] = check
    else:
        if after is None and engine.sentinel:
            after = lambda: _read(variables)  # noqa: E731 -- read only on a flagged step
        plan, extra = collect(
            calls, loss=loss, out_grads=out_grads, weights=engine.weights, grads=grads,
            before=before, after=after, record=record, sentinel=engine.sentinel,
            recorder=engine.flight_recorder, what=what, bins=engine.bins,
            capture=engine.capture,
        )  # fmt: skip
    return plan, extra


def make_replay(engine: Engine) -> Callable[[dict[str, Plan]], Callable[[Any], dict[str, Any]]]:
    """A builder of the replay step (see :class:`vizdebug.keras.replay.Replayer`).

    The replay step runs the forward pass, the loss and one backward pass (weight and
    layer-output gradients) with every layer checked and its inputs and outputs packed; it
    applies no update and touches no metric.
    """

    def build(plans: dict[str, Plan]) -> Callable[[Any], dict[str, Any]]:
        def step(data: Any) -> dict[str, Any]:
            variables = [w.variable for w in engine.weights]
            loss, calls, g = forward_backward(engine, data, variables)
            plan, extra = collect(
                calls, loss=loss, out_grads=g[len(variables) :], weights=engine.weights,
                grads=g[: len(variables)], before=None, after=None, record=False,
                sentinel=True, recorder=True, what=engine.what, bins=engine.bins,
                capture=tf.constant(True),
            )  # fmt: skip
            plans["replay"] = plan
            return extra

        return step

    return build


@contextmanager
def unchecked(numerics: bool) -> Iterator[None]:
    """Ops made inside are not instrumented by ``tf.debugging.enable_check_numerics``.

    vizdebug's own ops carry the step's NaN onwards (sums, packing); instrumented, they could
    raise before the op of the user's layer that made the value does (TensorFlow runs
    independent ops in any order), and the error would name vizdebug's op instead.
    """
    if not numerics:
        yield
        return
    tf.debugging.disable_check_numerics()
    try:
        yield
    finally:
        tf.debugging.enable_check_numerics()


def forward_backward(engine: Engine, data: Any, variables: list[Any]) -> tuple[Any, Any, Any]:
    """A batch's forward pass with every layer recorded, and its backward pass without update.

    Returns:
        The loss, the recorded layer calls, and the gradients of ``variables`` followed by
        those of every recorded output (zeros where unconnected).
    """
    model = engine.model
    x, y, sw = keras.utils.unpack_x_y_sample_weight(data)
    with tf.GradientTape() as tape:
        y_pred, calls = _forward(engine, x, tape)
        loss = _loss(model, x, y, y_pred, sw, track=False)
        scaled = model.optimizer.scale_loss(loss) if model.optimizer else loss
    outs = [t for c in calls for _, t in c.outputs]
    g = tape.gradient(scaled, variables + outs, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return loss, calls, g


def _forward(engine: Engine, x: Any, tape: Any) -> tuple[Any, list[Any]]:
    model = engine.model
    with engine.probe.recording(tape) as calls:
        if getattr(model, "_call_has_training_arg", True):
            y_pred = model(x, training=True)
        else:
            y_pred = model(x)
    return y_pred, calls


def _loss(model: Any, x: Any, y: Any, y_pred: Any, sw: Any, *, track: bool) -> Any:
    loss = model.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sw, training=True)
    # Keras's own step feeds the "loss" metric from this tracker; so must we.
    tracker = getattr(model, "_loss_tracker", None)
    if track and tracker is not None:
        first = next(i for i in keras.tree.flatten(x) if i is not None)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        tracker.update_state(
            loss * replicas if replicas > 1 else loss, sample_weight=tf.shape(first)[0]
        )
    return loss


@contextmanager
def _applied(model: Any) -> Iterator[dict[int, Any]]:
    """The gradients the user's ``train_step`` hands the optimizer, by variable id."""
    got: dict[int, Any] = {}
    optimizer: Any = getattr(model, "optimizer", None)
    apply = getattr(optimizer, "apply", None)
    if apply is None:
        yield got
        return

    def wrapped(grads: Any, trainable_variables: Any = None) -> Any:
        grads = list(grads)
        variables = list(
            model.trainable_variables if trainable_variables is None else trainable_variables
        )
        for g, v in zip(grads, variables, strict=False):
            if g is not None:
                got[id(v)] = g
        return apply(grads, trainable_variables)

    optimizer.apply = wrapped  # apply_gradients calls apply
    try:
        yield got
    finally:
        del optimizer.apply


def _own_gradients(engine: Engine, applied: dict[int, Any]) -> list[Any] | None:
    """The weights' gradients in ``engine.weights`` order, or None (with a note) if incomplete."""
    if not engine.weights:
        return None
    grads = [applied.get(id(w.variable)) for w in engine.weights]
    if all(g is not None for g in grads):
        return grads
    engine.note(
        f"{type(engine.model).__name__}.train_step did not hand the optimizer a gradient for "
        "every trainable weight (optimizer.apply / apply_gradients): weight gradients are not "
        "recorded; output gradients never are for an own train_step",
        key="own-grads",
    )
    return None

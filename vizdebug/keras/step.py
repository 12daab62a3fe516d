"""The instrumented training step the callback swaps in for the model's own.

For a model that keeps Keras's default ``train_step``, :func:`make_step` returns the same
computation -- forward pass, ``compute_loss``, loss tracker, ``optimizer.scale_loss``, one
``tape.gradient``, ``apply_gradients``, ``compute_metrics`` -- with the layer probe recording and
one extra request in the gradient call: the gradient of the loss with respect to every recorded
layer output, which comes out of the same backward pass. The statistics and flags
(:func:`vizdebug.keras.plan.collect`) are computed in the same function and returned under
:data:`EXTRA` next to the metrics.

A model that overrides ``train_step`` keeps it: the probe records the layer outputs while it runs
and weights are read before and after it, but gradients (and the loss tensor) stay inside the
user's step, so only activations, weights, updates and their NaN checks are available.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import tensorflow as tf

from .engine import Engine
from .plan import Plan, collect

__all__ = ["EXTRA", "make_step", "uses_default_train_step"]

#: Key of vizdebug's results in what the instrumented step returns (removed before Keras sees it).
EXTRA = "__vizdebug__"


def uses_default_train_step(model: Any) -> bool:
    """Whether the model's class keeps Keras's own ``train_step``."""
    return getattr(type(model), "train_step", None) is keras.Model.train_step


def _read(variables: list[Any]) -> list[Any]:
    return [tf.identity(tf.convert_to_tensor(v)) for v in variables]


def make_step(
    engine: Engine, *, record: bool, plans: dict[str, Plan], key: str
) -> Callable[[Any], Any]:
    """The instrumented ``train_step(data)``; the plan of each trace lands in ``plans[key]``."""
    model = engine.model
    default = uses_default_train_step(model)
    own_step = type(model).train_step.__get__(model)  # the class's, not a swapped-in one
    what = engine.what
    need_before = record and bool(what & {"weights", "updates"})
    want_out_grads = engine.sentinel or (record and "gradients" in what)

    def step(data: Any) -> Any:
        variables = [w.variable for w in engine.weights]
        before = _read(variables) if need_before else None
        loss = grads = out_grads = None
        if default:
            x, y, sw = keras.utils.unpack_x_y_sample_weight(data)
            with tf.GradientTape() as tape:
                with engine.probe.recording(tape) as calls:
                    if getattr(model, "_call_has_training_arg", True):
                        y_pred = model(x, training=True)
                    else:
                        y_pred = model(x)
                loss = model.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sw, training=True)
                # Keras's own step feeds the "loss" metric from this tracker; so must we.
                tracker = getattr(model, "_loss_tracker", None)
                if tracker is not None:
                    first = next(i for i in keras.tree.flatten(x) if i is not None)
                    replicas = tf.distribute.get_strategy().num_replicas_in_sync
                    tracker.update_state(
                        loss * replicas if replicas > 1 else loss,
                        sample_weight=tf.shape(first)[0],
                    )
                scaled = model.optimizer.scale_loss(loss) if model.optimizer else loss
            outs = [t for c in calls for _, t in c.outputs] if want_out_grads else []
            if variables or outs:
                g = tape.gradient(
                    scaled, variables + outs, unconnected_gradients=tf.UnconnectedGradients.ZERO
                )
                grads, out_grads = g[: len(variables)], (g[len(variables) :] if outs else None)
                if variables:
                    model.optimizer.apply_gradients(zip(grads, variables, strict=True))
            logs = model.compute_metrics(x, y, y_pred, sample_weight=sw)
        else:
            with engine.probe.recording(None) as calls:
                logs = own_step(data)
        after: Any = _read(variables) if need_before else None
        if after is None and engine.sentinel:
            after = lambda: _read(variables)  # noqa: E731 -- read only on a flagged step
        plan, extra = collect(
            calls, loss=loss, out_grads=out_grads, weights=engine.weights, grads=grads,
            before=before, after=after, record=record, sentinel=engine.sentinel,
            recorder=engine.flight_recorder, what=what, bins=engine.bins,
            capture=engine.capture,
        )  # fmt: skip
        plans[key] = plan
        result = dict(logs) if isinstance(logs, dict) else {"output": logs}
        result[EXTRA] = extra
        return result

    return step

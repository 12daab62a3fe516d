"""vizdebug.tf.watch in custom GradientTape loops, eager and inside tf.function."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras_models import LOSS, poisoned_mlp

import vizdebug
from vizdebug.keras import NonFiniteWarning
from vizdebug.runs import load_run

X = np.random.default_rng(5).random((8, 6), dtype=np.float32)
Y = np.random.default_rng(6).integers(0, 3, 8)


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "tf.function"])
def test_custom_loop_records_and_traces_nan(tmp_path: Path, compiled: bool) -> None:
    model, poison = poisoned_mlp()
    opt = keras.optimizers.SGD(0.05)
    w = vizdebug.tf.watch(model, logdir=tmp_path, every=2, first=1)

    def train_step(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            with w.forward(tape):
                logits = model(x, training=True)
            loss = LOSS(y, logits)
        grads = w.gradient(tape, loss)
        opt.apply_gradients(zip(grads, model.trainable_weights, strict=True))
        w.end_step(loss)
        return loss

    step = tf.function(train_step) if compiled else train_step
    with pytest.warns(NonFiniteWarning, match="poison"):
        for i in range(5):
            poison.on.assign(1.0 if i == 3 else 0.0)
            step(X, Y)
    w.close()
    run = load_run(tmp_path)
    assert sorted({s.step for s in run.stats}) == [0, 2, 4]
    roles = Counter(s.role for s in run.stats if s.step == 0)
    assert roles["output"] == roles["grad_output"] == 4  # model, fc1, poison, fc2
    assert roles["grad"] == roles["weight"] == roles["update"] == 4
    assert [s.step for s in run.scalars["loss"]] == [0, 1, 2, 3, 4]
    assert next((a.step, a.module, a.role) for a in run.anomalies) == (3, "poison", "output")
    assert "call" not in vars(model.layers[0])  # unwrapped

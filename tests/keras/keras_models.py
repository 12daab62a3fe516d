"""Small Keras models of every kind the adapter must handle, and their data."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def digits_like(n: int = 64) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    rng = np.random.default_rng(0)
    return rng.random((n, 8, 8, 1), dtype=np.float32), rng.integers(0, 10, n)


def sequential_cnn() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(4, 3, activation="relu", name="conv"),
            keras.layers.Flatten(name="flat"),
            keras.layers.Dense(10, name="head"),
        ],
        name="cnn",
    )


def functional_multi() -> keras.Model:
    """Two inputs, two outputs, one layer shared by both branches."""
    a = keras.Input((6,), name="a")
    b = keras.Input((6,), name="b")
    shared = keras.layers.Dense(5, activation="tanh", name="shared")
    ha, hb = shared(a), shared(b)
    merged = keras.layers.Concatenate(name="cat")([ha, hb])
    out1 = keras.layers.Dense(3, name="out1")(merged)
    out2 = keras.layers.Dense(1, name="out2")(hb)
    return keras.Model([a, b], [out1, out2], name="multi")


class Split(keras.layers.Layer):
    """A layer with two outputs."""

    def call(self, x: Any) -> tuple[Any, Any]:
        return x[:, :2] * 2.0, x[:, 2:]


class Subclassed(keras.Model):
    """A subclassed model using a nested Sequential and a two-output layer."""

    def __init__(self) -> None:
        super().__init__(name="sub")
        self.block = keras.Sequential(
            [keras.layers.Dense(6, activation="relu", name="d1"), keras.layers.Dense(4, name="d2")],
            name="block",
        )
        self.split = Split(name="split")
        self.head = keras.layers.Dense(3, name="head")

    def call(self, x: Any, training: bool = False) -> Any:
        left, right = self.split(self.block(x, training=training))
        return self.head(tf.concat([left, right], axis=-1))


class Poison(keras.layers.Layer):
    """Adds NaN to its input while ``on`` is 1 (set from a callback at a chosen step)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.on = tf.Variable(0.0, trainable=False)

    def call(self, x: Any) -> Any:
        # sqrt(-1) is NaN; no NaN constant, which check numerics would flag at every step
        return x + tf.sqrt(-tf.cast(self.on, x.dtype))


class SwitchAt(keras.callbacks.Callback):  # type: ignore[misc]
    """Sets ``layer.on`` to ``at`` at one global batch index and to ``other`` elsewhere."""

    def __init__(self, layer: Any, step: int, at: float = 1.0, other: float = 0.0) -> None:
        super().__init__()
        self.layer, self.step, self.seen = layer, step, 0
        self.values = at, other

    def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
        self.layer.on.assign(self.values[0] if self.seen == self.step else self.values[1])
        self.seen += 1


def PoisonAt(layer: Poison, step: int) -> SwitchAt:
    """Switches a Poison layer on at one global batch index."""
    return SwitchAt(layer, step)


def poisoned_mlp() -> tuple[keras.Model, Poison]:
    poison = Poison(name="poison")
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(8, activation="relu", name="fc1"),
            poison,
            keras.layers.Dense(3, name="fc2"),
        ],
        name="mlp",
    )
    return model, poison


def compile_(model: keras.Model, *, eager: bool = False, **kw: Any) -> keras.Model:
    model.compile(keras.optimizers.SGD(0.05), LOSS, run_eagerly=eager, **kw)
    return model

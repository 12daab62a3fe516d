"""A NaN appears in one layer at a known step; vizdebug names the layer and the step.

A ``Poison`` layer adds ``sqrt(-1)`` (NaN) to its input from step 30 on. The callback stops the
run at the first non-finite value (``on_anomaly="stop"``), records an anomaly naming layer
``poison`` and step 30, and saves the failing step's layer inputs and outputs as a safetensors
snapshot (the flight recorder). ``--check-numerics`` makes TensorFlow itself stop at the op.

Run: ``python examples/keras_nan.py [--check-numerics]`` then ``vizdebug show runs/<newest>``.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import tensorflow as tf
from sklearn.datasets import load_digits

import vizdebug

NAN_AT = 30


class Poison(keras.layers.Layer):  # type: ignore[misc]
    """Identity until ``on`` is set; then adds sqrt(-1) = NaN."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.on = tf.Variable(0.0, trainable=False)

    def call(self, x: Any) -> Any:
        return x + tf.sqrt(-self.on)


class SwitchOn(keras.callbacks.Callback):  # type: ignore[misc]
    """Turns the poison on at global batch ``NAN_AT``."""

    def __init__(self, layer: Poison) -> None:
        super().__init__()
        self.layer, self.batches = layer, 0

    def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
        if self.batches == NAN_AT:
            self.layer.on.assign(1.0)
        self.batches += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check-numerics", action="store_true")
    args = parser.parse_args()
    digits = load_digits()
    x, y = digits.data.astype("float32") / 16.0, digits.target
    poison = Poison(name="poison")
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(32, activation="relu", name="fc1"),
            poison,
            keras.layers.Dense(10, name="fc2"),
        ]
    )
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    callback = vizdebug.keras.Callback(on_anomaly="stop", check_numerics=args.check_numerics)
    model.fit(x, y, batch_size=32, epochs=3, callbacks=[SwitchOn(poison), callback], verbose=0)
    for finding in callback.findings:
        print(finding.message)
    print(f"run written to {callback.writer.run_dir if callback.writer else '?'}")


if __name__ == "__main__":
    main()

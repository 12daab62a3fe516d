"""Train a small Keras CNN on scikit-learn's digits with vizdebug watching: one extra line.

Run: ``python examples/keras_digits.py`` then ``vizdebug show runs/<newest>`` (or
``tensorboard --logdir runs``).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
from sklearn.datasets import load_digits

import vizdebug


def main() -> None:
    digits = load_digits()
    x = (digits.images / 16.0).astype("float32")[..., None]
    y = digits.target
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(16, 3, activation="relu", padding="same", name="conv1"),
            keras.layers.Conv2D(32, 3, activation="relu", name="conv2"),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(64, activation="relu", name="fc"),
            keras.layers.Dense(10, name="logits"),
        ]
    )
    model.compile(
        keras.optimizers.Adam(1e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    callback = vizdebug.keras.Callback(every=20)  # the one line
    model.fit(x, y, batch_size=64, epochs=5, validation_split=0.1, callbacks=[callback])
    print(f"run written to {callback.writer.run_dir if callback.writer else '?'}")


if __name__ == "__main__":
    main()

"""Keras adapter overhead: seconds per epoch of a small CNN on scikit-learn's digits, one thread.

Prints a markdown table: bare ``model.fit``; with ``vizdebug.keras.Callback()`` (default
schedule); vizdebug's NaN/Inf check alone (``what=()``); vizdebug recording everything every
batch; Keras's own ``TensorBoard(histogram_freq=1, update_freq="batch")``; and
``tf.debugging.enable_check_numerics``. Each configuration trains a fresh model; the first epoch
(tracing) is left out and the median of the others is reported.

Run: ``python benchmarks/bench_keras.py [--epochs 8] [--repeats 2]`` (about 2-3 minutes).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf

# One thread, set before any TF op runs.
tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)

import keras  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

import vizdebug  # noqa: E402


class EpochTimer(keras.callbacks.Callback):  # type: ignore[misc]
    """Wall time of every epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []
        self._t = 0.0

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self._t = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self.times.append(time.perf_counter() - self._t)


def data() -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    digits = load_digits()
    x = (digits.images / 16.0).astype("float32")[..., None]
    return x, digits.target.astype("int64")


def cnn() -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(16, 3, activation="relu", padding="same"),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10),
        ]
    )
    model.compile(
        keras.optimizers.SGD(0.05, momentum=0.9),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def run(make_callbacks: Callable[[str], list[Any]], epochs: int, numerics: bool = False) -> float:
    x, y = data()
    model = cnn()
    timer = EpochTimer()
    with tempfile.TemporaryDirectory() as tmp:
        if numerics:
            tf.debugging.enable_check_numerics()
        try:
            model.fit(x, y, batch_size=64, epochs=epochs, verbose=0,
                      callbacks=[timer, *make_callbacks(tmp)])  # fmt: skip
        finally:
            if numerics:
                tf.debugging.disable_check_numerics()
    return statistics.median(timer.times[1:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    configs: list[tuple[str, Callable[[str], list[Any]], bool]] = [
        ("bare `model.fit`", lambda d: [], False),
        ("vizdebug default (every 50, first 5, NaN check)",
         lambda d: [vizdebug.keras.Callback(logdir=d + "/v")], False),
        ("vizdebug NaN/Inf check only (`what=()`)",
         lambda d: [vizdebug.keras.Callback(logdir=d + "/v", what=())], False),
        ("vizdebug everything, every batch",
         lambda d: [vizdebug.keras.Callback(logdir=d + "/v", every=1)], False),
        ('keras TensorBoard(histogram_freq=1, update_freq="batch")',
         lambda d: [keras.callbacks.TensorBoard(d + "/tb", histogram_freq=1,
                                                update_freq="batch")], False),
        ("tf.debugging.enable_check_numerics", lambda d: [], True),
    ]  # fmt: skip
    results: dict[str, list[float]] = {name: [] for name, _, _ in configs}
    for _ in range(args.repeats):  # interleaved, so drift hits every row alike
        for name, make, numerics in configs:
            results[name].append(run(make, args.epochs, numerics))
    bare = min(results[configs[0][0]])
    print(f"Keras adapter, digits CNN (1,797 images, batch 64, 29 steps/epoch), one thread; "
          f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, "
          f"TensorFlow {tf.__version__}, Keras {keras.__version__}; median epoch of "
          f"{args.epochs - 1} after the first, best of {args.repeats} runs.\n")  # fmt: skip
    print("| configuration | s / epoch | x bare |")
    print("|---|---:|---:|")
    for name, _, _ in configs:
        best = min(results[name])
        print(f"| {name} | {best:.4f} | {best / bare:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

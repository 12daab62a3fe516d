"""Keras adapter overhead: seconds per epoch of a small CNN on scikit-learn's digits, one thread.

Prints a markdown table: bare ``model.fit``; with ``vizdebug.keras.Callback()`` (default
schedule); vizdebug's NaN/Inf check alone (``what=()``); vizdebug recording everything every
batch; Keras's own ``TensorBoard(histogram_freq=1, update_freq="batch")``; and
``tf.debugging.enable_check_numerics``. Each configuration has its own model; they take turns,
two epochs each, in shuffled order, each with its own callbacks for the whole run (so the
schedules are in steady state), and the second epoch of each turn is timed (the first traces
vizdebug's train functions again).

Run: ``python benchmarks/bench_keras.py [--rounds 16]`` (about 4 minutes).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
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


def run(model: keras.Model, callbacks: list[Any], epochs: int, numerics: bool) -> list[float]:
    """Train ``epochs`` epochs; the epoch times."""
    x, y = data()
    timer = EpochTimer()
    if numerics:
        tf.debugging.enable_check_numerics()
    try:
        model.fit(x, y, batch_size=64, epochs=epochs, verbose=0, callbacks=[timer, *callbacks])
    finally:
        if numerics:
            tf.debugging.disable_check_numerics()
    return timer.times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=16)
    args = parser.parse_args(argv)
    configs: list[tuple[str, Callable[[str], list[Any]], bool]] = [
        ("bare `model.fit`", lambda d: [], False),
        ("bare `model.fit`, a second copy (A/A: the noise floor)", lambda d: [], False),
        ("vizdebug default (every 100, first 5, NaN check)",
         lambda d: [vizdebug.keras.Callback(logdir=d, keep_open=True)], False),
        ("vizdebug NaN/Inf check only (`what=()`)",
         lambda d: [vizdebug.keras.Callback(logdir=d, what=(), keep_open=True)], False),
        ("vizdebug everything, every batch",
         lambda d: [vizdebug.keras.Callback(logdir=d, every=1, keep_open=True)], False),
        ('keras TensorBoard(histogram_freq=1, update_freq="batch")',
         lambda d: [keras.callbacks.TensorBoard(d, histogram_freq=1, update_freq="batch")],
         False),
        ("tf.debugging.enable_check_numerics", lambda d: [], True),
    ]  # fmt: skip
    tmp = tempfile.TemporaryDirectory()
    models = {name: cnn() for name, _, _ in configs}
    # one set of callbacks per configuration for the whole run: schedules in steady state
    callbacks = {name: make(f"{tmp.name}/{i}") for i, (name, make, _) in enumerate(configs)}
    for name, _, numerics in configs:  # trace every train function once
        run(models[name], callbacks[name], 1, numerics)
    results: dict[str, list[float]] = {name: [] for name, _, _ in configs}
    rng = random.Random(0)
    order = list(configs)
    for _ in range(args.rounds):  # interleaved, so drift hits every row alike
        rng.shuffle(order)
        for name, _, numerics in order:
            # the first epoch of a fit traces vizdebug's train functions again: time the second
            results[name] += run(models[name], callbacks[name], 2, numerics)[1:]
    for cbs in callbacks.values():
        for cb in cbs:
            if isinstance(cb, vizdebug.keras.Callback):
                cb.close()
    tmp.cleanup()
    bare = statistics.median(results[configs[0][0]])
    print(f"Keras adapter, digits CNN (1,797 images, batch 64, 29 steps/epoch), one thread; "
          f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, "
          f"TensorFlow {tf.__version__}, Keras {keras.__version__}; configurations take turns "
          f"({args.rounds} rounds, shuffled), one model each; median of the second epoch of "
          f"each turn.\n")  # fmt: skip
    print("| configuration | s / epoch | x bare |")
    print("|---|---:|---:|")
    for name, _, _ in configs:
        median = statistics.median(results[name])
        print(f"| {name} | {median:.4f} | {median / bare:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

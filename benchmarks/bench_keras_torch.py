"""Keras 3 on the torch backend: what ``vizdebug.keras.Callback`` costs, seconds per epoch.

A small CNN on scikit-learn's digits (Conv2D, BatchNormalization, Conv2D, Dropout, Dense;
batch 64, 28 steps an epoch), one torch thread, ``KERAS_BACKEND=torch`` (set here). Prints a
markdown table: bare ``model.fit``; the callback on its default schedule; its NaN/Inf check
alone (``what=()``); everything recorded every batch. Each configuration has its own model and
callback (``keep_open``: one run, schedules in steady state); they take turns of two epochs in
shuffled order, the second epoch timed, each turn next to a turn of the bare model (its
ratio's pair; see ``paired.py``).

A second table times single training steps, the four configurations called in turn step by
step on the same batches (Keras's own train function, and the callback's wrapper of it, set up
as ``fit`` would): per-step costs without the epoch-level noise (a shared machine's load
changes over seconds; the steps of one round are milliseconds apart).

Run: ``python benchmarks/bench_keras_torch.py [--rounds 8] [--steps 400]`` (about two
minutes).
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
from typing import Any

os.environ["KERAS_BACKEND"] = "torch"

import keras
import torch
from conditions import Steal
from paired import beside_bare, paired_ratio
from sklearn.datasets import load_digits

import vizdebug
import vizdebug.keras
from vizdebug.runs.reader import load_run
from vizdebug.runs.summary import run_counts

torch.set_num_threads(1)


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


def cnn() -> keras.Model:
    layers = keras.layers
    inp = keras.Input((8, 8, 1))
    x = layers.Conv2D(16, 3, padding="same", name="conv1")(inp)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.Activation("relu", name="relu")(x)
    x = layers.Conv2D(32, 3, activation="relu", name="conv2")(x)
    x = layers.Flatten(name="flat")(x)
    x = layers.Dropout(0.2, name="drop")(x)
    x = layers.Dense(64, activation="relu", name="fc")(x)
    model = keras.Model(inp, layers.Dense(10, name="head")(x))
    model.compile(
        keras.optimizers.SGD(0.05, momentum=0.9),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def per_step(
    x: Any, y: Any, configs: dict[str, dict[str, Any] | None], steps: int, logdir: str
) -> dict[str, list[float]]:
    """Seconds per training step of each configuration, the configurations called in turn."""
    batches = [
        [(torch.from_numpy(x[i : i + 64]), torch.from_numpy(y[i : i + 64]))]
        for i in range(0, len(x) - 63, 64)
    ]
    fns: dict[str, Any] = {}
    opened: list[Any] = []
    for i, (name, opts) in enumerate(configs.items()):
        model = cnn()
        model.fit(x[:64], y[:64], batch_size=64, epochs=1, verbose=0)  # builds everything
        if opts is None:
            fns[name] = model.train_function
            continue
        cb = vizdebug.keras.Callback(logdir=f"{logdir}/step-{i}", **opts)
        cb.set_model(model)
        cb.on_train_begin()
        opened.append(cb)
        fns[name] = cb._train_function
    times: dict[str, list[float]] = {name: [] for name in fns}
    for k in range(steps):
        order = list(fns)
        random.Random(k).shuffle(order)
        for name in order:
            t = time.perf_counter()
            fns[name](batches[k % len(batches)])
            times[name].append(time.perf_counter() - t)
    for cb in opened:
        cb.on_train_end()
    return {name: v[steps // 10 :] for name, v in times.items()}  # warm-up dropped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=400)
    args = parser.parse_args()
    digits = load_digits()
    x = (digits.images / 16.0).astype("float32")[..., None]
    y = digits.target.astype("int64")
    logdir = tempfile.mkdtemp(prefix="bench-keras-torch-")
    configs = {
        "bare `model.fit`": None,
        "vizdebug default (every 100, first 5, NaN check)": {},
        "vizdebug NaN/Inf check only (`what=()`)": {"what": ()},
        "vizdebug everything, every batch": {"every": 1},
    }
    models: dict[str, keras.Model] = {}
    callbacks: dict[str, list[Any]] = {}
    for i, (name, opts) in enumerate(configs.items()):
        models[name] = cnn()
        options = {"logdir": f"{logdir}/{i}", "keep_open": True, **(opts or {})}
        callbacks[name] = [] if opts is None else [vizdebug.keras.Callback(**options)]
    bare = next(iter(configs))
    results: dict[str, list[float]] = {n: [] for n in configs}
    neighbours: dict[str, list[float]] = {n: [] for n in configs if n != bare}
    rng = random.Random(0)
    steal = Steal()
    for name in configs:  # warm-up: first fit, first traces
        models[name].fit(x, y, batch_size=64, epochs=1, verbose=0, callbacks=callbacks[name])
    for _ in range(args.rounds):
        pair: dict[str, float] = {}
        for who, turn in beside_bare(rng, list(neighbours), bare):
            timer = EpochTimer()
            models[who].fit(x, y, batch_size=64, epochs=2, verbose=0,
                            callbacks=[timer, *callbacks[who]])  # fmt: skip
            pair[who] = timer.times[-1]
            if len(pair) == 2:  # the tool's turn and its bare neighbour
                results[turn].append(pair[turn])
                neighbours[turn].append(pair[bare])
                results[bare].append(pair[bare])
                pair = {}
    dropped: dict[str, int] = {}
    recorded: dict[str, str] = {}
    for i, (name, cbs) in enumerate(callbacks.items()):
        for cb in cbs:
            cb.close()
            dropped[name] = sum(cb.writer.dropped.values()) if cb.writer else 0
            counts = run_counts(load_run(f"{logdir}/{i}"))
            recorded[name] = f"{counts.recorded}/{counts.steps}"
    print(f"{platform.machine()}, {os.cpu_count()} cores, Python {sys.version.split()[0]},"
          f" keras {keras.__version__} (torch backend), torch {torch.__version__}, one torch "
          f"thread; {args.rounds} rounds, {time.strftime('%Y-%m-%d')}; tensorflow imported: "
          f"{'tensorflow' in sys.modules}.\n")  # fmt: skip
    print("| configuration | median s/epoch | x bare (paired) | 95% CI | recorded/steps "
          "| dropped |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|")
    for name in configs:
        med = statistics.median(results[name])
        if name == bare:
            print(f"| {name} | {med:.3f} | 1.00x | - | - | - |")
            continue
        ratio, lo, hi = paired_ratio(results[name], neighbours[name])
        print(f"| {name} | {med:.3f} | {ratio:.2f}x | {lo:.2f}x - {hi:.2f}x | {recorded[name]} "
              f"| {dropped[name]} |")  # fmt: skip
    print()
    steps = per_step(x, y, configs, args.steps, logdir)
    print(f"Per training step, {args.steps} steps of each, called in turn (first tenth dropped):\n")
    print("| configuration | median ms/step | x bare (paired) | 95% CI |")
    print("|---|---:|---:|---:|")
    for name, values in steps.items():
        med = statistics.median(values) * 1e3
        if name == bare:
            print(f"| {name} | {med:.2f} | 1.00x | - |")
            continue
        ratio, lo, hi = paired_ratio(values, steps[bare])
        print(f"| {name} | {med:.2f} | {ratio:.2f}x | {lo:.2f}x - {hi:.2f}x |")
    print()
    print(steal.describe())


if __name__ == "__main__":
    main()

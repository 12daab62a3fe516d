"""Keras adapter overhead: seconds per epoch of a small CNN on scikit-learn's digits, one thread.

Prints a markdown table: bare ``model.fit``; with ``vizdebug.keras.Callback()`` (default
schedule); vizdebug's NaN/Inf check alone (``what=()``); vizdebug recording everything every
batch; Keras's own ``TensorBoard(histogram_freq=1, update_freq="batch")``; and
``tf.debugging.enable_check_numerics``. Each configuration has its own model; they take turns,
two epochs each, in shuffled order, each with its own callbacks for the whole run (so the
schedules are in steady state), and the second epoch of each turn is timed (the first traces
vizdebug's train functions again). Each turn runs right next to a turn of the bare model (the
two in random order), and its ratio is taken against that neighbour: the load on a shared
machine changes over seconds, so neighbours cancel it better than turns further apart.

A second table times the train functions alone, called in turn step by step (Keras's own,
vizdebug's checking and recording functions): per-step costs without the epoch-level noise.

A third table trains MobileNetV2 (96x96, batch 16, ``weights=None``) the same way, with Keras's
``TensorBoard(histogram_freq=1)`` and ``enable_check_numerics`` beside vizdebug, plus the time
to the first batch of a fresh model (tracing included) and what each writer dropped. The first
batch of each configuration is timed in a fresh process of its own (one per configuration and
round, in shuffled order): in one process, whichever ran first would pay TensorFlow's one-time
start-up for the others.

Run: ``python benchmarks/bench_keras.py [--rounds 16] [--steps 600] [--only mobilenet]
[--mobilenet-rounds 3] [--mobilenet-steps 6] [--first-rounds 2]`` (about 5 minutes for the
digits CNN, 10 for MobileNetV2).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import subprocess
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
from conditions import Steal  # noqa: E402
from paired import beside_bare, paired_ratio  # noqa: E402
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


def per_step(
    steps: int,
    logdir: str,
    make: Callable[[], keras.Model] | None = None,
    xy: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]] | None = None,
    batch: int = 64,
) -> dict[str, list[float]]:
    """Seconds per call of the train functions themselves, called in turn on the same data.

    Keras's own train function, and the callback's train function on an unscheduled step (the
    NaN check beside Keras's function) and on a scheduled one (the record pass, Keras's
    function, the weights and updates), each on its own model and iterator: no other
    callbacks, no epoch boundaries. The writer thread's statistics are included as far as a
    step waits for them (a scheduled step hands them over while Keras's step runs and waits
    only for what the writer has not done by then). The model is the digits CNN unless
    ``make`` and ``xy`` say otherwise.
    """
    make = make or cnn
    x, y = xy or data()
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch, drop_remainder=True).repeat()
    fns: dict[str, Any] = {}
    hooked: list[vizdebug.keras.Callback] = []
    for name, opts in [
        ("Keras's own train function", None),
        ("vizdebug unscheduled step (NaN check)", {"what": ()}),
        ("vizdebug scheduled step (record pass + Keras's step)", {"every": 1}),
    ]:
        model = make()
        model.fit(x[:batch], y[:batch], batch_size=batch, epochs=1, verbose=0)  # builds Keras's
        if opts is None:
            fns[name] = model.train_function
            continue
        cb = vizdebug.keras.Callback(logdir=f"{logdir}/{len(fns)}", **opts)
        cb.set_model(model)
        cb.on_train_begin()
        hooked.append(cb)
        fns[name] = cb._train_function
    iters = {name: iter(ds) for name in fns}
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(steps):
        for name, fn in fns.items():
            t = time.perf_counter()
            out = fn(iters[name])
            for v in tf.nest.flatten(out):
                if hasattr(v, "numpy"):
                    v.numpy()
            times[name].append(time.perf_counter() - t)
    for cb in hooked:
        cb.on_train_end()
    return {name: v[steps // 10 :] for name, v in times.items()}  # warm-up dropped


def mobilenet() -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(
        input_shape=(96, 96, 3), weights=None, classes=10, classifier_activation=None
    )
    model.compile(
        keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    return model


class FirstBatch(keras.callbacks.Callback):  # type: ignore[misc]
    """Seconds from ``fit`` being called (``start``) to the end of its first batch; then stop."""

    def __init__(self, start: float) -> None:
        super().__init__()
        self.start, self.took = start, 0.0

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        if not self.took:
            self.took = time.perf_counter() - self.start
            self.model.stop_training = True


def mobilenet_configs() -> list[tuple[str, Callable[[str], list[Any]], bool]]:
    """``(name, callbacks for a log directory, enable_check_numerics)`` of the MobileNetV2 table."""
    return [
        ("bare `model.fit`", lambda d: [], False),
        ("vizdebug default (every 100, first 5, NaN check)",
         lambda d: [vizdebug.keras.Callback(logdir=d, keep_open=True)], False),
        ("vizdebug NaN/Inf check only (`what=()`)",
         lambda d: [vizdebug.keras.Callback(logdir=d, what=(), keep_open=True)], False),
        ("vizdebug everything, every batch",
         lambda d: [vizdebug.keras.Callback(logdir=d, every=1, keep_open=True)], False),
        ("keras TensorBoard(histogram_freq=1)",
         lambda d: [keras.callbacks.TensorBoard(d, histogram_freq=1)], False),
        ("tf.debugging.enable_check_numerics", lambda d: [], True),
    ]  # fmt: skip


def mobilenet_data(steps: int) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """``steps`` batches of 16 random 96x96 images and labels (the same every call)."""
    rng_data = np.random.default_rng(0)
    x = rng_data.random((16 * steps, 96, 96, 3), dtype=np.float32)
    return x, rng_data.integers(0, 10, 16 * steps)


def fit_mobilenet(
    model: keras.Model, cbs: list[Any], epochs: int, numerics: bool, steps: int
) -> list[float]:
    """Train ``epochs`` epochs of ``steps`` batches of 16; the epoch times."""
    x, y = mobilenet_data(steps)
    timer = EpochTimer()
    if numerics:
        tf.debugging.enable_check_numerics()
    try:
        model.fit(x, y, batch_size=16, epochs=epochs, verbose=0, shuffle=False,
                  callbacks=[timer, *cbs])  # fmt: skip
    finally:
        if numerics:
            tf.debugging.disable_check_numerics()
    return timer.times


def first_batch_child(index: int) -> None:
    """In a fresh process: configuration ``index``'s first batch (printed: seconds)."""
    _, make, numerics = mobilenet_configs()[index]
    model = mobilenet()
    x, y = mobilenet_data(2)
    with tempfile.TemporaryDirectory() as tmp:
        cbs = make(tmp)
        # from the fit call: tracing and TensorFlow's first-use set-up included
        probe = FirstBatch(time.perf_counter())
        if numerics:
            tf.debugging.enable_check_numerics()
        model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False,
                  callbacks=[probe, *cbs])  # fmt: skip
        for cb in cbs:
            if isinstance(cb, vizdebug.keras.Callback):
                cb.close()
    print(f"FIRST {probe.took!r}")


def first_batches(rounds: int) -> dict[str, list[float]]:
    """Each configuration's first batch, each in a fresh process, in shuffled order by round."""
    names = [name for name, _, _ in mobilenet_configs()]
    took: dict[str, list[float]] = {name: [] for name in names}
    rng = random.Random(1)
    for _ in range(rounds):
        order = list(range(len(names)))
        rng.shuffle(order)
        for i in order:
            out = subprocess.run(
                [sys.executable, __file__, "--first-batch-child", str(i)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            line = next(x for x in out.stdout.splitlines() if x.startswith("FIRST "))
            took[names[i]].append(float(line.split()[1]))
    return took


def real_model(rounds: int, steps: int, first_rounds: int) -> None:
    """MobileNetV2 (96x96, batch 16, weights=None): the same comparison, plus the first batch."""
    configs = mobilenet_configs()
    first = first_batches(first_rounds)
    tmp = tempfile.TemporaryDirectory()
    models = {name: mobilenet() for name, _, _ in configs}
    callbacks = {name: make(f"{tmp.name}/{i}") for i, (name, make, _) in enumerate(configs)}
    for name, _, numerics in configs:
        fit_mobilenet(models[name], callbacks[name], 1, numerics, steps)
    bare = configs[0][0]
    numerics_of = {name: flag for name, _, flag in configs}
    results: dict[str, list[float]] = {name: [] for name, _, _ in configs}
    neighbours: dict[str, list[float]] = {name: [] for name, _, _ in configs}
    steal = Steal()
    rng = random.Random(0)
    for _ in range(rounds):
        for name, turn in beside_bare(rng, [n for n, _, _ in configs[1:]], bare):
            took = fit_mobilenet(models[name], callbacks[name], 2, numerics_of[name], steps)[1:]
            if name == turn:
                results[name] += took
            else:
                neighbours[turn] += took
                results[bare] += took
    neighbours[bare] = results[bare]
    dropped: dict[str, dict[str, int]] = {}
    for name, cbs in callbacks.items():
        for cb in cbs:
            if isinstance(cb, vizdebug.keras.Callback):
                cb.close()
                dropped[name] = cb.writer.dropped if cb.writer is not None else {}
    stolen = steal.describe()
    tmp.cleanup()
    print(f"\nKeras adapter, MobileNetV2 (96x96, batch 16, weights=None, {steps} steps/epoch), "
          f"one thread; {platform.processor() or platform.machine()}, Python "
          f"{platform.python_version()}, TensorFlow {tf.__version__}, Keras {keras.__version__}; "
          f"{rounds} rounds, each turn next to a bare turn; second epoch of each turn; first "
          f"batch: {first_rounds} rounds, each configuration in a fresh process (shuffled "
          "order), a fresh model's fit from the call to the end of batch 0 (tracing and "
          "TensorFlow's first-use set-up included), against the bare process of the same "
          "round (median ratio).\n")  # fmt: skip
    print("| configuration | s / epoch | x bare (paired) | 95% CI | first batch s | x bare "
          "| dropped |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---|")
    for name, _, _ in configs:
        ratio, lo, hi = paired_ratio(results[name], neighbours[name])
        median = statistics.median(results[name])
        lost = dropped.get(name, {})
        fs, fx = "-", "-"  # --first-rounds 0: not measured
        if first[name]:
            fs = f"{statistics.median(first[name]):.1f}"
            pairs = zip(first[name], first[bare], strict=True)
            fx = f"{statistics.median(a / b for a, b in pairs):.2f}x"
        print(f"| {name} | {median:.2f} | {ratio:.2f}x | {lo:.2f}x - {hi:.2f}x | {fs} | {fx} | "
              f"{sum(lost.values()) if name in dropped else '-'} |")  # fmt: skip
    rows = "; ".join(
        f"{name.split(' (')[0]}: {', '.join(f'{t:.1f}' for t in first[name])}"
        for name, _, _ in configs
    )
    if first_rounds:
        print(f"\nFirst batch of each round (s): {rows}.")
    print(f"\n{stolen}")


def mobilenet_steps(calls: int) -> None:
    """MobileNetV2's train functions called in turn, step by step: paired per-step ratios."""
    with tempfile.TemporaryDirectory() as tmp:
        steal = Steal()
        times = per_step(calls, tmp, mobilenet, mobilenet_data(4), 16)
        stolen = steal.describe()
    own = next(iter(times.values()))
    print(f"\nMobileNetV2 (96x96, batch 16), the train functions alone, called in turn ({calls} "
          "calls each, the first tenth dropped), each call against the call of Keras's own "
          "function in the same turn; one thread.\n")  # fmt: skip
    print("| function | median ms / step | x Keras's (paired) | 95% CI |")
    print("|---|---:|---:|---:|")
    for name, v in times.items():
        ratio, lo, hi = paired_ratio(v, own)
        print(f"| {name} | {statistics.median(v) * 1e3:.0f} | {ratio:.2f}x | "
              f"{lo:.2f}x - {hi:.2f}x |")  # fmt: skip
    print(f"\n{stolen}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--steps", type=int, default=600, help="calls per function, per-step")
    parser.add_argument("--only", choices=["digits", "mobilenet", "mobilenet-steps"], default=None)
    parser.add_argument("--mobilenet-calls", type=int, default=40, help="calls per function")
    parser.add_argument("--mobilenet-rounds", type=int, default=3)
    parser.add_argument("--mobilenet-steps", type=int, default=6, help="steps per epoch")
    parser.add_argument(
        "--first-rounds",
        type=int,
        default=2,
        help="first-batch rounds (a fresh process per configuration and round)",
    )
    parser.add_argument("--first-batch-child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.first_batch_child is not None:
        first_batch_child(args.first_batch_child)
        return 0
    if args.only == "mobilenet-steps":
        mobilenet_steps(args.mobilenet_calls)
        return 0
    if args.only != "digits":
        real_model(args.mobilenet_rounds, args.mobilenet_steps, args.first_rounds)
        if args.only == "mobilenet":
            return 0
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
    # the bare epoch run next to each configuration's: the other side of its ratio
    neighbours: dict[str, list[float]] = {name: [] for name, _, _ in configs}
    bare = configs[0][0]
    numerics_of = {name: flag for name, _, flag in configs}
    steal = Steal()
    rng = random.Random(0)
    others = [name for name, _, _ in configs[1:]]
    for _ in range(args.rounds):  # interleaved, so drift hits every row alike
        for name, turn in beside_bare(rng, others, bare):
            # the first epoch of a fit traces vizdebug's train functions again: time the second
            took = run(models[name], callbacks[name], 2, numerics_of[name])[1:]
            if name == turn:
                results[name] += took
            else:
                neighbours[turn] += took
                results[bare] += took
    neighbours[bare] = results[bare]
    for cbs in callbacks.values():
        for cb in cbs:
            if isinstance(cb, vizdebug.keras.Callback):
                cb.close()
    stolen = steal.describe()
    steps = per_step(args.steps, f"{tmp.name}/per-step")
    tmp.cleanup()
    print(f"Keras adapter, digits CNN (1,797 images, batch 64, 29 steps/epoch), one thread; "
          f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, "
          f"TensorFlow {tf.__version__}, Keras {keras.__version__}; configurations take turns "
          f"({args.rounds} rounds, shuffled), one model each, each turn next to a turn of the "
          f"bare model; the second epoch of each turn against that bare neighbour's: median "
          f"ratio, bootstrap 95% CI.\n")  # fmt: skip
    print("| configuration | s / epoch | x bare (paired) | 95% CI |")
    print("|---|---:|---:|---:|")
    for name, _, _ in configs:
        # each epoch against the bare epoch run next to it
        ratio, lo, hi = paired_ratio(results[name], neighbours[name])
        median = statistics.median(results[name])
        print(f"| {name} | {median:.4f} | {ratio:.2f}x | {lo:.2f}x - {hi:.2f}x |")
    print(f"\n{stolen}")
    own = statistics.median(next(iter(steps.values())))
    print(f"\nThe train functions alone, called in turn ({args.steps} calls each, the first "
          "tenth dropped): the per-step cost without the epoch-level noise above.\n")  # fmt: skip
    print("| function | median us / step | x Keras's |")
    print("|---|---:|---:|")
    for name, v in steps.items():
        median = statistics.median(v)
        print(f"| {name} | {median * 1e6:.0f} | {median / own:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

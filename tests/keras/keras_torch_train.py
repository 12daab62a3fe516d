"""Torch-backend training runs: ``KERAS_BACKEND=torch python keras_torch_train.py OUT``.

Run as a script it trains one small functional model (Conv2D, BatchNormalization, Dropout,
Dense, and a :class:`Poison` layer that can be armed to return NaN) several times from the
same initial weights and RNG seed (with ``jit`` as a second argument: compiled with
``jit_compile=True``, fewer runs) -- unwatched, watched on several schedules, and with a NaN
injected on a step with and one without layer hooks -- writing each run under ``OUT``, the
final weights to ``OUT/weights-<name>.npz`` and what the test checks to ``OUT/result.json``.
The models are in :mod:`keras_torch_models`.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import layers
from keras_torch_models import (
    BATCH,
    BATCHES,
    EPOCHS,
    ArmAt,
    Boom,
    FireAt,
    OwnStep,
    ReplayAt,
    Subclassed,
    build,
    data,
)


def main(out: Path, jit: bool = False) -> None:
    import torch

    import vizdebug.keras

    x, y = data()
    init = build(jit).get_weights()
    result: dict[str, Any] = {"callback": ""}

    def fit(name: str, options: dict[str, Any] | None, arm: int = -1, layer: str = "poison") -> Any:
        model = build(jit)
        model.set_weights(init)
        callbacks: list[Any] = []
        if arm >= 0:
            callbacks.append(ArmAt(model.get_layer(layer), arm))
        cb = None
        if options is not None:
            replay_at = options.pop("replay_at", -1)
            cb = vizdebug.keras.Callback(logdir=out / name, **options)
            callbacks.append(cb)
            result["callback"] = type(cb).__module__ + "." + type(cb).__qualname__
            if replay_at >= 0:
                callbacks.append(forced := ReplayAt(cb, replay_at))
        torch.manual_seed(1)  # Dropout(seed=None) draws from torch's global generator
        raised = ""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0,
                          validation_data=(x[:BATCH], y[:BATCH]), callbacks=callbacks)  # fmt: skip
            except vizdebug.keras.NonFiniteError as e:
                raised = str(e)
        np.savez(out / f"weights-{name}.npz", *model.get_weights())
        if options is not None and replay_at >= 0:
            result["replays"] = forced.replays
        result[name] = {
            "raised": raised,
            # everything vizdebug put on the model and its optimizer is gone
            "restored": not any(
                k in vars(o) for o, k in [(model, "compute_loss"), (model.optimizer, "apply")]
            )
            and getattr(model.train_function, "__self__", None) is not cb,
            "warnings": [
                str(w.message) for w in caught if "vizdebug" in type(w.message).__module__
            ],
            "findings": [
                [f.step, f.site.module, f.site.phase, f.role] for f in getattr(cb, "findings", [])
            ],
            "steps": EPOCHS * BATCHES,
        }
        return model

    fit("bare", None)
    fit("every1", {"every": 1})
    if not jit:
        fit("default", {})
        fit("sentinel_only", {"what": ()})
        fit("forced_replay", {"every": 100, "first": 1, "replay_at": 3})
        fit("nan_hooked", {"every": 2, "first": 1, "on_anomaly": "stop"}, arm=4)
        fit("nan_raise", {"every": 100, "first": 2, "on_anomaly": "raise"}, arm=3)
        fit("inf_backward", {"every": 100, "first": 2, "on_anomaly": "stop"}, 6, "backfire")
        fit("inf_backward_hooked", {"every": 1, "on_anomaly": "stop"}, 2, "backfire")
        subclassed(out, result)
        user_error(out, result)
        own_step(out, result)
        mobilenet(out, result)
    fit("nan_replayed", {"every": 100, "first": 2, "on_anomaly": "stop"}, arm=5)
    result["tensorflow_imported"] = "tensorflow" in sys.modules
    (out / "result.json").write_text(json.dumps(result))


def user_error(out: Path, result: dict[str, Any]) -> None:
    """The user's layer raises at step 2: the error reaches the caller, vizdebug is gone."""
    import vizdebug.keras

    x, y = data()
    boom = Boom(name="boom")
    model = keras.Sequential([keras.Input((64,)), layers.Dense(3, name="d"), boom])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    cb = vizdebug.keras.Callback(logdir=out / "user_error", every=1)
    error = ""
    try:
        model.fit(x.reshape(len(x), -1), y, batch_size=BATCH, epochs=1, verbose=0,
                  callbacks=[FireAt(boom, 2), cb])  # fmt: skip
    except Exception as e:  # Keras adds the layer's arguments to the message
        error = f"{type(e).__name__}: {'boom' in str(e)}"
    result["user_error"] = {
        "error": error,
        "restored": not any(
            k in vars(o) for o, k in [(model, "compute_loss"), (model.optimizer, "apply")]
        )
        and getattr(model.train_function, "__self__", None) is not cb,
        "writer_closed": cb.writer is not None and cb.writer.closed,
    }
    boom.fire = False
    model.fit(x.reshape(len(x), -1)[:16], y[:16], verbose=0)  # trains on, unwatched


def own_step(out: Path, result: dict[str, Any]) -> None:
    """A model's own train_step: recorded in full, trained bit-identically."""
    import vizdebug.keras

    x, y = data()
    x = x.reshape(len(x), -1)

    def fit(callbacks: list[Any], init: Any = None) -> Any:
        inp = keras.Input((64,))
        h = layers.Dense(8, activation="relu", name="a")(inp)
        model = OwnStep(inp, layers.Dense(3, name="b")(h))
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        if init is not None:
            model.set_weights(init)
        weights = model.get_weights()
        model.fit(x, y, batch_size=BATCH, shuffle=False, verbose=0, callbacks=callbacks)
        return weights, model.get_weights()

    init, bare = fit([])
    _, watched = fit([vizdebug.keras.Callback(logdir=out / "own_step", every=1)], init)
    result["own_step"] = {
        "identical": all(np.array_equal(a, b) for a, b in zip(bare, watched, strict=True))
    }


def mobilenet(out: Path, result: dict[str, Any]) -> None:
    """keras.applications.MobileNetV2 (32 px, alpha 0.35, weights=None) at every=1: bare and
    watched from the same weights; the layer names for the test."""
    import vizdebug.keras

    rng = np.random.default_rng(0)
    x = rng.random((12, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 10, 12)

    def fit(callbacks: list[Any], init: Any = None) -> tuple[Any, Any]:
        model = keras.applications.MobileNetV2(
            input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=10,
            classifier_activation=None,
        )  # fmt: skip
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        if init is not None:
            model.set_weights(init)
        weights = model.get_weights()
        model.fit(x, y, batch_size=4, shuffle=False, verbose=0, callbacks=callbacks)
        return weights, model

    init, bare = fit([])
    _, watched = fit([vizdebug.keras.Callback(logdir=out / "mobilenet", every=1)], init)
    result["mobilenet"] = {
        "identical": all(
            np.array_equal(a, b)
            for a, b in zip(bare.get_weights(), watched.get_weights(), strict=True)
        ),
        "layers": [
            layer.name for layer in watched.layers if not isinstance(layer, keras.layers.InputLayer)
        ],
        "weights": len(watched.trainable_weights),
    }


def subclassed(out: Path, result: dict[str, Any]) -> None:
    """A subclassed model, unbuilt at train begin: step 0 is recorded all the same."""
    import vizdebug.keras

    x, y = data()
    model = Subclassed()
    model.compile(
        "adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=False
    )
    cb = vizdebug.keras.Callback(logdir=out / "subclassed", every=1)
    model.fit(x.reshape(len(x), -1), y, batch_size=BATCH, epochs=1, verbose=0, callbacks=[cb])
    result["subclassed"] = {"steps": BATCHES}


if __name__ == "__main__":
    main(Path(sys.argv[1]), jit=sys.argv[2:] == ["jit"])

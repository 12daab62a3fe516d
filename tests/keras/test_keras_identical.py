"""Training with the callback is bit-identical to training without it, at every schedule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

from vizdebug.keras import Callback

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
SCHEDULES: dict[str, dict[str, Any]] = {
    "every=1": {"every": 1},
    "default": {},
    "what=()": {"what": ()},
    "every=2,no-check": {"every": 2, "first": 1, "on_anomaly": None},
}


def lstm_stack() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((7, 5)),
            keras.layers.LSTM(8, return_sequences=True, name="lstm1"),
            keras.layers.LSTM(6, name="lstm2"),
            keras.layers.Dropout(0.3, name="drop"),
            keras.layers.Dense(4, name="head"),
        ]
    )


def two_inputs() -> keras.Model:
    a, b = keras.Input((6,), name="a"), keras.Input((4,), name="b")
    h = keras.layers.Dense(8, activation="relu", name="da")(a)
    h = keras.layers.BatchNormalization(name="bn")(h)
    g = keras.layers.Dense(8, activation="tanh", name="db")(b)
    h = keras.layers.Concatenate(name="cat")([h, keras.layers.Dropout(0.2, name="drop")(g)])
    return keras.Model([a, b], keras.layers.Dense(4, name="head")(h))


def mobilenet() -> keras.Model:
    return keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=4, classifier_activation=None
    )


def efficientnet() -> keras.Model:
    return keras.applications.EfficientNetB0(
        input_shape=(32, 32, 3), weights=None, classes=4, classifier_activation=None
    )


def _data(name: str, n: int) -> tuple[Any, np.ndarray[Any, Any]]:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, n)
    if name == "lstm":
        return rng.normal(size=(n, 7, 5)).astype(np.float32), y
    if name == "two":
        return [rng.normal(size=(n, 6)).astype(np.float32),
                rng.normal(size=(n, 4)).astype(np.float32)], y  # fmt: skip
    return rng.random((n, 32, 32, 3), dtype=np.float32), y


BUILDERS = {"lstm": lstm_stack, "two": two_inputs, "mobilenet": mobilenet, "eff": efficientnet}


def _fit(name: str, callbacks: list[Any], steps: int = 4) -> list[np.ndarray[Any, Any]]:
    keras.utils.set_random_seed(0)
    model = BUILDERS[name]()
    model.compile(keras.optimizers.Adam(1e-2), LOSS)
    x, y = _data(name, 4 * steps)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False, callbacks=callbacks)
    return [np.asarray(v.numpy()) for v in model.weights]


def _same(name: str, tmp_path: Path, options: dict[str, Any]) -> None:
    bare = _fit(name, [])
    watched = _fit(name, [Callback(logdir=tmp_path / "run", **options)])
    assert len(bare) == len(watched)
    for a, b in zip(bare, watched, strict=True):
        assert np.array_equal(a, b), float(np.max(np.abs(a - b)))


@pytest.mark.parametrize("schedule", list(SCHEDULES))
@pytest.mark.parametrize("name", ["lstm", "two"])
def test_small_models_train_bit_identically(name: str, schedule: str, tmp_path: Path) -> None:
    _same(name, tmp_path, SCHEDULES[schedule])


@pytest.mark.slow
@pytest.mark.parametrize("schedule", ["every=1", "what=()"])
@pytest.mark.parametrize("name", ["mobilenet", "eff"])
def test_applications_train_bit_identically(name: str, schedule: str, tmp_path: Path) -> None:
    _same(name, tmp_path, SCHEDULES[schedule])

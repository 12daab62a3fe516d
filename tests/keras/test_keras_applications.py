"""keras.applications models (weights=None, small inputs): every scheduled step recorded in full."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

from vizdebug import Writer
from vizdebug.keras import Callback
from vizdebug.runs.reader import load_run

pytestmark = pytest.mark.slow


def _data(n: int, px: int) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    rng = np.random.default_rng(0)
    return rng.random((n, px, px, 3), dtype=np.float32), rng.integers(0, 10, n)


def _mobilenet() -> keras.Model:
    return keras.applications.MobileNetV2(
        input_shape=(32, 32, 3),
        alpha=0.35,
        weights=None,
        classes=10,
        classifier_activation=None,
    )


def _coverage(run_dir: Path, model: keras.Model) -> dict[int, set[tuple[str, str]]]:
    steps: dict[int, set[tuple[str, str]]] = {}
    for s in load_run(run_dir).stats:
        steps.setdefault(s.step, set()).add((s.name, s.role))
    return steps


def _expected(model: keras.Model) -> set[tuple[str, str]]:
    layers = [
        layer.name for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)
    ]
    want = {(n, role) for n in layers for role in ("output", "grad_output")}
    want |= {("", "output"), ("", "grad_output")}  # the model itself
    return want


def test_every_layer_and_weight_at_every_step_with_a_small_budget(tmp_path: Path) -> None:
    """MobileNetV2 (~4 MB of values a step) through a 1 MiB queue: chunks, back-pressure."""
    model = _mobilenet()
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = _data(12, 32)
    writer = Writer(tmp_path, max_queue_bytes=1 << 20)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False,
              callbacks=[Callback(writer=writer, every=1)])  # fmt: skip
    writer.close()
    assert writer.dropped == {}
    steps = _coverage(tmp_path, model)
    assert sorted(steps) == [0, 1, 2]
    want = _expected(model)
    n_weights = len(model.trainable_weights)
    for step, got in steps.items():
        assert want <= got, (step, sorted(want - got)[:5])
        for role in ("weight", "update", "grad"):
            assert len({n for n, r in got if r == role}) == n_weights, (step, role)
    assert load_run(tmp_path).info[0]["dropped"] == {}

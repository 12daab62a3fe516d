"""keras.applications models (weights=None, small inputs): every scheduled step recorded in full."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf
from safetensors.numpy import load_file

from vizdebug import Writer
from vizdebug.keras import Callback, NonFiniteWarning
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


@pytest.mark.parametrize("name", ["EfficientNetB0", "ResNet50"])
def test_every_layer_and_weight_of_efficientnet_and_resnet(tmp_path: Path, name: str) -> None:
    model = getattr(keras.applications, name)(
        input_shape=(32, 32, 3), weights=None, classes=10, classifier_activation=None
    )
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = _data(4, 32)
    cb = Callback(logdir=tmp_path, every=1)
    model.fit(x, y, batch_size=2, epochs=1, verbose=0, shuffle=False, callbacks=[cb])
    assert cb.writer is not None and cb.writer.dropped == {}
    steps = _coverage(tmp_path, model)
    assert sorted(steps) == [0, 1]
    want = _expected(model)
    for step, got in steps.items():
        assert want <= got, (step, sorted(want - got)[:5])
        for role in ("weight", "update", "grad"):
            assert len({n for n, r in got if r == role}) == len(model.trainable_weights)


class Arm(keras.callbacks.Callback):  # type: ignore[misc]
    """Sets a flag variable at one global batch index and clears it elsewhere."""

    def __init__(self, flag: Any, step: int) -> None:
        super().__init__()
        self.flag, self.step, self.seen = flag, step, 0

    def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
        self.flag.assign(self.seen == self.step)
        self.seen += 1


def _inject(layer: keras.layers.Layer, flag: Any, *, backward: bool) -> None:
    """A NaN in the layer's output (forward), or an Inf its backward passes to its input."""
    call = layer.call

    @tf.custom_gradient
    def bad_gradient(x: Any) -> Any:
        def grad(dy: Any) -> Any:
            return dy * tf.where(flag, tf.constant(1.0) / tf.zeros([]), 1.0)

        return tf.identity(x), grad

    def injected(x: Any, *args: Any, **kwargs: Any) -> Any:
        if backward:
            return call(bad_gradient(x), *args, **kwargs)
        out = call(x, *args, **kwargs)
        return out * tf.where(flag, tf.zeros([]) / tf.zeros([]), 1.0)

    layer.call = injected


@pytest.mark.parametrize("backward", [False, True], ids=["forward-nan", "backward-inf"])
@pytest.mark.parametrize("every", [1, 100])
def test_a_fault_in_an_inner_layer_is_named_there(
    tmp_path: Path, backward: bool, every: int
) -> None:
    model = _mobilenet()
    flag = tf.Variable(False, trainable=False)
    _inject(model.get_layer("block_6_project"), flag, backward=backward)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = _data(16, 32)
    cb = Callback(logdir=tmp_path, every=every, first=1, on_anomaly="stop")
    with pytest.warns(NonFiniteWarning, match="block_6_project"):
        model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False,
                  callbacks=[Arm(flag, 2), cb])  # fmt: skip
    run = load_run(tmp_path)
    (a,) = run.anomalies
    want = ("backward", "grad_input", "inf") if backward else ("forward", "output", "nan")
    assert (a.step, a.module, a.phase, a.role, a.kind) == (2, "block_6_project", *want)
    (snap,) = run.snapshots
    tensors = load_file(str(tmp_path / snap.path))
    assert "block_6_project/output0" in tensors and "block_6_project/input0" in tensors
    assert np.isfinite(tensors["block_6_project/input0"]).all()

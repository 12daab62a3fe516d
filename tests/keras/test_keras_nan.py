"""NaN/Inf tracing: the first layer and step, the flight recorder, on_anomaly, check numerics."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras_models import Poison, PoisonAt, SwitchAt, compile_, poisoned_mlp
from safetensors.numpy import load_file

import vizdebug
from vizdebug.keras import NonFiniteError, NonFiniteWarning
from vizdebug.runs import load_run

X = np.random.default_rng(3).random((64, 6), dtype=np.float32)
Y = np.random.default_rng(4).integers(0, 3, 64)


def fit_poisoned(
    tmp_path: Path, *, eager: bool = False, nan_at: int = 5, **opts: object
) -> tuple[keras.Model, vizdebug.keras.Callback]:
    model, poison = poisoned_mlp()
    compile_(model, eager=eager)
    cb = vizdebug.keras.Callback(logdir=tmp_path, **opts)  # type: ignore[arg-type]
    model.fit(X, Y, batch_size=8, epochs=1, verbose=0, shuffle=False,
              callbacks=[PoisonAt(poison, nan_at), cb])  # fmt: skip
    return model, cb


@pytest.mark.parametrize("eager", [False, True], ids=["graph", "eager"])
def test_nan_traced_to_layer_and_step(tmp_path: Path, eager: bool) -> None:
    with pytest.warns(NonFiniteWarning, match="poison"):
        _, cb = fit_poisoned(tmp_path, eager=eager, on_anomaly="stop")
    run = load_run(tmp_path)
    (a,) = run.anomalies
    assert (a.kind, a.step, a.module, a.module_type, a.phase, a.role) == (
        "nan",
        5,
        "poison",
        "Poison",
        "forward",
        "output",
    )
    assert a.nan == 8 * 8 and a.posinf == a.neginf == 0
    assert max(s.step for s in run.scalars["loss"]) == 5  # stopped right there
    (snap,) = run.snapshots
    tensors = load_file(str(tmp_path / snap.path))
    assert np.isnan(tensors["poison/output0"]).all()
    assert np.isfinite(tensors["poison/input0"]).all()
    assert set(tensors) >= {"fc1/input0", "fc1/output0", "fc2/output0"}
    assert cb.findings[0].site.module == "poison"


def test_nan_on_a_recorded_step_is_named_and_described(tmp_path: Path) -> None:
    """A recorded step checks one sum in its record pass and replays a non-finite one at once
    (before Keras's step trains); its statistics still reach the run."""
    with pytest.warns(NonFiniteWarning, match="poison"):
        _, cb = fit_poisoned(tmp_path, every=1, on_anomaly="stop")
    run = load_run(tmp_path)
    (a,) = run.anomalies
    assert (a.kind, a.step, a.module, a.phase, a.role, a.nan) == (
        "nan", 5, "poison", "forward", "output", 64,
    )  # fmt: skip
    (snap,) = run.snapshots
    assert np.isnan(load_file(str(tmp_path / snap.path))["poison/output0"]).all()
    assert sorted({s.step for s in run.stats}) == list(range(6))
    at = (5, "poison", "output")
    (poisoned,) = [s.stats for s in run.stats if (s.step, s.name, s.role) == at]
    assert poisoned.nan == 64 and len(cb.findings) == 1


def test_nan_is_checked_on_unscheduled_steps_and_raise_mode(tmp_path: Path) -> None:
    with pytest.raises(NonFiniteError, match=r"step 3.*poison"):
        fit_poisoned(tmp_path, nan_at=3, every=100, first=1, on_anomaly="raise")
    run = load_run(tmp_path)
    assert [(a.step, a.module) for a in run.anomalies] == [(3, "poison")]


def test_nan_in_the_data_is_blamed_on_the_input(tmp_path: Path) -> None:
    model = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(8, name="fc1"), keras.layers.Dense(3, name="fc2")]
    )  # no ReLU first: TensorFlow's relu turns NaN into 0
    compile_(model)
    x = X.copy()
    x[20, 2] = np.nan  # batch 2 (batch size 8)
    cb = vizdebug.keras.Callback(logdir=tmp_path, on_anomaly="stop", what=())
    with pytest.warns(NonFiniteWarning):
        model.fit(x, Y, batch_size=8, verbose=0, shuffle=False, callbacks=[cb])
    (a,) = load_run(tmp_path).anomalies
    assert (a.step, a.module, a.role) == (2, "fc1", "input")


def test_overflowing_sum_is_not_a_false_alarm(tmp_path: Path) -> None:
    inp = keras.Input((4,))
    big = keras.layers.Lambda(lambda t: t * 0 + 3e38, name="big")(inp)
    out = keras.layers.Dense(1, name="fc")(keras.layers.Lambda(lambda t: t * 0, name="zero")(big))
    model = keras.Model(inp, out)
    model.compile(keras.optimizers.SGD(0.0), "mse")
    cb = vizdebug.keras.Callback(logdir=tmp_path, on_anomaly="raise")
    model.fit(np.ones((4, 4), np.float32), np.zeros((4, 1), np.float32), verbose=0, callbacks=[cb])
    assert not load_run(tmp_path).anomalies


@pytest.mark.parametrize("eager", [False, True], ids=["graph", "eager"])
def test_check_numerics_bridge(tmp_path: Path, eager: bool) -> None:
    model, poison = poisoned_mlp()
    compile_(model, eager=eager)
    cb = vizdebug.keras.Callback(logdir=tmp_path, check_numerics=True, on_anomaly="stop")
    with pytest.warns(NonFiniteWarning):
        model.fit(X, Y, batch_size=8, verbose=0, shuffle=False, callbacks=[PoisonAt(poison, 2), cb])
    run = load_run(tmp_path)
    (a,) = run.anomalies
    assert (a.step, a.module, a.phase) == (2, "poison", "forward")
    assert a.op == "Sqrt" and "check numerics" in a.message
    assert max(s.step for s in run.scalars["loss"]) == 1  # step 2 never finished
    # check numerics is off again: a NaN no longer raises
    assert np.isnan(tf.math.log(tf.constant(-1.0)).numpy())


def test_check_numerics_raise_mode_reraises(tmp_path: Path) -> None:
    model, poison = poisoned_mlp()
    compile_(model)
    cb = vizdebug.keras.Callback(logdir=tmp_path, check_numerics=True, on_anomaly="raise")
    with pytest.raises(tf.errors.InvalidArgumentError):
        model.fit(X, Y, batch_size=8, verbose=0, callbacks=[PoisonAt(poison, 0), cb])
    assert [a.module for a in load_run(tmp_path).anomalies] == ["poison"]
    assert np.isnan(tf.math.log(tf.constant(-1.0)).numpy())
    assert isinstance(poison, Poison)


class SqrtOfSquare(keras.layers.Layer):
    """``x + sqrt(x**2 * on)``: finite forward; with ``on`` 0, a NaN gradient (0 * inf)."""

    def __init__(self, **kw: object) -> None:
        super().__init__(**kw)
        self.on = tf.Variable(1.0, trainable=False)

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return x + tf.sqrt(tf.square(x) * self.on)


def test_backward_only_nan_on_an_unscheduled_step_is_traced_by_replay(tmp_path: Path) -> None:
    # the light check of step 4 sees a non-finite gradient sum; the replay (weights before the
    # update, the layer's switch as it was) finds the first non-finite output gradient
    sq = SqrtOfSquare(name="sq")
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(8, name="fc1"),
            sq,
            keras.layers.Dense(3, name="fc2"),
        ]
    )
    compile_(model)
    cb = vizdebug.keras.Callback(logdir=tmp_path, first=1, on_anomaly="stop")
    with pytest.warns(NonFiniteWarning, match="'sq'"):
        off_at_4 = SwitchAt(sq, 4, at=0.0, other=1.0)
        model.fit(X, Y, batch_size=8, verbose=0, shuffle=False, callbacks=[off_at_4, cb])
    (a,) = load_run(tmp_path).anomalies
    # named at its producer: the layer whose backward made it, as the torch adapter does
    assert (a.step, a.module, a.phase, a.role) == (4, "sq", "backward", "grad_input")
    assert a.nan > 0 and "computed by the backward of 'sq'" in a.message and "'fc1'" in a.message
    assert not cb.engine.exact  # type: ignore[union-attr]
    # the replay put every variable back: training went on from the real step's weights
    assert np.isnan(model.get_layer("fc1").kernel.numpy()).any()


class Counted(keras.layers.Layer):
    """NaN at the calls numbered in ``bad``, counted by a variable the model does not track."""

    def __init__(self, bad: set[int], **kw: object) -> None:
        super().__init__(**kw)
        self.bad = sorted(bad)
        self._counter = [tf.Variable(0, trainable=False)]  # in a list: untracked by Keras

    def call(self, x: tf.Tensor) -> tf.Tensor:
        n = self._counter[0].assign_add(1)
        hit = tf.reduce_any(tf.equal(n, self.bad))
        return x + tf.sqrt(-tf.cast(hit, x.dtype))


def test_a_replay_that_does_not_reproduce_says_so_and_checks_exactly_from_then_on(
    tmp_path: Path,
) -> None:
    model = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(8, name="fc1"), Counted({3, 7}, name="counted")]
    )
    compile_(model)
    start = model.get_weights()
    cb = vizdebug.keras.Callback(logdir=tmp_path, first=1, on_anomaly="stop", keep_open=True)
    with pytest.warns(NonFiniteWarning, match="did not reproduce"):
        model.fit(X, Y, batch_size=8, verbose=0, shuffle=False, callbacks=[cb])
    # step 0 is recorded beside the training step (calls 1 and 2): call 3 is step 1; its
    # replay made call 4, which is fine
    (first,) = load_run(tmp_path).anomalies
    assert (first.step, first.module, first.role) == (1, "", "loss")
    assert cb.engine.exact  # type: ignore[union-attr]
    # from then on every layer is checked in the step itself: call 7 (step 4) is named
    model.set_weights(start)  # the NaN update of step 2 undone
    with pytest.warns(NonFiniteWarning, match="counted"):
        model.fit(X, Y, batch_size=8, verbose=0, shuffle=False, callbacks=[cb])
    cb.close()
    second = load_run(tmp_path).anomalies[1]
    assert (second.step, second.module, second.role) == (4, "counted", "output")
    assert "full" in cb._fns


def test_a_weight_the_update_made_non_finite_is_named_at_the_step_that_made_it(
    tmp_path: Path,
) -> None:
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, name="fc")])
    model.compile(keras.optimizers.SGD(1e30), "mse")  # the first update overflows float32
    x = np.full((8, 2), 1e9, np.float32)
    cb = vizdebug.keras.Callback(logdir=tmp_path, first=1, on_anomaly="stop")
    with pytest.warns(NonFiniteWarning, match="optimizer"):
        model.fit(x, np.zeros((8, 1), np.float32), batch_size=4, verbose=0, callbacks=[cb])
    (a,) = load_run(tmp_path).anomalies
    assert (a.step, a.module, a.phase, a.role) == (0, "fc", "optimizer", "weight")
    assert a.posinf + a.neginf + a.nan > 0


def test_replay_of_a_multi_input_multi_output_batch_with_sample_weights(tmp_path: Path) -> None:
    # the flagged batch travels as (x: [a, b], y: [y1, y2], sample weights): nested leaves of
    # float, int and bool-made weights; the replay rebuilds it and names the first layer
    from keras_models import functional_multi

    model = functional_multi()
    model.compile(
        keras.optimizers.SGD(0.05), [keras.losses.SparseCategoricalCrossentropy(True), "mse"]
    )
    rng = np.random.default_rng(1)
    xa, xb = rng.random((32, 6), dtype=np.float32), rng.random((32, 6), dtype=np.float32)
    xb[27, 3] = np.nan  # batch 3 of 8, in input b only
    y1, y2 = rng.integers(0, 3, 32), rng.random((32, 1), dtype=np.float32)
    weights = (rng.random(32) > 0.2).astype(np.float32)
    cb = vizdebug.keras.Callback(logdir=tmp_path, first=1, on_anomaly="stop", what=())
    with pytest.warns(NonFiniteWarning, match="shared"):
        model.fit([xa, xb], [y1, y2], sample_weight=weights, batch_size=8, verbose=0,
                  shuffle=False, callbacks=[cb])  # fmt: skip
    (a,) = load_run(tmp_path).anomalies
    # the shared layer's call on b is the first to see it, in its input
    assert (a.step, a.module, a.role) == (3, "shared", "input")
    assert a.nan == 5  # one row of the batch, five units

"""vizdebug.keras.Callback on real model.fit runs: per-layer events for every model kind."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras_models import (
    LOSS,
    Subclassed,
    compile_,
    digits_like,
    functional_multi,
    sequential_cnn,
)

import vizdebug
from vizdebug.runs import load_run
from vizdebug.stats import reference_stats


def fit(model: keras.Model, x: Any, y: Any, cb: Any, *, epochs: int = 1, batch: int = 16) -> None:
    model.fit(x, y, batch_size=batch, epochs=epochs, callbacks=[cb], verbose=0, shuffle=False)


@pytest.mark.parametrize("eager", [False, True], ids=["graph", "eager"])
def test_sequential_every_kind_of_event(tmp_path: Path, eager: bool) -> None:
    model = compile_(sequential_cnn(), eager=eager, metrics=["accuracy"])
    x, y = digits_like(64)
    cb = vizdebug.keras.Callback(logdir=tmp_path, every=3, first=1)
    fit(model, x, y, cb)  # 4 steps: 0 and 3 recorded
    run = load_run(tmp_path)
    assert sorted({s.step for s in run.stats}) == [0, 3]
    roles = Counter((s.step, s.role) for s in run.stats)
    assert roles[(0, "output")] == roles[(0, "grad_output")] == 4  # model, conv, flat, head
    assert roles[(0, "weight")] == roles[(0, "grad")] == roles[(0, "update")] == 4
    assert {s.name for s in run.stats if s.role == "output"} == {"", "conv", "flat", "head"}
    assert {s.name for s in run.stats if s.role == "grad"} == {
        "conv.kernel", "conv.bias", "head.kernel", "head.bias"
    }  # fmt: skip
    assert [s.step for s in run.scalars["loss"]] == [0, 1, 2, 3]
    assert "update_ratio/head.kernel" in run.scalars
    assert "train/accuracy" in run.scalars and "epoch/loss" in run.scalars
    (structure,) = run.structures
    mods = {m.name: m for m in structure.modules}
    assert mods["conv"].params == 40 and mods["head"].params == 1450 and mods[""].params == 0
    assert mods["conv"].output_shapes == ((16, 6, 6, 4),)
    assert not run.anomalies
    info = run.run_infos[0]
    assert info.framework == "keras" and "tensorflow" in info.versions
    # the model is restored: its own train function, its layers' own call
    assert "call" not in vars(model.layers[0])


def test_activation_and_weight_stats_equal_numpy_reference(tmp_path: Path) -> None:
    model = compile_(sequential_cnn())
    x, y = digits_like(16)
    kernel_before = model.get_layer("head").kernel.numpy().copy()
    conv_out = model.get_layer("conv")(x).numpy()
    cb = vizdebug.keras.Callback(logdir=tmp_path, every=100, first=1)
    fit(model, x, y, cb)
    kernel_after = model.get_layer("head").kernel.numpy()
    run = load_run(tmp_path)
    by = {(s.name, s.role): s.stats for s in run.stats}
    for got, arr in [
        (by[("conv", "output")], conv_out),
        (by[("head.kernel", "weight")], kernel_before),
        (by[("head.kernel", "update")], kernel_after - kernel_before),
    ]:
        ref = reference_stats(arr)
        assert (got.numel, got.shape, got.nan, got.zeros) == (
            ref.numel,
            ref.shape,
            ref.nan,
            ref.zeros,
        )
        for f in ("min", "max", "mean", "std", "l2", "hist_lo", "hist_hi"):
            assert getattr(got, f) == pytest.approx(getattr(ref, f), rel=1e-4, abs=1e-6), f
        diff = np.abs(np.array(got.hist_counts) - np.array(ref.hist_counts)).sum()
        assert diff <= 2 and sum(got.hist_counts) == ref.finite


def test_functional_multi_input_output_shared_layer(tmp_path: Path) -> None:
    model = functional_multi()
    model.compile(keras.optimizers.SGD(0.05), [LOSS, "mse"])
    rng = np.random.default_rng(1)
    xa, xb = rng.random((32, 6), dtype=np.float32), rng.random((32, 6), dtype=np.float32)
    y1, y2 = rng.integers(0, 3, 32), rng.random((32, 1), dtype=np.float32)
    cb = vizdebug.keras.Callback(logdir=tmp_path, every=1, first=0, exclude="out2")
    fit(model, [xa, xb], [y1, y2], cb)
    run = load_run(tmp_path)
    outs = Counter((s.step, s.name, s.call) for s in run.stats if s.role == "output")
    assert outs[(0, "shared", 0)] == outs[(0, "shared", 1)] == 1  # called twice per step
    assert ("out2", "output") not in {(s.name, s.role) for s in run.stats}  # excluded
    step0 = {s.name for s in run.stats if s.role == "output" and s.step == 0}
    assert step0 == {"", "shared", "cat", "out1"} - {""} | {"[0]", "[1]"}  # model: two outputs
    grads = {s.name for s in run.stats if s.role == "grad_output"}
    assert {"shared", "cat", "out1"} <= grads


def test_subclassed_model_with_nested_model_and_two_output_layer(tmp_path: Path) -> None:
    model = compile_(Subclassed(), eager=False)
    rng = np.random.default_rng(2)
    x, y = rng.random((32, 5), dtype=np.float32), rng.integers(0, 3, 32)
    cb = vizdebug.keras.Callback(logdir=tmp_path, every=1, include=["block*", "split*"])
    fit(model, x, y, cb)
    run = load_run(tmp_path)
    # unbuilt at train begin: the callback builds it from the first batch's shapes, so step 0
    # is recorded like the others
    assert sorted({s.step for s in run.stats}) == [0, 1]
    names = {(s.name, s.role) for s in run.stats if s.step == 0}
    assert {("block", "output"), ("block.d1", "output"), ("block.d2", "output")} <= names
    assert {("split[0]", "output"), ("split[1]", "output"), ("split[1]", "grad_output")} <= names
    assert ("head", "output") not in names  # not included
    assert ("block.d1.kernel", "grad") in names
    (structure,) = run.structures
    assert [m.name for m in structure.modules] == [
        "",
        "block",
        "block.d1",
        "block.d2",
        "split",
        "head",
    ]
    assert structure.modules[2].params == 36 and structure.modules[1].params == 0


def test_what_and_schedule_and_filters(tmp_path: Path) -> None:
    model = compile_(sequential_cnn())
    x, y = digits_like(64)
    cb = vizdebug.keras.Callback(
        logdir=tmp_path, every=2, first=0, what={"weights"}, include="head"
    )
    fit(model, x, y, cb)
    run = load_run(tmp_path)
    assert {(s.step, s.name, s.role) for s in run.stats} == {
        (st, n, "weight") for st in (0, 2) for n in ("head.kernel", "head.bias")
    }


def test_non_float_output_is_skipped_with_a_note(tmp_path: Path) -> None:
    inp = keras.Input((4,))
    h = keras.layers.Dense(3, name="fc")(inp)
    idx = keras.layers.Lambda(lambda t: keras.ops.argmax(t, axis=-1), name="argmax")(h)
    model = keras.Model(inp, [h, idx])
    model.compile(keras.optimizers.SGD(0.1), ["mse", None])
    x = np.ones((8, 4), np.float32)
    cb = vizdebug.keras.Callback(logdir=tmp_path, every=1)
    model.fit(x, [np.zeros((8, 3), np.float32), np.zeros(8)], epochs=2, verbose=0, callbacks=[cb])
    run = load_run(tmp_path)
    notes = [n.text for n in run.notes if "argmax" in n.text]
    assert len(notes) == 1 and "not floating point" in notes[0]
    assert "fc" in {s.name for s in run.stats}


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="every"):
        vizdebug.keras.Callback(every=0)
    with pytest.raises(ValueError, match="what"):
        vizdebug.keras.Callback(what={"bogus"})
    with pytest.raises(ValueError, match="on_anomaly"):
        vizdebug.keras.Callback(on_anomaly="explode")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="include"):
        vizdebug.keras.Callback(include=[3])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="writer"):
        vizdebug.keras.Callback(writer="dir")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"builtins\.str"):
        vizdebug.tf.watch("not a model")
    cb = vizdebug.keras.Callback()
    cb.set_model(object())
    with pytest.raises(TypeError, match=r"\(keras\.Model\), got builtins\.object"):
        cb.on_train_begin()


def test_custom_train_step_keeps_users_step(tmp_path: Path) -> None:
    class Custom(keras.Model):
        def train_step(self, data: Any) -> Any:
            self.calls = getattr(self, "calls", 0)
            return super().train_step(data)

    inp = keras.Input((4,))
    model = Custom(inp, keras.layers.Dense(2, name="fc")(inp))
    model.compile(keras.optimizers.SGD(0.1), "mse")
    cb = vizdebug.keras.Callback(logdir=tmp_path, every=1)
    model.fit(
        np.ones((8, 4), np.float32),
        np.zeros((8, 2), np.float32),
        batch_size=4,
        verbose=0,
        callbacks=[cb],
    )
    run = load_run(tmp_path)
    # the gradients it handed the optimizer are recorded; output gradients are the user's tape's
    assert {s.role for s in run.stats} == {"output", "weight", "update", "grad"}
    assert sorted({s.step for s in run.stats if s.role == "grad"}) == [0, 1]
    assert any("overrides train_step" in n.text for n in run.notes)


class OwnStep(keras.Model):
    """A subclassed model with its own GradientTape step (built by its first call)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = keras.layers.Dense(6, activation="relu", name="fc1")
        self.fc2 = keras.layers.Dense(3, name="fc2")

    def call(self, x: Any) -> Any:
        return self.fc2(self.fc1(x))

    def train_step(self, data: Any) -> Any:
        x, y = data
        with tf.GradientTape() as tape:
            loss = self.compute_loss(x=x, y=y, y_pred=self(x, training=True))
        grads = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.trainable_variables, strict=True))
        return {"loss": loss}


def test_subclassed_own_step_has_step_0_and_its_gradients(tmp_path: Path) -> None:
    model = OwnStep()
    model.compile(keras.optimizers.SGD(0.1), LOSS)
    rng = np.random.default_rng(5)
    x, y = rng.random((16, 5), dtype=np.float32), rng.integers(0, 3, 16)
    cb = vizdebug.keras.Callback(logdir=tmp_path, every=1)
    model.fit(x, y, batch_size=4, verbose=0, shuffle=False, callbacks=[cb])
    run = load_run(tmp_path)
    got = {(s.step, s.name, s.role) for s in run.stats}
    for step in range(4):
        for name in ("fc1.kernel", "fc1.bias", "fc2.kernel", "fc2.bias"):
            assert {(step, name, r) for r in ("weight", "update", "grad")} <= got
        assert {(step, "fc1", "output"), (step, "fc2", "output")} <= got
    assert not any(r == "grad_output" for _, _, r in got)  # the user's tape: noted


def test_writer_kept_across_fits_and_given_writer_not_closed(tmp_path: Path) -> None:
    model = compile_(sequential_cnn())
    x, y = digits_like(32)
    cb = vizdebug.keras.Callback(logdir=tmp_path / "a", every=1, keep_open=True)
    fit(model, x, y, cb)
    fit(model, x, y, cb)
    cb.close()
    run = load_run(tmp_path / "a")
    assert [s.step for s in run.scalars["loss"]] == [0, 1, 2, 3]
    writer = vizdebug.Writer(tmp_path / "b")
    fit(model, x, y, vizdebug.keras.Callback(writer=writer))
    assert not writer.closed
    writer.close()


def test_fit_called_again_reuses_the_traced_functions(tmp_path: Path) -> None:
    model = compile_(sequential_cnn())
    x, y = digits_like(64)
    cb = vizdebug.keras.Callback(logdir=tmp_path, every=3, first=1, keep_open=True)
    fit(model, x, y, cb)  # steps 0-3
    outside = cb._outside  # Keras's function trains, vizdebug's run beside it
    assert outside is not None and not cb._fns
    fit(model, x, y, cb)  # steps 4-7: 6 recorded, with the same functions
    assert cb._outside is outside
    model.compile(keras.optimizers.SGD(0.01), LOSS)  # a new train function: traced again
    fit(model, x, y, cb)  # steps 8-11: 9 recorded
    assert cb._outside is not None and cb._outside is not outside
    assert cb._outside.original is model.train_function
    cb.close()
    assert sorted({s.step for s in load_run(tmp_path).stats}) == [0, 3, 6, 9]

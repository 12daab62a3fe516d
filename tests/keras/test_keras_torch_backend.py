"""``vizdebug.keras.Callback`` on Keras 3's torch backend, in a training subprocess.

One subprocess (``KERAS_BACKEND=torch``, :mod:`keras_torch_train`) trains the same small
functional model from the same weights and seed unwatched, watched at every step, on the
default schedule, with the NaN check only, and with a NaN injected in an inner layer on a step
with layer hooks and on one without (found by the replay). The tests read its runs back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
from keras_torch_models import BATCHES, EPOCHS, build
from safetensors.numpy import load_file

from vizdebug.runs import load_run

pytest.importorskip("torch")

LAYERS = ["conv", "bn", "relu", "flat", "drop", "hidden", "drop2", "backfire", "poison", "head"]
WEIGHTS = [
    "conv.kernel", "conv.bias", "bn.gamma", "bn.beta",
    "hidden.kernel", "hidden.bias", "head.kernel", "head.bias",
]  # fmt: skip
STEPS = EPOCHS * BATCHES


def _train(out: Path, *args: str) -> dict[str, Any]:
    env = {**os.environ, "KERAS_BACKEND": "torch", "TF_CPP_MIN_LOG_LEVEL": "3"}
    script = Path(__file__).with_name("keras_torch_train.py")
    proc = subprocess.run(
        [sys.executable, str(script), str(out), *args],
        env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, Any] = json.loads((out / "result.json").read_text())
    return result


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("keras_torch")
    return out, _train(out)


def _coverage(run_dir: Path) -> dict[int, set[tuple[str, str]]]:
    steps: dict[int, set[tuple[str, str]]] = {}
    for s in load_run(run_dir).stats:
        steps.setdefault(s.step, set()).add((s.name, s.role))
    return steps


def _expected() -> set[tuple[str, str]]:
    want = {(n, r) for n in ["", *LAYERS] for r in ("output", "grad_output")}
    return want | {(w, r) for w in WEIGHTS for r in ("weight", "grad", "update")}


def _weights(out: Path, name: str) -> list[np.ndarray[Any, Any]]:
    with np.load(out / f"weights-{name}.npz") as f:
        return [f[k] for k in sorted(f.files, key=lambda k: int(k.split("_")[1]))]


def test_no_tensorflow_and_the_torch_callback(runs: tuple[Path, dict[str, Any]]) -> None:
    _, result = runs
    assert result["tensorflow_imported"] is False
    assert result["callback"] == "vizdebug.keras.torch_backend.TorchCallback"


@pytest.mark.parametrize(
    ("name", "recorded"),
    [("every1", list(range(STEPS))), ("default", list(range(5)))],
)
def test_every_layer_and_weight_at_every_scheduled_step(
    runs: tuple[Path, dict[str, Any]], name: str, recorded: list[int]
) -> None:
    out, result = runs
    run = load_run(out / name)
    assert run.info[0]["dropped"] == {}
    assert result[name]["warnings"] == [] and result[name]["findings"] == []
    assert result[name]["restored"] is True
    steps = _coverage(out / name)
    assert sorted(steps) == recorded
    want = _expected()
    for step, got in steps.items():
        assert got == want, (step, sorted(want - got), sorted(got - want))
    # one row each: validation passes between epochs are not recorded as calls of the step
    assert len(run.stats) == len(want) * len(recorded)
    # the step's own loss at every step, Keras's running means, the epoch's metrics
    assert [s.step for s in run.scalars["loss"]] == list(range(STEPS))
    assert len(run.scalars["train/loss"]) == STEPS
    assert [s.step for s in run.scalars["epoch/val_loss"]] == [BATCHES - 1, STEPS - 1]
    (structure,) = run.structures
    assert [m.name for m in structure.modules] == ["", *LAYERS]
    assert structure.framework == "keras"


def test_vizdebug_show_counts_it_as_any_keras_run(runs: tuple[Path, dict[str, Any]]) -> None:
    out, _ = runs
    proc = subprocess.run(
        [sys.executable, "-m", "vizdebug.cli", "show", "--json", str(out / "every1")],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    shown = json.loads(proc.stdout)
    assert (shown["framework"], shown["steps"], shown["recorded"], shown["dropped"]) == (
        "keras", STEPS, STEPS, 0,
    )  # fmt: skip
    assert shown["versions"]["backend"] == "torch" and shown["warnings"] == []


def test_statistics_are_those_of_the_tensors(runs: tuple[Path, dict[str, Any]]) -> None:
    """The last step's weight rows against the weights the fit started that step with."""
    out, _ = runs
    final = _weights(out, "every1")
    model = build()
    model.set_weights(final)
    rows = {(s.name, s.role, s.step): s for s in load_run(out / "every1").stats}
    last = STEPS - 1
    for v in model.trainable_weights:
        name = v.path.replace("/", ".")
        weight, update = rows[(name, "weight", last)].stats, rows[(name, "update", last)].stats
        after = np.asarray(v.numpy(), np.float64)
        assert weight.shape == after.shape and update.shape == after.shape
        # weight (before the update) + update = the final weight
        np.testing.assert_allclose(weight.mean + update.mean, after.mean(), atol=1e-6, rtol=1e-5)
        assert weight.nan == update.nan == 0


@pytest.mark.parametrize("name", ["every1", "default", "sentinel_only", "forced_replay"])
def test_training_is_bit_identical(runs: tuple[Path, dict[str, Any]], name: str) -> None:
    """``forced_replay``: step 3's check is made to flag, so a healthy step is replayed (its
    Dropout masks drawn again: torch's generator and a seed-generator variable, its moving
    statistics updated again): the replay puts all of it back, training goes on unchanged."""
    out, result = runs
    if name == "forced_replay":
        assert result["replays"] == 1 and result[name]["findings"] == []
    bare, watched = _weights(out, "bare"), _weights(out, name)
    assert len(bare) == len(watched) > 0
    for a, b in zip(bare, watched, strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)


@pytest.mark.parametrize(("name", "step"), [("nan_replayed", 5), ("nan_hooked", 4)])
def test_nan_traced_to_the_inner_layer(
    runs: tuple[Path, dict[str, Any]], name: str, step: int
) -> None:
    """Step 5 records nothing (first=2): found by replaying it; step 4 is hooked (every=2)."""
    out, result = runs
    assert result[name]["findings"] == [[step, "poison", "forward", "output"]]
    (warning,) = result[name]["warnings"]
    assert f"step {step}" in warning and "'poison'" in warning
    run = load_run(out / name)
    (a,) = run.anomalies
    assert (a.kind, a.step, a.module, a.module_type, a.phase, a.role) == (
        "nan", step, "poison", "Poison", "forward", "output",
    )  # fmt: skip
    assert a.nan == 16 * 16 and a.posinf == a.neginf == 0
    assert max(s.step for s in run.scalars["loss"]) == step  # on_anomaly="stop"
    (snap,) = run.snapshots
    assert snap.step == step
    tensors = load_file(str(out / name / snap.path))
    assert np.isnan(tensors["poison/output0"]).all()
    assert np.isfinite(tensors["poison/input0"]).all()
    assert {f"{n}/output0" for n in LAYERS} <= set(tensors)
    assert {"(model)/input0", "(model)/output0"} <= set(tensors)  # named as on TensorFlow


@pytest.mark.parametrize(("name", "step"), [("inf_backward", 6), ("inf_backward_hooked", 2)])
def test_backward_only_inf_named_at_its_producer(
    runs: tuple[Path, dict[str, Any]], name: str, step: int
) -> None:
    """A custom backward adds +Inf: blamed on that layer's backward (grad_input), not on
    'drop2' whose output gradient it wrote; found by a replay (step 6) or a hooked step."""
    out, result = runs
    assert result[name]["findings"] == [[step, "backfire", "backward", "grad_input"]]
    (a,) = load_run(out / name).anomalies
    assert (a.kind, a.step, a.module, a.module_type, a.phase, a.role) == (
        "inf", step, "backfire", "Backfire", "backward", "grad_input",
    )  # fmt: skip
    assert a.posinf == 16 * 16 and "grad_output 0 of module 'drop2'" in a.message
    (snap,) = load_run(out / name).snapshots
    assert snap.step == step


def test_raise_stops_before_the_update_and_restores_the_model(
    runs: tuple[Path, dict[str, Any]],
) -> None:
    out, result = runs
    r = result["nan_raise"]
    assert (
        r["raised"].startswith("step 3: first non-finite value (nan)") and "'poison'" in r["raised"]
    )
    assert r["findings"] == [[3, "poison", "forward", "output"]]
    assert r["restored"] is True
    assert all(np.isfinite(w).all() for w in _weights(out, "nan_raise"))  # the NaN step not applied
    (a,) = load_run(out / "nan_raise").anomalies
    assert (a.step, a.module) == (3, "poison")


def test_subclassed_model_recorded_from_step_0(runs: tuple[Path, dict[str, Any]]) -> None:
    out, _ = runs
    want = {(n, r) for n in ("", "d1", "d2") for r in ("output", "grad_output")}
    want |= {(f"{n}.{w}", r) for n in ("d1", "d2") for w in ("kernel", "bias")
             for r in ("weight", "grad", "update")}  # fmt: skip
    assert _coverage(out / "subclassed") == dict.fromkeys(range(BATCHES), want)


def test_mobilenet_v2_every_layer_every_step_bit_identical(
    runs: tuple[Path, dict[str, Any]],
) -> None:
    """keras.applications.MobileNetV2 (inverted residuals, depthwise convolutions, ReLU6,
    BatchNormalization): every layer recorded at every step, the weights those of a bare fit."""
    out, result = runs
    r = result["mobilenet"]
    assert r["identical"] is True
    assert load_run(out / "mobilenet").info[0]["dropped"] == {}
    steps = _coverage(out / "mobilenet")
    assert sorted(steps) == [0, 1, 2]
    want = {(n, role) for n in ["", *r["layers"]] for role in ("output", "grad_output")}
    assert len(want) > 300
    for step, got in steps.items():
        assert want <= got, (step, sorted(want - got)[:5])
        for role in ("weight", "grad", "update"):
            assert len({n for n, ro in got if ro == role}) == r["weights"], (step, role)


def test_a_models_own_train_step(runs: tuple[Path, dict[str, Any]]) -> None:
    """Output gradients too: the hooks see the backward pass the user's step runs."""
    out, result = runs
    assert result["own_step"] == {"identical": True}
    want = {(n, r) for n in ("", "a", "b") for r in ("output", "grad_output")}
    want |= {(f"{n}.{w}", r) for n in ("a", "b") for w in ("kernel", "bias")
             for r in ("weight", "grad", "update")}  # fmt: skip
    assert _coverage(out / "own_step") == dict.fromkeys(range(BATCHES), want)


def test_an_error_in_the_users_step_leaves_nothing_behind(
    runs: tuple[Path, dict[str, Any]],
) -> None:
    out, result = runs
    r = result["user_error"]
    assert r == {"error": "RuntimeError: True", "restored": True, "writer_closed": True}
    run = load_run(out / "user_error")
    assert run.info[0]["status"] == "closed"
    steps = _coverage(out / "user_error")
    assert sorted(steps) == [0, 1, 2]
    # step 2 got as far as layer 'd' (and its root call began): what it recorded is kept
    assert steps[2] == {("d", "output")}


def test_same_tags_as_the_tensorflow_backend(
    runs: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    """This process runs Keras on TensorFlow: one step of the same model, the same rows."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("needs the TensorFlow backend in the test process")
    from keras_torch_models import data

    from vizdebug.keras import Callback

    out, _ = runs
    x, y = data()
    model = build()
    model.fit(x[:16], y[:16], batch_size=16, epochs=1, verbose=0,
              callbacks=[Callback(logdir=tmp_path, every=1)])  # fmt: skip
    assert _coverage(tmp_path)[0] == _coverage(out / "every1")[0]


@pytest.mark.slow
def test_jit_compile(tmp_path: Path) -> None:
    """``jit_compile=True``: the step runs under torch.compile; vizdebug runs beside its graph
    (weights, gradients, updates, the loss; a NaN traced by an eager replay), bit-identically."""
    result = _train(tmp_path, "jit")
    assert result["tensorflow_imported"] is False
    for a, b in zip(_weights(tmp_path, "bare"), _weights(tmp_path, "every1"), strict=True):
        assert np.array_equal(a, b)
    run = load_run(tmp_path / "every1")
    assert run.info[0]["dropped"] == {}
    params = {(w, r) for w in WEIGHTS for r in ("weight", "grad", "update")}
    assert _coverage(tmp_path / "every1") == dict.fromkeys(range(STEPS), params)
    assert any("torch.compile" in n.text for n in run.notes)
    assert [s.step for s in run.scalars["loss"]] == list(range(STEPS))
    assert result["nan_replayed"]["findings"] == [[5, "poison", "forward", "output"]]
    assert result["every1"]["restored"] is True
    (snap,) = load_run(tmp_path / "nan_replayed").snapshots
    assert np.isnan(load_file(str(tmp_path / "nan_replayed" / snap.path))["poison/output0"]).all()

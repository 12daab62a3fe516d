"""The model graph reaches TensorBoard's Graphs dashboard; subclassed models get a note."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
from tensorboard.backend.event_processing import event_accumulator as ea

import vizdebug
from vizdebug.runs import load_run


def _fit(logdir: Path, *, eager: bool) -> None:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, name="fc")])
    model.compile(optimizer="sgd", loss="mse", run_eagerly=eager)
    x = np.random.default_rng(0).normal(size=(32, 8)).astype("float32")
    y = np.zeros((32, 4), "float32")
    cb = vizdebug.keras.Callback(logdir=logdir, live=False)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[cb])


def test_graph_mode_writes_the_train_graph(tmp_path: Path) -> None:
    _fit(tmp_path, eager=False)
    acc = ea.EventAccumulator(str(tmp_path))
    acc.Reload()
    nodes = acc.Graph().node
    assert "MatMul" in {n.op for n in nodes}
    assert any("fc" in n.name for n in nodes)


def test_eager_mode_writes_it_too(tmp_path: Path) -> None:
    _fit(tmp_path, eager=True)
    acc = ea.EventAccumulator(str(tmp_path))
    acc.Reload()
    assert any("fc" in n.name for n in acc.Graph().node)


class Sub(keras.Model):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.fc = keras.layers.Dense(4)

    def call(self, x: object) -> object:
        return self.fc(x)


def test_subclassed_model_gets_a_note(tmp_path: Path) -> None:
    model = Sub()
    model.compile(optimizer="sgd", loss="mse")
    x = np.ones((16, 8), "float32")
    cb = vizdebug.keras.Callback(logdir=tmp_path, live=False)
    model.fit(x, np.zeros((16, 4), "float32"), epochs=1, verbose=0, callbacks=[cb])
    notes = [n.text for n in load_run(tmp_path).notes]
    assert any("model graph not recorded" in t and "subclassed" in t for t in notes), notes

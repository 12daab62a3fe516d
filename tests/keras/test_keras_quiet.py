"""Quiet: no retracing warning caused by vizdebug across many fits, one report per anomaly."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest
from keras_models import PoisonAt, compile_, digits_like, poisoned_mlp, sequential_cnn

import vizdebug
from vizdebug.keras import NonFiniteWarning


def test_many_fits_in_one_process_raise_no_retracing_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    x, y = digits_like(32)
    caplog.set_level(logging.WARNING)
    for i in range(7):  # new models, new callbacks: each needs its own traces
        model = compile_(sequential_cnn())
        cb = vizdebug.keras.Callback(logdir=tmp_path / str(i), every=2, first=1)
        model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[cb])
    assert not [r for r in caplog.records if "retracing" in r.getMessage()]


def test_one_report_per_anomaly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(3)
    x, y = rng.random((32, 6), dtype=np.float32), rng.integers(0, 3, 32)
    model, poison = poisoned_mlp()
    compile_(model)
    caplog.set_level(logging.WARNING, logger="vizdebug")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        cb = vizdebug.keras.Callback(logdir=tmp_path, first=1, on_anomaly="stop")
        model.fit(x, y, batch_size=8, verbose=0, shuffle=False,
                  callbacks=[PoisonAt(poison, 2), cb])  # fmt: skip
    reports = [w for w in seen if issubclass(w.category, NonFiniteWarning)]
    assert len(reports) == 1 and "poison" in str(reports[0].message)
    assert not [r for r in caplog.records if r.getMessage().startswith("vizdebug:")]
    assert isinstance(model, keras.Model)

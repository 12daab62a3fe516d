"""Shared set-up for the Keras/TensorFlow adapter tests (TensorFlow imports once per session)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")


@pytest.fixture(autouse=True)
def _seed() -> None:
    keras.utils.set_random_seed(0)

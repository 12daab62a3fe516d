"""A real Keras training process for the live-debugger test.

Usage: python live_train_keras.py RUN_DIR NAN_STEP
Batch NAN_STEP holds a NaN in its input; breakpoint "step:4" is set from code. Prints "ready"
before fit and "done" after it.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
from sklearn.datasets import load_digits

import vizdebug

run_dir, nan_step = sys.argv[1], int(sys.argv[2])
keras.utils.set_random_seed(0)
digits = load_digits()
x = (digits.data / 16.0).astype("float32")[:1280]
y = digits.target[:1280]
x[nan_step * 16, 3] = np.nan
model = keras.Sequential(
    [
        keras.Input((64,)),
        keras.layers.Dense(16, name="fc1"),
        keras.layers.ReLU(name="act"),
        keras.layers.Dense(10, name="fc2"),
    ]
)
model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
callback = vizdebug.keras.Callback(logdir=run_dir, break_on="step:4", live_timeout=60.0)
print("ready", flush=True)
model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0, callbacks=[callback])
print("done", flush=True)

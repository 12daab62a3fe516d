"""The models and callbacks of the torch-backend tests (any backend imports them).

A small functional model (Conv2D, BatchNormalization, Dropout, Dense) with layers that can be
armed from a callback: :class:`Poison` returns NaN, :class:`Backfire`'s backward returns +Inf,
:class:`Boom` raises; :class:`ReplayAt` forces a healthy step through vizdebug's replay.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import layers, ops

BATCH, BATCHES, EPOCHS = 16, 4, 2


class Poison(keras.layers.Layer):
    """Identity while ``armed`` is 0; NaN everywhere while it is 1 (a state variable, so a
    replay of the step from its starting state sees the same)."""

    def build(self, input_shape: Any) -> None:
        self.armed = self.add_weight(shape=(), initializer="zeros", trainable=False, name="armed")

    def call(self, x: Any) -> Any:
        return x + ops.where(self.armed > 0, float("nan"), 0.0)


class Backfire(keras.layers.Layer):
    """Identity; while ``armed`` is 1 its backward adds +Inf to the gradient it passes on
    (a custom ``torch.autograd.Function``: a fault of the backward pass only)."""

    def build(self, input_shape: Any) -> None:
        self.armed = self.add_weight(shape=(), initializer="zeros", trainable=False, name="armed")

    def call(self, x: Any) -> Any:
        if keras.backend.backend() != "torch":
            return x + 0.0
        return _backfire().apply(x, self.armed.value)


def _backfire() -> Any:
    import torch

    class Fn(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Any, armed: Any) -> Any:
            ctx.save_for_backward(armed)
            return x.clone()

        @staticmethod
        def backward(ctx: Any, grad: Any) -> Any:
            (armed,) = ctx.saved_tensors
            return grad + torch.where(armed > 0, float("inf"), 0.0), None

    return Fn


class ArmAt(keras.callbacks.Callback):
    """Arms a layer (``armed``) for training step ``at`` only (steps counted across epochs)."""

    def __init__(self, layer: Any, at: int) -> None:
        super().__init__()
        self.layer, self.at, self.step = layer, at, 0

    def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
        self.layer.armed.assign(1.0 if self.step == self.at else 0.0)
        self.step += 1


class ReplayAt(keras.callbacks.Callback):
    """Makes the NaN check of step ``at`` flag a healthy step, so it is replayed (and counts
    the replayed forward passes): the replay must leave training as it was."""

    def __init__(self, watched: Any, at: int) -> None:
        super().__init__()
        self.watched, self.at, self.step, self.replays = watched, at, 0, 0

    def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
        if self.step == self.at:
            watch = self.watched.watch
            sentinel, target = watch.sentinel, watch.target
            forward = target.forward

            def flagged(*args: Any) -> bool:
                del sentinel.flagged  # once
                return True

            def counted(*args: Any, **kwargs: Any) -> Any:
                self.replays += 1
                return forward(*args, **kwargs)

            sentinel.flagged = flagged
            target.forward = counted
        self.step += 1


class Subclassed(keras.Model):
    """A subclassed model, unbuilt until its first call."""

    def __init__(self) -> None:
        super().__init__()
        self.d1 = layers.Dense(8, activation="relu", name="d1")
        self.d2 = layers.Dense(3, name="d2")

    def call(self, x: Any) -> Any:
        return self.d2(self.d1(x))


def build(jit: bool = False) -> keras.Model:
    """The test model, compiled (``jit``: under ``torch.compile``); its initial weights are
    random: copy them with ``set_weights``."""
    inp = keras.Input((8, 8, 1))
    x = layers.Conv2D(4, 3, name="conv")(inp)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.Activation("relu", name="relu")(x)
    x = layers.Flatten(name="flat")(x)
    x = layers.Dropout(0.25, name="drop")(x)
    x = layers.Dense(16, activation="relu", name="hidden")(x)
    if not jit:  # compiled, a seeded Dropout differs between two bare fits already (Keras)
        x = layers.Dropout(0.1, seed=7, name="drop2")(x)  # a seed-generator state: a variable
    x = Backfire(name="backfire")(x)
    x = Poison(name="poison")(x)
    out = layers.Dense(3, name="head")(x)
    model = keras.Model(inp, out, name="small")
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit,
    )
    return model


def data() -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH * BATCHES, 8, 8, 1)).astype("float32")
    return x, rng.integers(0, 3, BATCH * BATCHES)


class Boom(keras.layers.Layer):
    """Raises in its forward pass while ``fire`` is set (the user's bug, mid-fit)."""

    fire = False

    def call(self, x: Any) -> Any:
        if self.fire:
            raise RuntimeError("boom")
        return x


class FireAt(keras.callbacks.Callback):
    def __init__(self, layer: Boom, at: int) -> None:
        super().__init__()
        self.layer, self.at = layer, at

    def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
        self.layer.fire = batch == self.at


class OwnStep(keras.Model):
    """A functional model with its own ``train_step`` (the torch backend's usual shape)."""

    def train_step(self, data: Any) -> Any:
        import torch

        x, y = data
        y_pred = self(x, training=True)
        self.zero_grad()
        loss = self.compute_loss(x=x, y=y, y_pred=y_pred, training=True)
        loss.backward()
        grads = [v.value.grad for v in self.trainable_weights]
        with torch.no_grad():
            self.optimizer.apply(grads, self.trainable_weights)
        return {"loss": loss}

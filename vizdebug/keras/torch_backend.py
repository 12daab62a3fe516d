"""``vizdebug.keras.Callback`` on Keras 3's torch backend (``KERAS_BACKEND=torch``).

:data:`vizdebug.keras.Callback` is this class when ``keras.backend.backend()`` is ``"torch"``:
the same options, the same run layout and tags as on TensorFlow (layer names ``"block.dense"``,
weight names ``"dense.kernel"``, roles ``output``/``grad_output``/``weight``/``grad``/
``update``, a ``loss`` scalar per step, ``train/*`` and ``epoch/*`` metrics, a ``keras``
structure event), and no TensorFlow import. The work is the torch adapter's, wired to the
Keras model by :class:`~vizdebug.keras.torch_watch.KerasTorchWatch`; the callback puts a thin
wrapper in ``model.train_function`` that marks where a training step begins and ends (so
validation and prediction calls of the model are not recorded) and undoes everything at
train end.

What differs from the TensorFlow backend: ``check_numerics`` (a ``tf.debugging`` feature) and
the live debugger are not available (``check_numerics=True`` and ``break_on`` raise
``ValueError``; ``live`` is ignored and a note says so); ``findings`` holds the torch
adapter's :class:`vizdebug.torch.Finding`; ``max_stall`` has nothing to bound, since only
statistics rows are queued, computed off the training thread; no model graph is recorded.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import keras
import torch

from ..adapters import DEFAULT_EVERY, DEFAULT_FIRST, check_schedule, globs
from ..sinks import Sink
from ..stats import HIST_BINS
from ..torch.sentinel import Finding
from ..writer import Writer
from .torch_watch import KerasTorchWatch

__all__ = ["TorchCallback"]

OnAnomaly = Literal["warn", "raise", "stop"] | None
_MODES = ("warn", "raise", "stop", None)
#: Keras's modes as the torch reporter's ("stop" warns, then the callback stops training).
_REPORTER = {"warn": "warn", "stop": "warn", "raise": "raise", None: None}


def versions() -> dict[str, str]:
    """Keras and torch versions, for run info."""
    return {"keras": str(keras.__version__), "torch": str(torch.__version__), "backend": "torch"}


class TorchCallback(keras.callbacks.Callback):  # type: ignore[misc]
    """Record per-layer activations, gradients, weights and updates, and trace NaN/Inf.

    The options are those of the TensorFlow backend's callback
    (:class:`vizdebug.keras.callback.Callback`); what differs is listed in the module's
    docstring.

    Raises:
        ValueError: A bad option value, ``check_numerics=True`` or ``break_on`` (TensorFlow
            and live-debugger features); at train begin, ``steps_per_execution`` > 1 is
            Keras's own error on this backend.
        TypeError: A bad option type; at train begin, a model that is not a compiled Keras 3
            model.
    """

    def __init__(
        self,
        *,
        logdir: str | os.PathLike[str] | None = None,
        every: int = DEFAULT_EVERY,
        first: int = DEFAULT_FIRST,
        what: Iterable[str] | None = None,
        include: str | Sequence[str] | None = None,
        exclude: str | Sequence[str] | None = None,
        sinks: Sequence[str | Sink] | None = None,
        on_anomaly: OnAnomaly = "warn",
        check_numerics: bool = False,
        flight_recorder: bool = True,
        max_snapshots: int = 3,
        bins: int = HIST_BINS,
        max_stall: float | None = None,
        writer: Writer | None = None,
        keep_open: bool = False,
        live: bool = True,
        live_timeout: float | None = 60.0,
        break_on: str | Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        self.what = check_schedule(every, first, what)
        if on_anomaly not in _MODES:
            raise ValueError(f"on_anomaly must be one of {_MODES}, got {on_anomaly!r}")
        if check_numerics:
            raise ValueError(
                "check_numerics=True needs TensorFlow (tf.debugging.enable_check_numerics); on "
                "Keras's torch backend the NaN/Inf sentinel (on_anomaly) already names the layer"
            )
        if break_on is not None:
            raise ValueError(
                "break_on needs the live debugger, which is not served on Keras's torch backend "
                "yet; use on_anomaly='raise' to stop at the first NaN/Inf"
            )
        if max_stall is not None and not max_stall >= 0:
            raise ValueError(f"max_stall must be None or >= 0 seconds, got {max_stall!r}")
        if writer is not None and not isinstance(writer, Writer):
            raise TypeError(f"writer must be a vizdebug.Writer, got {type(writer).__name__}")
        self.include, self.exclude = globs(include, "include"), globs(exclude, "exclude")
        self.logdir, self.sinks = logdir, sinks
        self.every, self.first = every, first
        self.on_anomaly: OnAnomaly = on_anomaly
        self.flight_recorder, self.max_snapshots, self.bins = flight_recorder, max_snapshots, bins
        self.max_stall, self.keep_open = max_stall, keep_open
        self.live, self.live_timeout = live, live_timeout
        self.writer: Writer | None = writer
        self._owns_writer = writer is None
        self.watch: KerasTorchWatch | None = None
        self.findings: list[Finding] = []
        self._step = 0
        self._original: Any = None
        #: The writer that got the structure event (one per run).
        self._structured: Writer | None = None

    # -- set-up and tear-down ------------------------------------------------------------

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        """Create the writer, hook the model and wrap its train function."""
        model = self.model
        if not isinstance(model, keras.Model) or getattr(model, "optimizer", None) is None:
            raise TypeError(
                "vizdebug.keras.Callback needs a compiled Keras 3 model (keras.Model), got "
                f"{type(model).__module__}.{type(model).__name__}"
            )
        if self.writer is None or self.writer.closed:
            if not self._owns_writer:
                raise ValueError("the writer given to vizdebug.keras.Callback is closed")
            self.writer = Writer(self.logdir, sinks=self.sinks, framework="keras",
                                 versions=versions())  # fmt: skip
        self._original = model.train_function
        model.train_function = self._train_function
        if model.built:
            self._watch()
        # else: a subclassed model is built by its first call; the first step builds it

    def _watch(self) -> KerasTorchWatch:
        writer = self.writer
        if writer is None:
            raise RuntimeError("vizdebug.keras.Callback: no writer before train begin")
        first = self._structured is not writer  # a new run: its structure event, its notes
        self.watch = KerasTorchWatch(
            self.model, writer, what=self.what, every=self.every, first=self.first,
            bins=self.bins, include=self.include, exclude=self.exclude,
            on_anomaly=_REPORTER[self.on_anomaly], flight_recorder=self.flight_recorder,
            max_snapshots=self.max_snapshots, step=self._step,
            structure=first, compiled=bool(self.model.jit_compile),
        )  # fmt: skip
        self._structured = writer
        if first:
            live = "the live debugger (vizdebug tui --attach) is not served and "
            live = live if self.live else ""
            writer.note(
                "vizdebug/keras",
                f"Keras on the torch backend: {live}no model graph is recorded (TensorBoard's "
                "Graphs dashboard); statistics, NaN/Inf tracing and snapshots are as usual",
            )
        if self.model.jit_compile and first:
            writer.note(
                "vizdebug/keras",
                "the model trains under torch.compile (jit_compile=True): layer outputs and "
                "output gradients are not recorded (hooks would break its graph); weights, "
                "gradients, updates and the loss are, and a NaN is traced by an eager replay "
                "of its step (a fault only in the backward pass is named where it was seen)",
            )
        return self.watch

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        """Restore the model and flush (or close) the writer."""
        self._teardown()

    def _teardown(self) -> None:
        if self._original is not None and self.model is not None:
            self.model.train_function = self._original
            self._original = None
        watch, self.watch = self.watch, None
        if watch is not None:
            watch.close()
        if self.writer is not None:
            if self._owns_writer and not self.keep_open:
                self.writer.close()
            else:
                self.writer.flush()

    def close(self) -> None:
        """Close the callback's own writer (needed with ``keep_open=True``). Idempotent."""
        self._teardown()
        if self._owns_writer and self.writer is not None:
            self.writer.close()

    # -- the training step ----------------------------------------------------------------

    def _train_function(self, data: Any) -> Any:
        original = self._original
        if original is None:
            raise RuntimeError("vizdebug.keras.Callback: train function called before train begin")
        watch = self.watch
        if watch is None:
            if not self.model.built:
                # build it from the batch's shapes, as Keras would in the first call, so that
                # step 0 is recorded and checked like any other
                self.model._symbolic_build(data_batch=data[0])
            watch = self._watch()
        seen = len(watch.findings)
        watch.begin_step(data)
        try:
            out = original(data)
            watch.end_step()  # raises NonFiniteError ("raise") if the step never applied
        except BaseException:
            # on_anomaly="raise", or the user's step failed: fit ends here and on_train_end
            # never runs, so nothing of vizdebug may stay on the model
            watch.in_step = False
            self.findings += watch.findings[seen:]
            self._step = watch.step
            self._teardown()
            raise
        self._step = watch.step
        new = watch.findings[seen:]
        self.findings += new
        if new and self.on_anomaly == "stop":
            self.model.stop_training = True
        return out

    # -- scalars --------------------------------------------------------------------------

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        """Record the batch's metrics (Keras's running means over the epoch) as ``train/*``."""
        if self.writer is None or not logs:
            return
        for key, value in logs.items():
            if isinstance(value, int | float):
                self.writer.scalar(f"train/{key}", value, self._step - 1)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Record the epoch's metrics (validation included) as ``epoch/*``."""
        if self.writer is None or not logs:
            return
        for key, value in logs.items():
            if isinstance(value, int | float):
                self.writer.scalar(f"epoch/{key}", value, self._step - 1)

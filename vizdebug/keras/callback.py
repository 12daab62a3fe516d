"""``model.fit(..., callbacks=[vizdebug.keras.Callback()])``: per-layer health of a Keras model.

How it hooks in (all undone at train end): at ``on_train_begin`` the callback wraps every
layer's ``call`` (:class:`~vizdebug.keras.probe.LayerProbe`), builds up to two instrumented
train functions with the model's own ``make_train_function`` (so the iterator protocol,
``steps_per_execution``, ``run_eagerly`` and the distribution strategy are Keras's) and puts a
small dispatcher in ``model.train_function``:

* a scheduled step runs the *recording* function: statistics of every layer output, output
  gradient, weight, weight gradient and update, plus the NaN/Inf check;
* any other step runs the *checking* function (one NaN/Inf sum; a flagged batch is replayed
  with every layer checked, see :mod:`vizdebug.keras.replay`) -- or, with
  ``on_anomaly=None``, the model's untouched train function; after a replay that did not
  reproduce its value, or while a live debugger client is attached, the *full* variants of
  both functions (every layer checked in the step).

The statistics describe the very batch the scheduled step trained on (the current training
batch, forward pass in training mode); weights and updates are those of that step's optimizer
update (weight = value before it, update = after - before). With ``steps_per_execution > 1``
they describe the last batch of the execution.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from typing import Any

import keras
import tensorflow as tf

from ..live.breaks import parse_breaks
from ..runs.native import Graph
from ..sinks import Sink
from ..stats import HIST_BINS
from ..tf.ops import own_function
from ..writer import Writer
from .engine import (
    DEFAULT_EVERY,
    DEFAULT_FIRST,
    Engine,
    Finding,
    NonFiniteError,
    OnAnomaly,
    check_options,
    globs,
)
from .live import KerasLive
from .numerics import finding_from_error, is_check_numerics_error
from .outside import OutsideStep, applies, pull
from .plan import Plan
from .replay import Replayer
from .step import EXTRA, make_replay, make_step, uses_default_train_step

__all__ = ["Callback"]

log = logging.getLogger("vizdebug")


def versions() -> dict[str, str]:
    """TensorFlow and Keras versions, for run info."""
    return {"tensorflow": str(tf.__version__), "keras": str(keras.__version__)}


class Callback(keras.callbacks.Callback):  # type: ignore[misc]
    """Record per-layer activations, gradients, weights and updates, and trace NaN/Inf.

    Args:
        logdir: Run directory (default: a new one under ``$VIZDEBUG_LOGDIR`` or ``./runs``).
        every: Record statistics every N-th step (default 100).
        first: Always record the first K steps (default 5).
        what: Subset of ``{"activations", "gradients", "weights", "updates"}`` (default: all;
            an empty set records no statistics, leaving only the NaN/Inf check).
        include, exclude: Layer-name globs (``"block.*"``; nested layers are ``outer.inner``,
            the model itself is ``""``) selecting what gets statistics; checks cover everything.
        sinks: Extra sinks for the writer the callback creates.
        on_anomaly: On a NaN/Inf: ``"warn"`` (warn and go on), ``"stop"`` (warn, then
            ``model.stop_training = True``), ``"raise"`` (raise :class:`NonFiniteError`), or
            None (no per-step check: unscheduled steps run the model's own train function).
        check_numerics: Turn on ``tf.debugging.enable_check_numerics`` for the run (off again
            at train end); its error becomes an anomaly naming the op and layer, and training
            stops (``on_anomaly="raise"``: the error is re-raised).
        flight_recorder: On an anomaly, save the failing step's layer inputs and outputs as a
            safetensors snapshot (at most ``max_snapshots`` per callback).
        max_snapshots: See ``flight_recorder``.
        bins: Histogram bins.
        max_stall: Seconds a recorded step may wait for the writer to make room for its
            statistics. Default None: as long as the writer thread runs -- nothing scheduled is
            dropped, the writer's queue applies back-pressure, so memory stays within its
            budget (or one step's values). Past a set limit the step's statistics are dropped,
            counted in ``run.json`` and warned about the first time.
        writer: An existing :class:`~vizdebug.Writer` (never closed by the callback).
        keep_open: Keep the callback's own writer open across ``fit`` calls (one run, steps
            keep counting); call :meth:`close` when done. Default: close it at train end, and a
            later ``fit`` opens a new run.
        live: Serve the live debugger (``vizdebug tui --attach``): training pauses and steps at
            batch boundaries, and the layers of the paused batch can be stepped through with
            their inputs, outputs and weights. Needs the NaN check (``on_anomaly`` not None).
        live_timeout: Seconds a paused run waits for a vanished client (None: stay paused).
        break_on: Breakpoints (``"nan"``, ``"step:N"``, ``"abs>T"``, ...), checked at batch
            boundaries on every layer's inputs and outputs and the weights.

    Raises:
        ValueError: A bad option value.
        TypeError: A bad option type; at train begin, a model that is not a Keras 3 model.
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
        if break_on is not None and not live:
            raise ValueError("break_on needs the live debugger: drop live=False")
        parse_breaks(break_on)  # a bad specification fails here, not at train begin
        self.what = check_options(every, first, what, on_anomaly)
        globs(include, "include"), globs(exclude, "exclude")
        if writer is not None and not isinstance(writer, Writer):
            raise TypeError(f"writer must be a vizdebug.Writer, got {type(writer).__name__}")
        self.logdir, self.sinks = logdir, sinks
        self.every, self.first = every, first
        self.include, self.exclude = include, exclude
        self.on_anomaly: OnAnomaly = on_anomaly
        self.check_numerics = check_numerics
        self.flight_recorder, self.max_snapshots, self.bins = flight_recorder, max_snapshots, bins
        if max_stall is not None and not max_stall >= 0:
            raise ValueError(f"max_stall must be None or >= 0 seconds, got {max_stall!r}")
        self.max_stall = max_stall
        self.keep_open, self.live, self.break_on = keep_open, live, break_on
        self.live_timeout = live_timeout
        self._live: KerasLive | None = None
        self._capturing = False
        self._graph_done = False
        self.writer: Writer | None = writer
        self._owns_writer = writer is None
        self.engine: Engine | None = None
        self.findings: list[Finding] = []
        self._step = 0
        self._fns: dict[str, Any] = {}
        self._fns_engine: Engine | None = None
        self._plans: dict[str, Plan] = {}
        self._original: Any = None
        self._outside: OutsideStep | None = None
        self._installed = False
        self._built = False
        self._last_logs: Any = {}

    # -- set-up and tear-down ------------------------------------------------------------

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        """Create the writer, wrap the layers and swap in the instrumented train function."""
        model = self.model
        if not isinstance(model, keras.Model):
            raise TypeError(
                "vizdebug.keras.Callback needs a Keras 3 model (keras.Model), got "
                f"{type(model).__module__}.{type(model).__name__}"
            )
        if self.writer is None or self.writer.closed:
            if not self._owns_writer:
                raise ValueError("the writer given to vizdebug.keras.Callback is closed")
            self.writer = Writer(self.logdir, sinks=self.sinks, framework="keras",
                                 versions=versions())  # fmt: skip
        engine = self.engine
        if engine is None or engine.model is not model or engine.writer is not self.writer:
            engine = Engine(
                model, self.writer, every=self.every, first=self.first, what=self.what,
                include=self.include, exclude=self.exclude, on_anomaly=self.on_anomaly,
                flight_recorder=self.flight_recorder, max_snapshots=self.max_snapshots,
                bins=self.bins, max_stall=self.max_stall,
            )  # fmt: skip
        self.engine = engine
        engine.numerics = self.check_numerics
        self.writer.step = self._step
        if self.live and engine.sentinel and self._live is None:
            self._live = KerasLive(
                self.writer, model, {s.name: s.type for s in engine.slots},
                {s.name: s.weights for s in engine.slots},
                break_on=self.break_on, resume_timeout=self.live_timeout,
            )  # fmt: skip
        if not uses_default_train_step(model) and "gradients" in self.what:
            engine.note(
                f"{type(model).__name__} overrides train_step: output gradients are not "
                "recorded (the tape is its own); weight gradients are when it hands them to "
                "the optimizer (apply / apply_gradients)"
            )
        engine.probe.install()
        reuse = (
            (self._fns or self._outside is not None)
            and model.train_function is self._original
            and self._fns_engine is engine
            and model.train_function is not None
        )
        self._original = model.train_function
        if reuse:
            # fit() called again on the same compiled model: the traced functions still hold
            # (a loop of fit(epochs=1) calls would otherwise trace them at every call)
            self._built = True
        elif model.built:  # else: step 0 runs Keras's function, which builds the model
            self._fns = {}
            self._build_functions()
        model.train_function = self._train_function
        self._installed = True
        if self.check_numerics:
            tf.debugging.enable_check_numerics()

    def _build_functions(self) -> None:
        engine = self.engine
        if engine is None:
            return
        if not engine.weights and self.model.trainable_weights:
            engine.refresh()
        self._fns_engine = engine
        replayer = None
        if engine.sentinel and uses_default_train_step(self.model):
            replayer = engine.replay = Replayer(engine, make_replay(engine))
        self._outside = None
        if applies(self.model) and self._original is not None:
            # Keras's own function trains; vizdebug's functions run beside it (outside.py)
            self._outside = OutsideStep(engine, self._original, replayer)
        else:
            for kind in (["check"] if engine.sentinel else []) + (["record"] if self.what else []):
                self._build(kind)
        self._built = True

    def _build(self, kind: str) -> Any:
        """Trace the instrumented train function of ``kind`` (see :func:`make_step`)."""
        model, engine = self.model, self.engine
        if engine is None:
            raise RuntimeError("vizdebug.keras.Callback: no engine before train begin")
        try:
            model.train_step = make_step(engine, kind=kind, plans=self._plans)
            model.make_train_function(force=True)
            self._fns[kind] = model.train_function
        finally:
            if "train_step" in vars(model):
                del model.train_step
            model.train_function = self._train_function
        return self._fns[kind]

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        """Restore the model and flush (or close) the writer."""
        self._teardown()

    def _teardown(self) -> None:
        if not self._installed:
            return
        self._installed = self._built = False
        model = self.model
        if self.check_numerics:
            tf.debugging.disable_check_numerics()
        model.train_function = self._original
        if self.engine is not None:
            self.engine.probe.remove()
            self.engine.capture.assign(False)
        self._capturing = False
        if self._live is not None:
            self._live.close()
            self._live = None
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

    def _train_function(self, iterator: Any) -> Any:
        engine = self.engine
        if engine is None or self.writer is None:
            raise RuntimeError("vizdebug.keras.Callback: train function called before train begin")
        step = self._step
        data: Any = None
        if not self._built and not self.model.built:
            # a subclassed model Keras would build while tracing step 0: build it here from
            # the batch's shapes (as fit does under a distribution strategy), so step 0 is
            # recorded and checked like any other
            data = pull(iterator)
            self.model._symbolic_build(data_batch=data)
        if not self._built and self.model.built:
            self._build_functions()
        live = self._live
        if live is not None and live.armed != self._capturing:
            self._capturing = live.armed
            engine.capture.assign(self._capturing)
        kind = "record" if engine.scheduled(step) else "check"
        wanted = kind in self._fns or (self._outside is not None and (
            kind == "record" or engine.sentinel))  # fmt: skip
        if (engine.exact or self._capturing) and self._built and wanted:
            # every layer checked in the step (and, armed, returned to the debugger)
            kind = "full" if kind == "check" else "record_full"
        outside = self._outside if self._built and "full" not in kind else None
        finding = None
        try:
            if outside is not None:
                if data is None:  # StopIteration ends the epoch, as in Keras's function
                    data = pull(iterator)
                if kind == "record":
                    out, finding = outside.record(step, data)
                elif engine.sentinel:
                    out, finding = outside.check(step, data)
                else:
                    out = self._original([data])
            else:
                fn = self._fns.get(kind) or (
                    self._build(kind) if "full" in kind else self._original
                )
                out = fn(iterator if data is None else [data])
        except tf.errors.InvalidArgumentError as exc:
            if not (self.check_numerics and is_check_numerics_error(exc)):
                raise
            self._numerics_error(exc, step)
            return self._last_logs
        finally:
            engine.probe.error_slot = None
        if not self._graph_done:
            self._record_graph(step)
        self._step = step + int(getattr(self.model, "steps_per_execution", 1) or 1)
        self.writer.step = self._step
        extra = out.pop(EXTRA, None) if isinstance(out, dict) else None
        if extra is not None:
            finding = engine.finish(step, self._plans[kind], extra)
        if finding is not None:
            self.findings.append(finding)
            self._act(finding)
        if live is not None and live.armed:
            io, engine.last_io = engine.last_io, {}
            live.batch_end(step, io if self._capturing else {})
        self._last_logs = out
        return out

    def _record_graph(self, step: int) -> None:
        """The model's forward graph, once, for TensorBoard's Graphs dashboard."""
        self._graph_done = True
        engine, writer, model = self.engine, self.writer, self.model
        if engine is None or writer is None:
            return
        inputs = getattr(model, "inputs", None)
        if not inputs:
            engine.note(
                f"model graph not recorded: {type(model).__name__} has no symbolic inputs "
                "(a subclassed model); build it from keras.Input to get one"
            )
            return
        try:
            specs = [tf.TensorSpec(t.shape, t.dtype) for t in inputs]

            def forward(*xs: Any) -> Any:
                return model(xs[0] if len(xs) == 1 else list(xs), training=False)

            concrete = own_function(forward).get_concrete_function(*specs)
            graph_def = concrete.graph.as_graph_def().SerializeToString()
        except Exception as exc:  # a model that cannot be traced symbolically: say why
            engine.note(f"model graph not recorded: {type(exc).__name__}: {exc}"[:300])
            return
        writer.write(Graph(step=step, graph_def=bytes(graph_def)))

    def _numerics_error(self, exc: BaseException, step: int) -> None:
        engine = self.engine
        if engine is None:
            raise exc
        # Off at once: Keras reads its (now NaN) metrics eagerly after the loop stops.
        tf.debugging.disable_check_numerics()
        finding = finding_from_error(exc, step, engine.slots, engine.probe.error_slot)
        self.findings.append(finding)
        engine.report(finding)
        if self.on_anomaly in ("raise", None):
            self._teardown()
            raise exc
        self.model.stop_training = True

    def _act(self, finding: Finding) -> None:
        if self.on_anomaly == "raise":
            self._teardown()
            raise NonFiniteError(finding)
        if self.on_anomaly == "stop":
            self.model.stop_training = True

    # -- scalars --------------------------------------------------------------------------

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        """Record the batch's metrics (Keras's running means over the epoch) as ``train/*``."""
        if self.writer is None or not logs:
            return
        step = self._step - 1
        for key, value in logs.items():
            if isinstance(value, int | float):
                self.writer.scalar(f"train/{key}", value, step)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Record the epoch's metrics (validation included) as ``epoch/*``."""
        if self.writer is None or not logs:
            return
        for key, value in logs.items():
            if isinstance(value, int | float):
                self.writer.scalar(f"epoch/{key}", value, self._step - 1)

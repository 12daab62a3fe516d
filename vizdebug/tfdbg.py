"""``vizdebug import-tfdbg DUMP_DIR``: a Debugger V2 dump as a vizdebug run.

Reads what ``tf.debugging.experimental.enable_dump_debug_info`` wrote (with TensorFlow's own
``DebugDataReader``) and writes, per traced op output (tensor name ``<op name>:<slot>``, role
``output``), what the dump's ``tensor_debug_mode`` holds:

=================================  =============================================================
mode                               written
=================================  =============================================================
FULL_TENSOR                        full :class:`~vizdebug.events.TensorStats` (numpy reference)
FULL_HEALTH                        TensorStats with numel and NaN/+Inf/-Inf/zero counts; the
                                   moments are NaN and the histogram empty (not in the dump)
CONCISE_HEALTH                     as FULL_HEALTH without zero counts (written as 0)
CURT_HEALTH, REDUCE_INF_NAN_...    only the per-step scalars and the anomaly below
SHAPE                              a model-structure event: every op with its output shapes
NO_TENSOR                          a note with how many op executions were traced
=================================  =============================================================

Every mode gives the scalars ``tfdbg/ops`` and ``tfdbg/nonfinite_ops`` per step, and the first
op that produced a NaN or an Inf becomes an :class:`~vizdebug.events.Anomaly` naming the op,
its type and its name scope (layer names for Keras models). A step is one top-level execution
(a ``tf.function`` call or an eager op) in the dump, numbered from 0 in execution order.
"""

from __future__ import annotations

import argparse
import bisect
import math
from collections import Counter
from pathlib import Path
from typing import Any

__all__ = ["import_dump", "register"]


def register(subparsers: Any) -> None:
    """Add the ``import-tfdbg`` subcommand."""
    p = subparsers.add_parser(
        "import-tfdbg", help="import a tf.debugging Debugger V2 dump as a vizdebug run"
    )
    p.add_argument("dump_dir", metavar="DUMP_DIR", help="directory given to enable_dump_debug_info")
    p.add_argument("--logdir", help="run directory to write (default: a new one under ./runs)")
    p.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace) -> int:
    run_dir = import_dump(args.dump_dir, logdir=args.logdir)
    from .ui.safe import safe

    print(safe(run_dir))
    return 0


def _mode_name(mode: int) -> str:
    from tensorflow.core.protobuf import debug_event_pb2

    return str(debug_event_pb2.TensorDebugMode.Name(mode))


def _dtype_name(enum: int) -> str:
    import tensorflow as tf

    try:
        return str(tf.dtypes.as_dtype(enum).name)
    except TypeError:
        return ""


_LENGTH = {
    "FULL_HEALTH": 11,
    "CONCISE_HEALTH": 5,
    "CURT_HEALTH": 2,
    "REDUCE_INF_NAN_THREE_SLOTS": 3,
}


def _stats(mode: str, value: list[float], full: Any) -> Any:
    import numpy as np

    from .events import Stats
    from .stats import HIST_BINS, reference_stats

    if mode == "FULL_TENSOR":
        ok = full is not None and np.asarray(full).dtype.kind in "fiub"
        return reference_stats(full) if ok else None
    if len(value) < _LENGTH.get(mode, 0):
        return None
    dtype = ""
    if mode == "FULL_HEALTH":
        numel, neg, pos, nan, zeros = value[4], value[5], value[6], value[7], value[9]
        rank = int(value[3])
        dtype = _dtype_name(int(value[2]))
    elif mode == "CONCISE_HEALTH":
        numel, neg, pos, nan, zeros = value[1], value[2], value[3], value[4], 0.0
        rank = 0
    else:
        return None
    nanf = math.nan
    return Stats(
        numel=int(numel),
        dtype=dtype,
        shape=(-1,) * rank,
        nan=int(nan),
        posinf=int(pos),
        neginf=int(neg),
        zeros=int(zeros),
        min=nanf,
        max=nanf,
        mean=nanf,
        std=nanf,
        l2=nanf,
        hist_lo=0.0,
        hist_hi=0.0,
        hist_counts=(0,) * HIST_BINS,
    )


def _nonfinite(mode: str, value: list[float], full: Any) -> tuple[int, int, int] | None:
    """``(nan, posinf, neginf)`` counts (1 = "some") or None when finite / unknown."""
    import numpy as np

    if len(value) < _LENGTH.get(mode, 0):
        return None
    if mode == "FULL_TENSOR" and full is not None:
        a = np.asarray(full)
        if a.dtype.kind != "f":
            return None
        c = (int(np.isnan(a).sum()), int(np.isposinf(a).sum()), int(np.isneginf(a).sum()))
    elif mode == "FULL_HEALTH":
        c = (int(value[7]), int(value[6]), int(value[5]))
    elif mode == "CONCISE_HEALTH":
        c = (int(value[4]), int(value[3]), int(value[2]))
    elif mode == "CURT_HEALTH":
        c = (int(value[1]), 0, 0)
    elif mode == "REDUCE_INF_NAN_THREE_SLOTS":
        c = (int(math.isnan(value[2])), int(value[1] > 0), int(value[0] < 0))
    else:
        return None
    return c if any(c) else None


def import_dump(dump_dir: str | Path, *, logdir: str | Path | None = None) -> Path:
    """Convert a Debugger V2 dump into a vizdebug run; returns the run directory.

    Raises:
        FileNotFoundError: ``dump_dir`` holds no ``.debug_events`` metadata file.
    """
    dump = Path(dump_dir)
    if not list(dump.glob("*.metadata")):
        raise FileNotFoundError(
            f"{dump} is not a Debugger V2 dump (no *.metadata file); pass the directory given "
            "to tf.debugging.experimental.enable_dump_debug_info"
        )
    from tensorflow.python.debug.lib.debug_events_reader import DebugDataReader

    from .events import ModuleInfo, TensorStats
    from .writer import Writer

    with DebugDataReader(str(dump)) as reader:
        reader.update()
        executions = reader.executions()
        starts = [e.wall_time for e in executions]
        traces = reader.graph_execution_traces()
        writer = Writer(
            logdir,
            framework="tensorflow",
            versions={"tensorflow": reader.tensorflow_version(), "tfdbg_dump": str(dump)},
        )
        with writer:
            ops: Counter[int] = Counter()
            bad: Counter[int] = Counter()
            shapes: dict[str, ModuleInfo] = {}
            first_bad = False
            modes: set[str] = set()
            items: list[tuple[int, str, str, str, int, list[float], Any]] = []
            for t in traces:
                # an execution event is written when the call returns, after its traces
                step = bisect.bisect_left(starts, t.wall_time)
                mode = _mode_name(t.tensor_debug_mode)
                full = (
                    reader.graph_execution_trace_to_tensor_value(t)
                    if mode == "FULL_TENSOR"
                    else None
                )
                items.append(
                    (
                        step,
                        t.op_name,
                        t.op_type,
                        mode,
                        t.output_slot,
                        list(t.debug_tensor_value or []),
                        full,
                    )
                )
            for i, e in enumerate(executions):
                if e.op_type.startswith("__inference"):
                    continue  # its ops are in the graph traces
                mode = _mode_name(e.tensor_debug_mode)
                values = reader.execution_to_tensor_values(e) if mode == "FULL_TENSOR" else []
                for k in range(e.num_outputs):
                    dv = e.debug_tensor_values[k] if e.debug_tensor_values else []
                    full = values[k] if k < len(values) else None
                    items.append((i, e.op_type, e.op_type, mode, k, list(dv or []), full))
            items.sort(key=lambda it: it[0])
            for step, op_name, op_type, mode, slot, value, full in items:
                modes.add(mode)
                ops[step] += 1
                name = f"{op_name}:{slot}"
                stats = _stats(mode, value, full)
                if stats is not None:
                    writer.write(TensorStats(step=step, name=name, role="output", stats=stats))
                if mode == "SHAPE" and op_name not in shapes and len(value) >= 4:
                    rank = int(value[2])
                    shape = tuple(int(d) for d in value[4 : 4 + rank])
                    shapes[op_name] = ModuleInfo(op_name, op_type, output_shapes=(shape,))
                counts = _nonfinite(mode, value, full)
                if counts is None:
                    continue
                bad[step] += 1
                if not first_bad:
                    first_bad = True
                    nan, pos, neg = counts
                    scope = op_name.rpartition("/")[0]
                    kind = "nan" if nan or not (pos or neg) else "inf"
                    writer.anomaly(
                        kind,
                        step=step,
                        module=scope,
                        module_type=op_type,
                        phase="backward" if "gradient" in op_name.lower() else "forward",
                        role="output",
                        op=f"{op_type} {op_name}",
                        nan=nan,
                        posinf=pos,
                        neginf=neg,
                        message=f"step {step}: first non-finite value ({kind}) in the dump: "
                        f"output {slot} of op {op_name!r} ({op_type})"
                        + (f" in name scope {scope!r}" if scope else ""),
                    )
            for step in sorted(ops):
                writer.scalars({"tfdbg/ops": ops[step], "tfdbg/nonfinite_ops": bad[step]}, step)
            if shapes:
                writer.structure("tensorflow", list(shapes.values()), step=0)
            writer.note(
                "vizdebug/tfdbg",
                f"imported {sum(ops.values())} op outputs from {dump} "
                f"(tensor_debug_mode: {', '.join(sorted(modes)) or 'none'})",
                step=0,
            )
            return writer.run_dir

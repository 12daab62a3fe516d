"""Machine-readable summaries: ``vizdebug runs --json`` and ``vizdebug show RUN --json``.

The schema is documented in docs/cli.md. Strings are the data as stored (JSON escapes control
characters itself, and ``ensure_ascii`` keeps bidi overrides as ``\\u202e``, so the output is
terminal-safe too). Numbers follow two rules:

- a statistic over a tensor's finite values (min, max, mean, std, l2) is ``null`` when the tensor
  has no finite value: absent, never 0;
- a recorded value (a scalar point) that is not finite is the string ``"NaN"``, ``"Infinity"``
  or ``"-Infinity"``: what it is.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..runs.reader import Run, find_runs, load_run
from ..runs.summary import RunSummary, dropped_by_kind, run_counts, summarize
from .console import latest_stats, run_warnings

__all__ = ["SCHEMA_VERSION", "run_json", "runs_json", "summary_json"]

#: Bumped when a field changes meaning or goes away (new fields may appear without a bump).
SCHEMA_VERSION = 1


def _stat(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _value(x: float) -> float | str:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return x


def summary_json(s: RunSummary, root: Path) -> dict[str, Any]:
    """One run of ``vizdebug runs --json``."""
    return {
        "name": str(s.path.relative_to(root)) if s.path != root else s.path.name,
        "path": str(s.path),
        "framework": s.framework,
        "steps": s.steps,
        "recorded": s.recorded,
        "events": s.events,
        "anomalies": s.anomalies,
        "dropped": s.dropped,
        "dropped_by": dict(sorted(s.dropped_by.items())),
        "size": s.size,
        "last_update": s.last_update or None,
        "live": s.live,
        "warnings": list(s.problems),
    }


def runs_json(logdir: str) -> str:
    """The JSON text of ``vizdebug runs --json``.

    Raises:
        RunNotFoundError: ``logdir`` is not a directory.
    """
    root = Path(logdir)
    doc = {
        "schema": SCHEMA_VERSION,
        "logdir": str(root),
        "runs": [summary_json(summarize(p), root) for p in find_runs(root)],
    }
    return json.dumps(doc, indent=2, allow_nan=False)


def _info(run: Run) -> dict[str, Any]:
    info = run.info[0] if run.info else {}
    versions = info.get("versions")
    return {
        "status": str(info["status"]) if "status" in info else None,
        "host": str(info["host"]) if "host" in info else None,
        "pid": info["pid"] if isinstance(info.get("pid"), int) else None,
        "ranks": len(run.info),
        "versions": {str(k): str(v) for k, v in versions.items()}
        if isinstance(versions, dict)
        else {},
    }


def run_dict(run: Run) -> dict[str, Any]:
    """The document of ``vizdebug show RUN --json`` as a dict."""
    counts = run_counts(run)
    dropped = dropped_by_kind(run.info)
    scalars = []
    for tag, points in sorted(run.scalars.items()):
        finite = [p.value for p in points if math.isfinite(p.value)]
        scalars.append(
            {
                "tag": tag,
                "points": len(points),
                "first_step": points[0].step,
                "last_step": points[-1].step,
                "last": _value(points[-1].value),
                "min": min(finite) if finite else None,
                "max": max(finite) if finite else None,
                "nonfinite": len(points) - len(finite),
            }
        )
    stats = []
    for e in latest_stats(run.stats):
        st = e.stats
        none = st.finite <= 0  # l2 is stored as 0 then: absent, not zero
        stats.append(
            {
                "module": e.name,
                "call": e.call,
                "role": e.role,
                "step": e.step,
                "dtype": st.dtype,
                "shape": list(st.shape),
                "numel": st.numel,
                "nan": st.nan,
                "posinf": st.posinf,
                "neginf": st.neginf,
                "zeros": st.zeros,
                **{k: None if none else _stat(getattr(st, k)) for k in _STAT_KEYS},
            }
        )
    return {
        "schema": SCHEMA_VERSION,
        "path": str(run.path),
        "name": run.name,
        "framework": run.framework or None,
        **_info(run),
        "steps": counts.steps,
        "recorded": counts.recorded,
        "events": counts.events,
        "dropped": sum(dropped.values()),
        "dropped_by": dict(sorted(dropped.items())),
        "warnings": list(run_warnings(run)),
        "scalars": scalars,
        "histograms": [
            {
                "tag": tag,
                "points": len(h),
                "last_step": h[-1].step,
                "last_min": _stat(h[-1].min),
                "last_max": _stat(h[-1].max),
            }
            for tag, h in sorted(run.histograms.items())
        ],
        "stats_total": len(run.stats),
        "stats": stats,
        "anomalies": [
            {
                "step": a.step,
                "kind": a.kind,
                "phase": a.phase,
                "module": a.module,
                "module_type": a.module_type,
                "role": a.role,
                "message": a.message,
                "nan": a.nan,
                "posinf": a.posinf,
                "neginf": a.neginf,
            }
            for a in run.anomalies
        ],
        "snapshots": [
            {"step": s.step, "reason": s.reason, "path": s.path, "tensors": list(s.tensors)}
            for s in run.snapshots
        ],
    }


_STAT_KEYS = ("min", "max", "mean", "std", "l2")


def run_json(path: str) -> str:
    """The JSON text of ``vizdebug show RUN --json``.

    Raises:
        RunNotFoundError: The path holds no run.
    """
    return json.dumps(run_dict(load_run(path)), indent=2, allow_nan=False)

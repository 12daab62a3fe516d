"""What the Visdom windows hold: names, ids, request bodies and HTML, as pure functions.

Everything a user controls (tags, module names, roles, messages, run names) is passed through
:func:`html.escape` before it reaches a window: Visdom renders text panes as HTML, and Plotly
renders a subset of HTML in titles and legends. Plotly turns the entities back into the
characters they stand for, so names still read correctly.
"""

from __future__ import annotations

import datetime
import hashlib
import math
import re
from collections.abc import Sequence
from html import escape
from typing import Any

from vizdebug.events import Anomaly, ModelStructure, Note, RunInfo, SnapshotRef

__all__ = [
    "STAT_LABELS",
    "anomaly_html",
    "bar_payload",
    "env_name",
    "line_append_payload",
    "line_create_payload",
    "line_trace_payload",
    "note_html",
    "run_info_html",
    "snapshot_html",
    "structure_html",
    "text_append_payload",
    "text_payload",
    "window_id",
]

#: Statistics a per-module line window can show, with their axis labels.
STAT_LABELS: dict[str, str] = {
    "l2": "L2 norm",
    "mean": "mean",
    "std": "std",
    "min": "min",
    "max": "max",
    "nonfinite": "NaN/Inf count",
    "zero_fraction": "fraction of zeros",
}

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def env_name(run: str, *, rank: int = 0, world_size: int = 1, prefix: str = "vizdebug_") -> str:
    """The Visdom environment of a run: ``vizdebug_<run>`` (``-r<rank>`` in a multi-rank job).

    Characters other than letters, digits, ``.``, ``_`` and ``-`` become ``-`` (Visdom turns
    ``/`` into ``_`` and groups environments by the text before the first ``_``, so all vizdebug
    runs group under "vizdebug").
    """
    slug = _UNSAFE.sub("-", run).strip("-") or "run"
    if world_size > 1 or rank:
        slug += f"-r{rank}"
    return (prefix + slug)[:120]


def window_id(kind: str, *key: object) -> str:
    """A stable, HTML- and URL-safe window id for a kind of window and its key."""
    digest = hashlib.sha1(repr(key).encode()).hexdigest()[:12]
    readable = _UNSAFE.sub("-", "-".join(str(k) for k in key))[:40].strip("-")
    return f"vd-{kind}-{readable}-{digest}" if readable else f"vd-{kind}-{digest}"


def _y(values: Sequence[float]) -> list[float | None]:
    # JSON has no NaN: null draws a gap in Plotly.
    return [v if math.isfinite(v) else None for v in values]


def _trace(name: str, xs: Sequence[float], ys: Sequence[float]) -> dict[str, Any]:
    return {
        "x": list(xs),
        "y": _y(ys),
        "name": name,
        "type": "scatter",
        "mode": "lines",
    }


def _line_layout(title: str, xlabel: str, ylabel: str, *, legend: bool) -> dict[str, Any]:
    return {
        "title": title,
        "showlegend": legend,
        "margin": {"l": 60, "r": 20, "t": 40, "b": 50},
        "xaxis": {"title": xlabel},
        "yaxis": {"title": ylabel},
    }


def line_create_payload(
    env: str,
    win: str,
    *,
    title: str,
    ylabel: str,
    traces: Sequence[tuple[str, Sequence[float], Sequence[float]]],
    xlabel: str = "step",
    legend: bool = True,
) -> dict[str, Any]:
    """Body of ``/events`` that creates (or replaces) a line window.

    ``title``, ``ylabel`` and the trace names must already be escaped.
    """
    return {
        "eid": env,
        "win": win,
        "data": [_trace(name, xs, ys) for name, xs, ys in traces],
        "layout": _line_layout(title, xlabel, ylabel, legend=legend),
        "opts": {"title": title},
    }


def line_trace_payload(
    env: str, win: str, name: str, xs: Sequence[float], ys: Sequence[float]
) -> dict[str, Any]:
    """Body of ``/update`` that appends to one named line (adding it if the window lacks it)."""
    return {"eid": env, "win": win, "name": name, "append": True, "data": [_trace(name, xs, ys)]}


def line_append_payload(
    env: str, win: str, order: Sequence[str], points: dict[str, tuple[list[float], list[float]]]
) -> dict[str, Any]:
    """Body of ``/update`` that appends to every line of a window in one request.

    Visdom matches unnamed update data to the window's lines by position, and skips a line
    whose new x values are empty; ``order`` is the window's line order on the server.
    """
    data = []
    for name in order:
        xs, ys = points.get(name, ([], []))
        data.append({"x": list(xs), "y": _y(ys), "type": "scatter"})
    return {"eid": env, "win": win, "append": True, "data": data}


def bar_payload(
    env: str, win: str, *, title: str, x: Sequence[float], y: Sequence[float], xlabel: str
) -> dict[str, Any]:
    """Body of ``/events`` that creates or replaces a bar window (a histogram)."""
    width = (x[1] - x[0]) if len(x) > 1 else None
    trace: dict[str, Any] = {"x": _y(x), "y": _y(y), "type": "bar", "name": "count"}
    if width is not None and math.isfinite(width) and width > 0:
        trace["width"] = width
    return {
        "eid": env,
        "win": win,
        "data": [trace],
        "layout": {
            "title": title,
            "showlegend": False,
            "bargap": 0,
            "margin": {"l": 60, "r": 20, "t": 40, "b": 50},
            "xaxis": {"title": xlabel},
            "yaxis": {"title": "count"},
        },
        "opts": {"title": title},
    }


def text_payload(env: str, win: str, *, title: str, html: str) -> dict[str, Any]:
    """Body of ``/events`` that creates or replaces a text (HTML) window."""
    return {
        "eid": env,
        "win": win,
        "data": [{"content": html, "type": "text"}],
        "opts": {"title": title},
    }


def text_append_payload(env: str, win: str, html: str) -> dict[str, Any]:
    """Body of ``/update`` that appends HTML to a text window (Visdom adds a ``<br>``)."""
    return {
        "eid": env,
        "win": win,
        "append": True,
        "data": [{"content": html, "type": "text"}],
        "opts": {},
    }


# -- HTML ----------------------------------------------------------------------------------


def _when(wall_time: float) -> str:
    if wall_time <= 0:
        return ""
    return datetime.datetime.fromtimestamp(wall_time).strftime("%H:%M:%S")


def anomaly_html(event: Anomaly) -> str:
    """One line of the anomaly log."""
    where = escape(event.module) if event.module else "unknown module"
    if event.module_type:
        where += f" ({escape(event.module_type)})"
    bits = [f"<b>step {event.step}</b> {escape(event.kind)} in <code>{where}</code>"]
    detail = [escape(x) for x in (event.phase, event.role, event.op) if x]
    if detail:
        bits.append(" / ".join(detail))
    counts = [
        f"{n} {label}"
        for n, label in ((event.nan, "NaN"), (event.posinf, "+Inf"), (event.neginf, "-Inf"))
        if n
    ]
    if counts:
        bits.append(", ".join(counts))
    if event.message:
        bits.append(escape(event.message))
    when = _when(event.wall_time)
    return (f"<small>{when}</small> " if when else "") + " · ".join(bits)


def note_html(event: Note) -> str:
    """One line of the notes log."""
    return f"<b>step {event.step}</b> [{escape(event.tag)}] {escape(event.text)}"


def snapshot_html(event: SnapshotRef) -> str:
    """One line of the notes log for a saved snapshot."""
    names = ", ".join(escape(t) for t in event.tensors[:8])
    more = f" and {len(event.tensors) - 8} more" if len(event.tensors) > 8 else ""
    return (
        f"<b>step {event.step}</b> snapshot ({escape(event.reason)}): "
        f"<code>{escape(event.path)}</code> with {names}{more}"
    )


def run_info_html(info: RunInfo, *, env: str) -> str:
    """The run-info pane."""
    rows = [
        ("run", info.run),
        ("environment", env),
        ("framework", info.framework or "none"),
        ("host", f"{info.host} (pid {info.pid})"),
        ("rank", f"{info.rank} of {info.world_size}"),
        ("started", _when(info.start_time)),
        ("command", " ".join(info.argv)),
    ]
    rows += [(f"{k} version", v) for k, v in sorted(info.versions.items())]
    if info.dropped:
        dropped = ", ".join(f"{k}: {v}" for k, v in sorted(info.dropped.items()))
        rows.append(("dropped by the writer", dropped))
    body = "".join(
        f"<tr><th align='left'>{escape(k)}</th><td>{escape(str(v))}</td></tr>" for k, v in rows
    )
    return f"<table>{body}</table>"


def structure_html(structure: ModelStructure, *, max_rows: int = 2000) -> str:
    """The model-structure pane: one row per module, indented by depth."""
    head = (
        f"<p>{escape(structure.framework)} model: {len(structure.modules)} modules, "
        f"{structure.total_params:,} parameters</p>"
    )
    rows = []
    for info in structure.modules[:max_rows]:
        depth = info.name.count(".") + 1 if info.name else 0
        name = escape(info.name.rpartition(".")[2] if info.name else "(root)")
        shapes = ", ".join("x".join(str(d) for d in s) for s in info.output_shapes)
        rows.append(
            f"<tr><td style='padding-left:{depth}em' title='{escape(info.name, quote=True)}'>"
            f"{name}</td><td>{escape(info.type)}</td><td align='right'>{info.params:,}</td>"
            f"<td>{escape(shapes)}</td></tr>"
        )
    more = len(structure.modules) - max_rows
    tail = f"<p>… and {more} more modules</p>" if more > 0 else ""
    return (
        f"{head}<table><tr><th>module</th><th>type</th><th>params</th><th>output</th></tr>"
        f"{''.join(rows)}</table>{tail}"
    )

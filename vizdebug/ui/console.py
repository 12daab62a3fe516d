"""Rich renderings of runs for ``vizdebug runs`` and ``vizdebug show``.

Every string that comes from a run (names, tags, messages, paths) goes through
:func:`~vizdebug.ui.safe.safe` and reaches rich as a :class:`~rich.text.Text`, never as markup.
Statistics over a tensor with no finite value are a dash, never 0 or ``nan``. When standard
output is not a terminal (a pipe, a file), nothing is cut: no column is shortened and no row
limit applies, so ``vizdebug show RUN | grep NAME`` finds every module.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ..events import Stats, TensorStats
from ..runs.reader import Run, find_runs, load_run
from ..runs.summary import (
    dropped_by_kind,
    dropped_text,
    is_live,
    read_warnings,
    run_counts,
    summarize,
)
from .safe import safe

__all__ = ["fmt_stat", "fmt_value", "make_console", "print_run", "print_runs", "render_run"]

DASH = "-"
#: Rows shown per table in a terminal (everything when the output is not a terminal).
_TERMINAL_ROWS = {"stats": 40, "anomalies": 20, "snapshots": 20}


def make_console() -> Console:
    """The console for command output: a terminal as it is; a pipe as wide as the text needs."""
    console = Console(highlight=False)
    if not console.is_terminal:
        # Rich lays a pipe out at $COLUMNS or 80 and would cut names to "mid_d…": give it room.
        console = Console(highlight=False, width=100_000)
    return console


def fmt_stat(x: float) -> str:
    """A statistic over finite values: non-finite means there was none, shown as a dash."""
    return f"{x:.4g}" if math.isfinite(x) else DASH


def fmt_value(x: float) -> str:
    """A recorded value, shown as what it is (``NaN``, ``+inf``, ``-inf`` included)."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+inf" if x > 0 else "-inf"
    return f"{x:.4g}"


def _t(text: object, style: str = "") -> Text:
    return Text(safe(text), style=style)


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else DASH


def _warnings_panel(warnings: Sequence[str], limit: int | None) -> Panel:
    shown = warnings if limit is None else warnings[:limit]
    body = Text("\n").join(_t(w) for w in shown)
    if len(shown) < len(warnings):
        body.append(f"\n... and {len(warnings) - len(shown)} more")
    return Panel(
        body,
        title="not read whole: counts may be short",
        title_align="left",
        border_style="yellow",
        expand=False,
    )


def print_runs(logdir: str, console: Console | None = None) -> None:
    """Print a table of the runs under ``logdir``.

    Raises:
        RunNotFoundError: ``logdir`` is not a directory.
    """
    console = console or make_console()
    root = Path(logdir)
    runs = find_runs(root)
    if not runs:
        console.print(Text(f"No runs under {safe(root)}."))
        return
    table = Table(title=Text(f"Runs in {safe(root)}"), title_justify="left")
    for col in ("run", "framework", "steps", "recorded", "events", "anomalies", "dropped"):
        left = col in ("run", "framework", "dropped")
        table.add_column(col, justify="left" if left else "right", overflow="fold")
    table.add_column("size", justify="right", no_wrap=True)
    table.add_column("last update", no_wrap=True)
    summaries = [summarize(path) for path in runs]
    for s in summaries:
        name = str(s.path.relative_to(root)) if s.path != root else s.path.name
        label = _t(name)
        if s.live:
            label.append(" ● live", style="green")
        if s.problems:
            label.append(" (not read whole)", style="yellow")
        table.add_row(
            label,
            _t(s.framework),
            str(s.steps),
            str(s.recorded),
            str(s.events),
            Text(str(s.anomalies), style="red" if s.anomalies else ""),
            Text(dropped_text(s.dropped_by), style="yellow" if s.dropped else ""),
            _size(s.size),
            _when(s.last_update),
        )
    console.print(table)
    for s in summaries:
        if s.problems:
            console.print(Text(f"warning: {safe(s.path)}:", style="yellow"))
            console.print(_warnings_panel(s.problems, None if not console.is_terminal else 5))


def _facts(run: Run) -> Panel:
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold", no_wrap=True)
    facts.add_column(overflow="fold")
    info = run.info[0] if run.info else {}
    counts = run_counts(run)
    facts.add_row("run", _t(run.path))
    facts.add_row("framework", _t(run.framework or DASH))
    if info:
        raw = info.get("versions")
        versions = dict(raw) if isinstance(raw, dict) else {}
        facts.add_row("versions", _t(", ".join(f"{k} {v}" for k, v in sorted(versions.items()))))
        facts.add_row("host / pid", _t(f"{info.get('host', '?')} / {info.get('pid', '?')}"))
        facts.add_row("ranks", str(len(run.info)))
        facts.add_row("status", _t(info.get("status", "?")))
        dropped = dropped_by_kind(run.info)
        facts.add_row("dropped", Text(dropped_text(dropped), style="yellow" if dropped else ""))
    facts.add_row("steps", str(counts.steps))
    facts.add_row("recorded", f"{counts.recorded} steps with statistics")
    facts.add_row("events", str(counts.events))
    return Panel(facts, title="run", title_align="left", expand=False)


def _scalars(run: Run) -> Table:
    t = Table(title="scalars", title_justify="left")
    for col in ("tag", "points", "first step", "last step", "last", "min", "max", "nan/inf"):
        t.add_column(col, justify="left" if col == "tag" else "right", overflow="fold")
    for tag, points in sorted(run.scalars.items()):
        values = [p.value for p in points]
        finite = [v for v in values if math.isfinite(v)]
        bad = len(values) - len(finite)
        t.add_row(
            _t(tag),
            str(len(points)),
            str(points[0].step),
            str(points[-1].step),
            Text(fmt_value(values[-1]), style="" if math.isfinite(values[-1]) else "red"),
            fmt_stat(min(finite)) if finite else DASH,
            fmt_stat(max(finite)) if finite else DASH,
            Text(str(bad), style="red") if bad else "0",
        )
    return t


def _histograms(run: Run) -> Table:
    t = Table(title="histograms", title_justify="left")
    for col in ("tag", "points", "last step", "last min", "last max"):
        t.add_column(col, justify="left" if col == "tag" else "right", overflow="fold")
    for tag, hists in sorted(run.histograms.items()):
        last = hists[-1]
        t.add_row(_t(tag), str(len(hists)), str(last.step), fmt_stat(last.min), fmt_stat(last.max))
    return t


def stat_cells(st: Stats) -> list[str]:
    """min, max, mean, std, l2 as text: all dashes when the tensor has no finite value."""
    if st.finite <= 0:  # l2 is stored as 0 then; it is absent, not zero
        return [DASH] * 5
    return [fmt_stat(v) for v in (st.min, st.max, st.mean, st.std, st.l2)]


def latest_stats(stats: Iterable[TensorStats]) -> list[TensorStats]:
    """The latest statistics of each (module, role, call), in order of first appearance."""
    latest: dict[tuple[str, str, int], TensorStats] = {}
    for e in stats:
        latest[(e.name, e.role, e.call)] = e
    return list(latest.values())


def module_label(name: str, call: int) -> str:
    """A module's name for display: ``(root)`` for the model itself, ``#n`` for a repeat call."""
    return (name or "(root)") + (f"#{call}" if call else "")


def _stats(run: Run, limit: int | None) -> Table:
    latest = latest_stats(run.stats)
    t = Table(title=f"tensor statistics (latest of {len(run.stats)})", title_justify="left")
    cols = ("module", "role", "step", "shape", "min", "max", "mean", "std", "l2", "zeros")
    for col in (*cols, "nan/inf"):
        t.add_column(col, justify="left" if col in ("module", "role") else "right", overflow="fold")
    for e in latest if limit is None else latest[:limit]:
        st = e.stats
        bad = st.nonfinite
        t.add_row(
            _t(module_label(e.name, e.call)),
            _t(e.role),
            str(e.step),
            _t(list(st.shape)),
            *stat_cells(st),
            f"{st.zero_fraction:.0%}" if st.numel else DASH,
            Text(str(bad), style="red") if bad else "0",
        )
    if limit is not None and len(latest) > limit:
        t.caption = f"... and {len(latest) - limit} more (a pipe or --json lists all)"
    return t


def _anomalies(run: Run, limit: int | None) -> Table:
    t = Table(title=f"anomalies ({len(run.anomalies)})", title_justify="left")
    for col in ("step", "phase", "module", "role", "message"):
        t.add_column(col, overflow="fold", no_wrap=col == "step")
    shown = run.anomalies if limit is None else run.anomalies[:limit]
    for a in shown:
        t.add_row(str(a.step), _t(a.phase), _t(a.module), _t(a.role), _t(a.message))
    if len(shown) < len(run.anomalies):
        t.caption = f"... and {len(run.anomalies) - len(shown)} more (a pipe or --json lists all)"
    return t


def _snapshots(run: Run, limit: int | None) -> Table:
    t = Table(title="snapshots", title_justify="left")
    for col in ("step", "reason", "file", "tensors"):
        t.add_column(col, overflow="fold")
    shown = run.snapshots if limit is None else run.snapshots[:limit]
    for snap in shown:
        t.add_row(str(snap.step), _t(snap.reason), _t(snap.path), str(len(snap.tensors)))
    if len(shown) < len(run.snapshots):
        t.caption = f"... and {len(run.snapshots) - len(shown)} more"
    return t


def run_warnings(run: Run) -> tuple[str, ...]:
    """Why the counts of a loaded run may be short (see ``runs.summary.read_warnings``)."""
    return read_warnings(
        run._reader, run.problems, run.info, run_counts(run).events, live=is_live(run.info)
    )


def render_run(run: Run, *, full: bool = False) -> Group:
    """A rich renderable summarizing a loaded run.

    Args:
        run: The run.
        full: List every row (for pipes); else long tables stop at a few dozen rows.
    """
    parts: list[RenderableType] = [_facts(run)]
    warnings = run_warnings(run)
    if warnings:
        parts.append(_warnings_panel(warnings, None if full else 10))
    if run.scalars:
        parts.append(_scalars(run))
    if run.histograms:
        parts.append(_histograms(run))
    if run.stats:
        parts.append(_stats(run, None if full else _TERMINAL_ROWS["stats"]))
    if run.anomalies:
        parts.append(_anomalies(run, None if full else _TERMINAL_ROWS["anomalies"]))
    if run.snapshots:
        parts.append(_snapshots(run, None if full else _TERMINAL_ROWS["snapshots"]))
    return Group(*parts)


def print_run(path: str, console: Console | None = None) -> None:
    """Print a summary of one run.

    Raises:
        RunNotFoundError: The path holds no run.
    """
    console = console or make_console()
    console.print(render_run(load_run(path), full=not console.is_terminal))

"""Rich renderings of runs for ``vizdebug runs`` and ``vizdebug show``."""

from __future__ import annotations

import math
import time
from collections import Counter
from pathlib import Path

from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from ..runs.reader import Run, find_runs, load_run
from ..runs.summary import summarize

__all__ = ["print_run", "print_runs", "render_run"]


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def _num(x: float) -> str:
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        return str(x)
    return f"{x:.4g}"


def print_runs(logdir: str, console: Console | None = None) -> None:
    """Print a table of the runs under ``logdir``.

    Raises:
        RunNotFoundError: ``logdir`` is not a directory.
    """
    console = console or Console()
    root = Path(logdir)
    runs = find_runs(root)
    if not runs:
        console.print(f"No runs under {escape(str(root))}.")
        return
    table = Table(title=f"Runs in {escape(str(root))}", title_justify="left")
    for col in ("run", "framework", "steps", "events", "anomalies", "dropped", "size"):
        table.add_column(col, justify="left" if col in ("run", "framework") else "right")
    table.add_column("last update")
    for path in runs:
        s = summarize(path)
        name = str(path.relative_to(root)) if path != root else path.name
        label = escape(name) + (" [green]● live[/]" if s.live else "")
        if s.problems:
            label += f" [yellow]({len(s.problems)} unreadable records)[/]"
        table.add_row(
            label,
            escape(s.framework),
            str(s.steps),
            str(s.events),
            f"[red]{s.anomalies}[/]" if s.anomalies else "0",
            f"[yellow]{s.dropped}[/]" if s.dropped else "0",
            _size(s.size),
            _when(s.last_update),
        )
    console.print(table)


def render_run(run: Run) -> Group:
    """A rich renderable summarizing a loaded run."""
    parts: list[Table | Panel] = []
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    info = run.info[0] if run.info else {}
    facts.add_row("run", escape(str(run.path)))
    facts.add_row("framework", escape(run.framework))
    if info:
        versions = ", ".join(f"{k} {v}" for k, v in sorted(dict(info.get("versions", {})).items()))
        facts.add_row("versions", escape(versions))
        facts.add_row("host / pid", escape(f"{info.get('host', '?')} / {info.get('pid', '?')}"))
        facts.add_row("ranks", str(len(run.info)))
        facts.add_row("status", escape(str(info.get("status", "?"))))
        dropped = {k: v for i in run.info for k, v in dict(i.get("dropped", {})).items()}
        for i in run.info:  # what a sink lost (the run directory's during a full disk)
            for name, sink in dict(i.get("sinks", {})).items():
                if sink.get("dropped"):
                    dropped[f"{name} sink"] = dropped.get(f"{name} sink", 0) + sink["dropped"]
        facts.add_row("dropped", escape(str(dropped or 0)))
    facts.add_row("steps", str(run.last_step + 1))
    facts.add_row("events", str(run.events))
    parts.append(Panel(facts, title="run", title_align="left"))

    if run.scalars:
        t = Table(title="scalars", title_justify="left")
        for col in ("tag", "points", "first step", "last step", "last", "min", "max"):
            t.add_column(col, justify="left" if col == "tag" else "right")
        for tag, points in sorted(run.scalars.items()):
            values = [p.value for p in points]
            t.add_row(
                escape(tag),
                str(len(points)),
                str(points[0].step),
                str(points[-1].step),
                _num(values[-1]),
                _num(min(values)),
                _num(max(values)),
            )
        parts.append(t)
    if run.histograms:
        t = Table(title="histograms", title_justify="left")
        for col in ("tag", "points", "last step", "last min", "last max"):
            t.add_column(col, justify="left" if col == "tag" else "right")
        for tag, hists in sorted(run.histograms.items()):
            t.add_row(
                escape(tag),
                str(len(hists)),
                str(hists[-1].step),
                _num(hists[-1].min),
                _num(hists[-1].max),
            )
        parts.append(t)
    if run.stats:
        latest = {}
        per_role: Counter[str] = Counter()
        for e in run.stats:
            latest[(e.name, e.role)] = e
            per_role[e.role] += 1
        t = Table(title=f"tensor statistics (latest of {len(run.stats)})", title_justify="left")
        for col in ("module", "role", "step", "shape", "mean", "std", "l2", "zeros", "nan/inf"):
            t.add_column(col, justify="left" if col in ("module", "role") else "right")
        for (name, role), e in list(latest.items())[:40]:
            st = e.stats
            bad = st.nonfinite
            t.add_row(
                escape(name or "(root)"),
                escape(role),
                str(e.step),
                escape(str(list(st.shape))),
                _num(st.mean),
                _num(st.std),
                _num(st.l2),
                f"{st.zero_fraction:.0%}" if st.numel else "-",
                f"[red]{bad}[/]" if bad else "0",
            )
        if len(latest) > 40:
            t.caption = f"... and {len(latest) - 40} more"
        parts.append(t)
    if run.anomalies:
        t = Table(title=f"anomalies ({len(run.anomalies)})", title_justify="left")
        for col in ("step", "phase", "module", "role", "message"):
            t.add_column(col)
        for a in run.anomalies[:20]:
            t.add_row(
                str(a.step), escape(a.phase), escape(a.module), escape(a.role), escape(a.message)
            )
        parts.append(t)
    if run.snapshots:
        t = Table(title="snapshots", title_justify="left")
        for col in ("step", "reason", "file", "tensors"):
            t.add_column(col)
        for snap in run.snapshots[:20]:
            t.add_row(
                str(snap.step), escape(snap.reason), escape(snap.path), str(len(snap.tensors))
            )
        parts.append(t)
    if run.problems:
        body = "\n".join(escape(str(p)) for p in run.problems[:10])
        parts.append(Panel(body, title="unreadable records", border_style="yellow"))
    return Group(*parts)


def print_run(path: str, console: Console | None = None) -> None:
    """Print a summary of one run.

    Raises:
        RunNotFoundError: The path holds no run.
    """
    (console or Console()).print(render_run(load_run(path)))

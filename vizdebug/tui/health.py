"""Health checks of one tensor's statistics, and how the TUI colours them.

Pure functions over :class:`~vizdebug.tui.data.Latest` so they are easy to test and reuse.
"""

from __future__ import annotations

import math

from rich.text import Text

from .data import Latest

__all__ = [
    "DEAD_ZERO_FRACTION",
    "EXPLODING_ABS",
    "VANISHING_L2",
    "fmt",
    "problems",
    "styled",
]

#: Fraction of exact zeros above which an activation is flagged (dead ReLUs, masked outputs).
DEAD_ZERO_FRACTION = 0.9
#: Largest finite magnitude above which a tensor is flagged as exploding.
EXPLODING_ABS = 1e4
#: L2 norm below which a gradient is flagged as vanishing.
VANISHING_L2 = 1e-8

_GRAD_ROLES = ("grad", "grad_output")


def fmt(x: float, width: int = 9) -> str:
    """A number in at most ``width`` characters (``nan``, ``inf`` spelled out)."""
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    text = f"{x:.4g}"
    return text if len(text) <= width else f"{x:.2e}"


def problems(stats: Latest, role: str) -> list[tuple[str, str]]:
    """What looks wrong with a tensor, as ``(label, severity)`` with severity "error"/"warning".

    Args:
        stats: The tensor's statistics.
        role: Its role (gradients are checked for vanishing, outputs for dead units).
    """
    out: list[tuple[str, str]] = []
    numel = stats.get("numel")
    if stats.get("nan"):
        out.append(("NaN", "error"))
    if stats.get("posinf") or stats.get("neginf"):
        out.append(("Inf", "error"))
    biggest = max(abs(stats.get("min")), abs(stats.get("max")))
    if math.isfinite(biggest) and biggest > EXPLODING_ABS:
        out.append(("exploding", "error"))
    if numel and role == "output" and stats.get("zeros") / numel > DEAD_ZERO_FRACTION:
        out.append(("zeros", "warning"))
    if numel and role in _GRAD_ROLES and stats.get("l2") < VANISHING_L2:
        out.append(("vanishing", "warning"))
    return out


_STYLE = {"error": "bold red", "warning": "yellow"}


def styled(text: str, stats: Latest | None, role: str) -> Text:
    """``text`` as a :class:`~rich.text.Text` (never parsed as markup), coloured by health."""
    if stats is None:
        return Text(text, style="dim")
    found = problems(stats, role)
    if any(sev == "error" for _, sev in found):
        return Text(text, style=_STYLE["error"])
    if found:
        return Text(text, style=_STYLE["warning"])
    return Text(text)

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
    "FINITE_ONLY",
    "NONFINITE_STYLES",
    "VANISHING_L2",
    "finite_count",
    "fmt",
    "problems",
    "severity_style",
    "stat",
    "styled",
]

#: Fraction of exact zeros above which an activation is flagged (dead ReLUs, masked outputs).
DEAD_ZERO_FRACTION = 0.9
#: Largest finite magnitude above which a tensor is flagged as exploding.
EXPLODING_ABS = 1e4
#: L2 norm below which a gradient is flagged as vanishing.
VANISHING_L2 = 1e-8

_GRAD_ROLES = ("grad", "grad_output")

#: Statistics taken over the finite values only: a tensor with none has no such statistic.
FINITE_ONLY = frozenset({"min", "max", "mean", "std", "l2", "hist_lo", "hist_hi"})


def finite_count(stats: Latest) -> int:
    """How many of the tensor's values are finite (numel - nan - posinf - neginf)."""
    bad = stats.get("nan") + stats.get("posinf") + stats.get("neginf")
    return max(0, int(stats.get("numel") - bad))


def stat(stats: Latest | None, column: str) -> float | None:
    """One statistic, or None where there is none to show (shown as a dash, never as 0).

    A tensor with no finite values has no min, max, mean, std, L2 norm or histogram range,
    whatever number the writer stored in their place.
    """
    if stats is None:
        return None
    if column in FINITE_ONLY and finite_count(stats) == 0:
        return None
    value = stats.get(column)
    return None if math.isnan(value) else value


def fmt(x: float | None, width: int = 9) -> str:
    """A number in at most ``width`` characters (``nan``, ``inf`` spelled out; None: ``-``)."""
    if x is None:
        return "-"
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    text = f"{x:.4g}"
    return text if len(text) <= width else f"{x:.2e}"


#: Text and cell styles of the non-finite kinds, each its own colour (legends use these).
NONFINITE_STYLES = {
    "nan": ("bold red", "bold white on red"),
    "posinf": ("bold dark_orange", "bold white on dark_orange3"),
    "neginf": ("bold magenta", "bold white on dark_magenta"),
}


def problems(stats: Latest, role: str) -> list[tuple[str, str]]:
    """What looks wrong with a tensor, as ``(label, severity)``.

    Severity is "nan", "posinf" or "neginf" for non-finite values (each drawn in its own
    colour, see :data:`NONFINITE_STYLES`), else "error" or "warning".

    Args:
        stats: The tensor's statistics.
        role: Its role (gradients are checked for vanishing, outputs for dead units).
    """
    out: list[tuple[str, str]] = []
    numel = stats.get("numel")
    if stats.get("nan"):
        out.append(("NaN", "nan"))
    if stats.get("posinf"):
        out.append(("+Inf", "posinf"))
    if stats.get("neginf"):
        out.append(("-Inf", "neginf"))
    lo, hi, l2 = stat(stats, "min"), stat(stats, "max"), stat(stats, "l2")
    biggest = max(abs(lo), abs(hi)) if lo is not None and hi is not None else math.nan
    if math.isfinite(biggest) and biggest > EXPLODING_ABS:
        out.append(("exploding", "error"))
    if numel and role == "output" and stats.get("zeros") / numel > DEAD_ZERO_FRACTION:
        out.append(("zeros", "warning"))
    # A gradient with NaN/Inf is a NaN/Inf gradient, never "vanishing" (the l2 of its finite
    # part, or the 0 stored for a tensor with none, may well be tiny).
    nonfinite = stats.get("nan") or stats.get("posinf") or stats.get("neginf")
    if role in _GRAD_ROLES and not nonfinite and l2 is not None and l2 < VANISHING_L2:
        out.append(("vanishing", "warning"))
    return out


_STYLE = {"error": "bold red", "warning": "yellow"} | {
    k: text for k, (text, _cell) in NONFINITE_STYLES.items()
}
#: Which colour a cell takes when a tensor has several problems.
_PRIORITY = ("nan", "posinf", "neginf", "error", "warning")


def severity_style(severity: str) -> str:
    """The text style of a :func:`problems` severity."""
    return _STYLE.get(severity, "")


def styled(text: str, stats: Latest | None, role: str) -> Text:
    """``text`` as a :class:`~rich.text.Text` (never parsed as markup), coloured by health."""
    if stats is None:
        return Text(text, style="dim")
    found = {sev for _, sev in problems(stats, role)}
    for sev in _PRIORITY:
        if sev in found:
            return Text(text, style=_STYLE[sev])
    return Text(text)

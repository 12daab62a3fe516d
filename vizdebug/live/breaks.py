"""Breakpoint specifications users write: ``break_on="nan"``, ``["step:100", "grad_norm>10"]``."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

__all__ = ["parse_breaks"]

_COND = re.compile(r"^(abs|grad_norm|zero_frac)\s*>\s*([-+0-9.eE]+)(?:@(.+))?$")


def parse_breaks(spec: str | Sequence[str] | None) -> list[tuple[str, Any, str]]:
    """Parse breakpoint specifications into ``(kind, value, module_glob)`` triples.

    Accepted forms: ``"nan"`` (NaN/Inf anywhere), ``"step:N"``, ``"module:GLOB"``,
    ``"abs>T"``, ``"grad_norm>T"``, ``"zero_frac>F"``; a condition may end with ``@GLOB`` to
    limit the modules it checks (``"grad_norm>10@encoder.*"``).

    Raises:
        ValueError: A specification is not one of these forms.
        TypeError: ``spec`` is not a string or a list of strings.
    """
    if spec is None:
        return []
    items = [spec] if isinstance(spec, str) else list(spec)
    out: list[tuple[str, Any, str]] = []
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"break_on entries must be strings, got {type(item).__name__}")
        text = item.strip()
        if text in ("nan", "inf", "nonfinite"):
            out.append(("nan", None, "*"))
        elif text.startswith("step:") and text[5:].strip().isdigit():
            out.append(("step", int(text[5:]), "*"))
        elif text.startswith("module:") and text[7:].strip():
            out.append(("module", text[7:].strip(), "*"))
        elif (m := _COND.match(text)) is not None:
            try:
                threshold = float(m.group(2))
            except ValueError:
                raise ValueError(f"bad threshold in breakpoint {item!r}") from None
            kind = {"abs": "abs_gt", "grad_norm": "grad_norm_gt", "zero_frac": "zero_frac_gt"}
            out.append((kind[m.group(1)], threshold, m.group(3) or "*"))
        else:
            raise ValueError(
                f"unknown breakpoint {item!r}; use 'nan', 'step:N', 'module:GLOB', 'abs>T', "
                "'grad_norm>T' or 'zero_frac>F' (conditions may end with @GLOB)"
            )
    return out

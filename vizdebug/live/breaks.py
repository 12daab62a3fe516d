"""Breakpoints: what users write (``break_on="nan"``, ``["once:step:100", "grad_norm>10"]``),
their validated form, and the test made at a hook point.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

__all__ = [
    "BREAK_KINDS",
    "CONDITIONS",
    "MAX_STEP",
    "BreakSpec",
    "Breakpoint",
    "check_break",
    "parse_breaks",
    "validate_break",
]

#: Breakpoint kinds: a step, a module glob, and conditions on the tensors at a hook point.
BREAK_KINDS = ("step", "module", "nan", "abs_gt", "grad_norm_gt", "zero_frac_gt")
#: The conditions: checked on the tensors, at most once per training step each.
CONDITIONS = ("nan", "abs_gt", "grad_norm_gt", "zero_frac_gt")
#: Largest step number accepted (a signed 64-bit integer, as TensorBoard's step).
MAX_STEP = (1 << 63) - 1
_MAX_GLOB = 1000

_COND = re.compile(r"^(abs|grad_norm|zero_frac)\s*>\s*([-+0-9.eE]+)(?:@(.+))?$")

Measure = Callable[[Any], tuple[float, float, float, float]]


class BreakSpec(NamedTuple):
    """One parsed specification: kind, value, module glob, and whether it fires only once."""

    kind: str
    value: Any
    module: str
    once: bool = False


@dataclass(frozen=True)
class Breakpoint:
    """A condition that pauses training.

    Attributes:
        id: Assigned by the debugger.
        kind: One of :data:`BREAK_KINDS`.
        value: The step (``step``), glob (``module``) or threshold (the conditions).
        module: For conditions, a glob limiting the modules checked.
        once: Removed after it fired once (one-shot).
    """

    id: int
    kind: str
    value: Any = None
    module: str = "*"
    once: bool = False

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict."""
        return asdict(self)


def validate_break(kind: Any, value: Any, module: Any = "*", once: Any = False) -> BreakSpec:
    """Check a breakpoint's fields (from code or from the wire) and normalize them.

    Raises:
        ValueError: Unknown kind, a value of the wrong type or out of range (a step outside
            0..2**63-1, a non-finite threshold), a module that is not a string.
    """
    if not isinstance(kind, str) or kind not in BREAK_KINDS:
        raise ValueError(f"unknown breakpoint kind {kind!r}; use one of {', '.join(BREAK_KINDS)}")
    if kind == "step":
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_STEP:
            raise ValueError(f"a step breakpoint needs a step number 0..2**63-1, got {value!r}")
    elif kind == "module":
        if not isinstance(value, str) or not value or len(value) > _MAX_GLOB:
            raise ValueError("a module breakpoint needs a name or glob (at most 1000 characters)")
    elif kind != "nan":
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ValueError(f"a {kind} breakpoint needs a number, got {value!r}")
        try:
            value = float(value)
        except OverflowError:
            value = math.inf
        if not math.isfinite(value):
            raise ValueError(f"a {kind} breakpoint needs a finite threshold, got {value!r}")
    else:
        value = None
    if not isinstance(module, str) or not module or len(module) > _MAX_GLOB:
        raise ValueError("module must be a glob string (at most 1000 characters)")
    if not isinstance(once, bool):
        raise ValueError(f"once must be true or false, got {once!r}")
    return BreakSpec(kind, value, module, once)


def _parse_one(text: str) -> BreakSpec:
    once = text.startswith("once:")
    if once:
        text = text[5:].strip()
    if text in ("nan", "inf", "nonfinite"):
        return BreakSpec("nan", None, "*", once)
    if text.startswith("step:") and text[5:].strip().isdigit():
        return validate_break("step", int(text[5:]), "*", once)
    if text.startswith("module:") and text[7:].strip():
        return validate_break("module", text[7:].strip(), "*", once)
    if (m := _COND.match(text)) is not None:
        try:
            threshold = float(m.group(2))
        except ValueError:
            raise ValueError(f"bad threshold {m.group(2)!r}") from None
        kind = {"abs": "abs_gt", "grad_norm": "grad_norm_gt", "zero_frac": "zero_frac_gt"}
        return validate_break(kind[m.group(1)], threshold, m.group(3) or "*", once)
    raise ValueError("")


def parse_breaks(spec: str | Sequence[str] | None) -> list[BreakSpec]:
    """Parse breakpoint specifications.

    Accepted forms: ``"nan"`` (NaN/Inf anywhere), ``"step:N"``, ``"module:GLOB"``,
    ``"abs>T"``, ``"grad_norm>T"``, ``"zero_frac>F"``; a condition may end with ``@GLOB`` to
    limit the modules it checks (``"grad_norm>10@encoder.*"``); a ``once:`` prefix makes a
    one-shot breakpoint, removed after it fired (``"once:nan"``). Thresholds must be finite.

    Raises:
        ValueError: A specification is not one of these forms.
        TypeError: ``spec`` is not a string or a list of strings.
    """
    if spec is None:
        return []
    items = [spec] if isinstance(spec, str) else list(spec)
    out: list[BreakSpec] = []
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"break_on entries must be strings, got {type(item).__name__}")
        try:
            out.append(_parse_one(item.strip()))
        except ValueError as exc:
            what = f"bad breakpoint {item!r}: {exc}" if str(exc) else f"unknown breakpoint {item!r}"
            raise ValueError(
                f"{what}; use 'nan', 'step:N', 'module:GLOB', 'abs>T', 'grad_norm>T' or "
                "'zero_frac>F' with a finite T (conditions may end with @GLOB; a 'once:' prefix "
                "fires once)"
            ) from None
    return out


def check_break(
    bp: Breakpoint,
    step: int,
    module: str,
    tensors: Callable[[], Mapping[str, Any]],
    measure: Measure,
) -> str:
    """Why ``bp`` fires at this hook point ("" if it does not). Step breakpoints are not here."""
    if bp.kind == "module":
        if module and fnmatch.fnmatchcase(module, bp.value):
            return f"breakpoint {bp.id}: module {module}"
        return ""
    if not fnmatch.fnmatchcase(module, bp.module):
        return ""
    for name, tensor in tensors().items():
        if bp.kind == "grad_norm_gt" and not name.startswith("grad"):
            continue
        nonfinite, maxabs, norm, zero_frac = measure(tensor)
        where = f"{module}:{name}" if module else name
        if bp.kind == "nan" and nonfinite:
            return f"breakpoint {bp.id}: {int(nonfinite)} NaN/Inf in {where}"
        if bp.kind == "abs_gt" and maxabs > bp.value:
            return f"breakpoint {bp.id}: |value| {maxabs:.4g} > {bp.value:g} in {where}"
        if bp.kind == "grad_norm_gt" and norm > bp.value:
            return f"breakpoint {bp.id}: gradient norm {norm:.4g} > {bp.value:g} in {where}"
        if bp.kind == "zero_frac_gt" and zero_frac > bp.value and not math.isnan(zero_frac):
            return f"breakpoint {bp.id}: zero fraction {zero_frac:.2f} > {bp.value:g} in {where}"
    return ""

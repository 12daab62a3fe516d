"""The live screen's keys: the help table, and the index box that lets them through.

The stepper's letter keys (p, c, s, n, g, b, o) act whatever has focus. Textual drops a
screen's binding for a key the focused widget may consume, and an ``Input`` consumes every
printable character, so :func:`guard_index_box` narrows the inspector's index box to the
characters an index has (digits, ``:``, ``,``, ``-``, space): letters then reach the stepper.
"""

from __future__ import annotations

from textual.widgets import Input

__all__ = ["INDEX_CHARS", "LIVE_KEYS", "guard_index_box"]

#: The characters of an index expression such as ``0, :, 2:10`` or ``-1``.
INDEX_CHARS = frozenset("0123456789:, -")

#: (keys, what they do) on the live screen's help.
LIVE_KEYS: tuple[tuple[str, str], ...] = (
    ("p", "pause at the next hook point (whatever has focus)"),
    ("c", "continue (whatever has focus)"),
    (
        "s",
        "step: next module of the forward pass, then the backward pass (reverse order), "
        "then the optimizer step (whatever has focus)",
    ),
    ("n", "next step: the same point in the next training step"),
    ("g", "run to training step N (asks for N)"),
    (
        "b",
        "add a breakpoint: nan, step:N, module:GLOB, abs>T, grad_norm>T, zero_frac>F "
        "(conditions may end with @GLOB; a once: prefix fires once, e.g. once:nan)",
    ),
    ("Delete", "with the breakpoint list focused: clear the highlighted breakpoint"),
    ("o", "take control (when observing and no other client controls)"),
    ("↑ / ↓, Enter", "tensors at the paused point: the highlighted one is fetched"),
    ("Tab", "move focus (tensor list, breakpoints, inspector index); the focused box is lit"),
    (
        "Escape",
        "back to the stepper (the tensor list) from anywhere; on the stepper: detach "
        "(a run you paused goes on at once)",
    ),
    ("?", "this help"),
)


def guard_index_box(box: Input) -> None:
    """Make ``box`` take (and claim) only index characters, so letter keys reach the screen."""
    box.restrict = r"[0-9:, \-]*"

    def consumes(key: str, character: str | None) -> bool:
        return character is not None and character in INDEX_CHARS

    box.check_consume_key = consumes  # type: ignore[method-assign]

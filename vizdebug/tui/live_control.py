"""What the live screen says about control: who steps the run, and what an observer may do.

Pure functions of the screen's state (attached, controlling, whether control is free), so the
wording is in one place and testable without a training process.
"""

from __future__ import annotations

__all__ = ["control_label", "control_message", "observing_note"]


def control_label(*, attached: bool, controlling: bool, free: bool) -> str:
    """The status line's word: "controlling", "observing", "observing · control free", ""."""
    if not attached:
        return ""
    if controlling:
        return "controlling"
    return "observing · control free" if free else "observing"


def control_message(*, controlling: bool, free: bool, left: bool = False) -> str:
    """The persistent message for an observer ("" for the controller).

    Args:
        controlling: This client controls the run.
        free: No client controls it.
        left: The controlling client just left (the run went on).
    """
    if controlling:
        return ""
    if free:
        return (
            "The controlling client detached: training goes on. " if left else ""
        ) + "No client controls this run: press o to take control."
    return (
        "Observing: another client controls this run. You can look at tensors while it is "
        "paused; press o to take control once it is free."
    )


def observing_note(*, free: bool) -> str:
    """The notification when an observer presses a control key."""
    if free:
        return "Observing: no client controls this run; press o to take control."
    return "Observing: another client controls this run (o takes control once it is free)."

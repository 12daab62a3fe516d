"""What the live screen says about control: who steps the run, and what an observer may do.

Pure functions of the screen's state (attached, controlling, whether control is free), so the
wording is in one place and testable without a training process.
"""

from __future__ import annotations

from pathlib import Path

from ..runs.summary import is_pid_alive

__all__ = ["control_label", "control_message", "gone_message", "observing_note", "running"]


def running(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, killed but not yet reaped, does not)."""
    if not is_pid_alive(pid):
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs (or no access): trust the signal test
    # "pid (comm) S ...": the state follows the last ")" (comm may hold anything)
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


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


def gone_message(pid: int, *, dropped: bool) -> str:
    """What the screen says when the connection ended.

    Args:
        pid: The training process.
        dropped: It still runs and did not say it was closing: it dropped this client (too
            slow to read, or silent).
    """
    if dropped:
        return (
            f"The training process (pid {pid}) dropped this connection: this client did not "
            "read for 10 s or was silent for 60 s (suspended?). Training goes on; Escape goes "
            "back, attach again with l."
        )
    return (
        f"The training process (pid {pid}) is gone: it finished, crashed or was stopped. "
        "Nothing more to control; Escape goes back."
    )

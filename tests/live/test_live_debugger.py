"""The Debugger's rules without sockets: release, resume timeout, one-shot and once-a-step."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pytest

from vizdebug.live import Debugger, Position
from vizdebug.live.breaks import parse_breaks


def run_in_thread(fn: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=fn, daemon=True)
    thread.start()
    return thread


def wait_until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def tensors(value: float) -> Callable[[], Mapping[str, Any]]:
    return lambda: {"output": np.array([1.0, value])}


def test_release_lets_a_paused_run_go_at_once() -> None:
    dbg = Debugger(resume_timeout=None)  # would wait forever
    assert dbg.acquire() and not dbg.acquire()
    dbg.command("pause")
    thread = run_in_thread(lambda: dbg.at(Position(3, "forward", "a"), tensors(0.0)))
    wait_until(lambda: dbg.paused)
    assert dbg.release() is True
    thread.join(5)
    assert not thread.is_alive() and not dbg.paused and dbg.controllers == 0
    assert dbg.acquire()  # control is free for another client


def test_unattended_pause_resumes_after_the_timeout() -> None:
    now = [0.0]
    dbg = Debugger(resume_timeout=30.0, clock=lambda: now[0])
    dbg.set_break("step", 2)
    thread = run_in_thread(lambda: dbg.at(Position(2, "forward", "a"), tensors(0.0)))
    wait_until(lambda: dbg.paused)
    time.sleep(0.3)
    assert dbg.paused  # 0 s of the (fake) clock passed
    now[0] = 31.0
    thread.join(5)
    assert not thread.is_alive() and not dbg.paused


def test_nan_fires_once_a_step_and_one_shot_is_removed() -> None:
    dbg = Debugger(resume_timeout=None)
    dbg.acquire()
    (spec,) = parse_breaks("nan")
    dbg.set_break(spec.kind, spec.value, spec.module)
    (spec,) = parse_breaks("once:abs>5")
    one_shot = dbg.set_break(spec.kind, spec.value, spec.module, once=spec.once)
    reasons: list[str] = []

    def at(step: int, module: str, value: float) -> None:
        thread = run_in_thread(lambda: dbg.at(Position(step, "forward", module), tensors(value)))
        time.sleep(0.05)
        if dbg.paused:
            reasons.append(f"{step}:{module}:{dbg.reason}")
            dbg.command("continue")
        thread.join(5)

    at(1, "a", float("nan"))  # fires
    at(1, "b", float("nan"))  # same step, downstream: not again
    at(2, "a", float("nan"))  # next step: again
    at(2, "b", 10.0)  # the one-shot abs>5 fires, and goes
    at(3, "a", 10.0)  # gone
    assert [r.split(":")[:2] for r in reasons] == [["1", "a"], ["2", "a"], ["2", "b"]]
    assert "one-shot" in reasons[2]
    assert [b.id for b in dbg.breakpoints] == [one_shot.id - 1]


@pytest.mark.parametrize(
    "args",
    [
        ("abs_gt", float("inf")),
        ("abs_gt", float("nan")),
        ("grad_norm_gt", 10**400),
        ("step", 10**400),
        ("step", -1),
        ("step", 1.5),
        ("module", ""),
        ("nan", None, 3),
        ("launch", None),
        (["nan"], None),
    ],
)
def test_bad_breakpoints_are_value_errors(args: tuple[Any, ...]) -> None:
    with pytest.raises(ValueError):
        Debugger().set_break(*args)


@pytest.mark.parametrize("spec", ["abs>1e999", "grad_norm>nan", "step:-1", "once:", "abs>"])
def test_bad_specifications(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_breaks(spec)


def test_status_reports_the_step_while_running() -> None:
    step = [41]
    dbg = Debugger(step=lambda: step[0])
    assert dbg.status()["step"] == 41 and dbg.status()["position"] is None
    dbg.at(Position(7, "forward", "a"), tensors(0.0))
    assert dbg.status()["step"] == 41  # running: the step source, not the stale position

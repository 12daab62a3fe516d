"""The live debugger end to end: a real training subprocess, attached over the live channel."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from vizdebug.live import LiveClient, read_live_file

TRAIN = Path(__file__).with_name("live_train.py")
REPO = Path(__file__).resolve().parents[2]


def start(run_dir: Path, steps: int, nan_step: int, timeout: float = 60.0) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, str(TRAIN), str(run_dir), str(steps), str(nan_step), str(timeout)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def attach(run_dir: Path) -> LiveClient:
    deadline = time.time() + 30
    while (live := read_live_file(run_dir)) is None:
        assert time.time() < deadline, "live.json never appeared"
        time.sleep(0.05)
    return LiveClient.attach(live)


def finish(proc: subprocess.Popen[str], steps: int) -> None:
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == f"done {steps}"
    assert proc.wait(60) == 0


def test_pause_step_fetch_and_nan_breakpoint(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = start(run_dir, steps=400, nan_step=300)
    try:
        with attach(run_dir) as client:
            # training runs meanwhile: the status says where (the writer's step)
            first = client.status()["step"] + 5
            assert first < 250
            client.run_to(first)
            where = client.wait_event("paused")["position"]
            assert (where["step"], where["phase"], where["module"]) == (first, "forward", "conv")
            status = client.status()
            assert status["paused"] and {"input0", "output", "param:weight"} <= set(
                status["tensors"]
            )
            # what the tensor holds is what the model computes from its input and weights
            inp, out = client.fetch("input0"), client.fetch("output")
            weight, bias = client.fetch("param:weight"), client.fetch("param:bias")
            expect = torch.nn.functional.conv2d(
                torch.from_numpy(inp), torch.from_numpy(weight), torch.from_numpy(bias), padding=1
            )
            np.testing.assert_allclose(out, expect.numpy(), rtol=1e-5, atol=1e-6)
            np.testing.assert_array_equal(client.fetch("output", [0, 3]), out[0, 3])
            seen = []
            for _ in range(3):
                client.step()
                seen.append(client.wait_event("paused")["position"]["module"])
            assert seen == ["act", "flat", "fc1"]
            assert client.status()["position"]["chain"] == [""]
            # on through the rest of the forward pass into the backward pass, in reverse order
            phases = []
            while True:
                client.step()
                pos = client.wait_event("paused")["position"]
                phases.append((pos["phase"], pos["module"]))
                if pos["phase"] == "optimizer":
                    break
            backward = [m for p, m in phases if p == "backward"]
            # the root returns fc2's output tensor itself: both hooks see its gradient first
            assert set(backward[:2]) == {"", "fc2"}, phases
            assert backward.index("fc1") < backward.index("conv"), phases
            grads = client.status()["tensors"]
            assert "grad:fc1.weight" in grads
            client.next_step()
            assert client.wait_event("paused")["position"]["step"] == first + 1
            client.set_break("nan")
            client.cont()
            hit = client.wait_event("paused", timeout=60)
            assert hit["position"]["step"] == 300 and hit["position"]["module"] == "fc2"
            assert "NaN" in hit["reason"]
            assert np.isnan(client.fetch("input0")).any()
            client.clear_break()
            client.cont()
        finish(proc, 400)
    finally:
        proc.kill()
    assert not (run_dir / "live.json").exists()


def test_break_on_from_code_and_resume_after_vanished_client(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = start(run_dir, steps=80, nan_step=10_000, timeout=1.0)
    try:
        client = attach(run_dir)
        client.pause()
        client.wait_event("paused")
        client.close()  # gone while paused: training resumes after the 1 s timeout
        finish(proc, 80)
    finally:
        proc.kill()


def test_no_client_never_blocks_and_bad_break_on(tmp_path: Path) -> None:
    import vizdebug

    model = torch.nn.Sequential(torch.nn.Linear(4, 2))
    with pytest.raises(ValueError, match="unknown breakpoint"):
        vizdebug.watch(model, logdir=tmp_path / "bad", break_on="sometimes")
    with pytest.raises(ValueError, match="needs the live debugger"):
        vizdebug.watch(model, logdir=tmp_path / "bad2", break_on="nan", live=False)
    with vizdebug.watch(model, logdir=tmp_path / "ok") as w:
        assert (tmp_path / "ok" / "live.json").exists()
        for _ in range(5):
            model(torch.randn(3, 4)).sum().backward()
        assert w.closed is False
    assert not (tmp_path / "ok" / "live.json").exists()


@pytest.mark.parametrize(
    "sentinel",
    ["warn", "none"],
)
def test_pause_mid_forward_then_step_meets_every_backward(tmp_path: Path, sentinel: str) -> None:
    """A pause asked for during a forward pass: stepping then walks each child's backward."""
    run_dir, go = tmp_path / "run", tmp_path / "go"
    script = REPO / "tests" / "live" / "torch_mid_step.py"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(run_dir), str(go), sentinel],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        with attach(run_dir) as client:
            assert proc.stdout.readline().strip() == "mid"  # step 5, after "a" returned
            client.pause()
            go.touch()
            where = client.wait_event("paused")["position"]
            assert (where["step"], where["phase"], where["module"]) == (6, "forward", "a")
            seen = [(where["phase"], where["module"])]
            while seen[-1][0] != "optimizer":
                client.step()
                pos = client.wait_event("paused")["position"]
                assert pos["step"] == 6
                seen.append((pos["phase"], pos["module"]))
            forward = [m for p, m in seen if p == "forward"]
            backward = [m for p, m in seen if p == "backward"]
            assert forward == ["a", "b", "c", ""]
            # the root returns c's tensor itself: both see that gradient first, then b, a
            assert set(backward[:2]) == {"", "c"} and backward[2:] == ["b", "a"], seen
            client.cont()
        assert proc.stdout.readline().strip() == "done"
        assert proc.wait(60) == 0
    finally:
        proc.kill()


def test_nan_breakpoint_fires_once_a_step_and_one_shot_breakpoints(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = start(run_dir, steps=60, nan_step=30)
    try:
        with attach(run_dir) as client:
            client.set_break("nan")
            hit = client.wait_event("paused", timeout=60)
            assert (hit["position"]["step"], hit["position"]["module"]) == (30, "fc2")
            client.cont()
            # every later hook point of step 30 sees the NaN too: the next stop is step 31
            again = client.wait_event("paused", timeout=60)
            assert again["position"]["step"] == 31, again
            client.clear_break()
            client.set_break("step", 40, once=True)
            client.set_break("nan", once=True)  # the weights are NaN now: fires at once
            client.cont()
            first = client.wait_event("paused", timeout=60)
            assert first["position"]["step"] == 31 and "one-shot" in first["reason"]
            kinds = [b["kind"] for b in client.status()["breakpoints"]]
            assert kinds == ["step"]  # the one-shot nan is gone
            client.cont()
            second = client.wait_event("paused", timeout=60)
            assert second["position"]["step"] == 40 and "one-shot" in second["reason"]
            assert client.status()["breakpoints"] == []
            client.cont()
            finish(proc, 60)  # nothing left to stop it
    finally:
        proc.kill()


def test_non_finite_break_on_is_refused(tmp_path: Path) -> None:
    import vizdebug

    model = torch.nn.Sequential(torch.nn.Linear(4, 2))
    for spec in ("abs>1e999", "grad_norm>nan", "zero_frac>inf"):
        with pytest.raises(ValueError, match="finite"):
            vizdebug.watch(model, logdir=tmp_path / "bad", break_on=spec)

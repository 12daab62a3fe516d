"""Deterministic runs for the TUI tests (fixed wall times and values)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import vizdebug
from vizdebug.events import ModuleInfo
from vizdebug.stats import reference_stats

WALL = 1_700_000_000.0
MARKUP_NAME = "[red]x[/]"
HTML_NAME = "<img src=x onerror=alert(1)>"
MODULES = ("conv", "block.fc1", "block.act", "block.fc2", MARKUP_NAME, HTML_NAME)
NAN_STEP = 6
STEPS = 10


def make_demo_run(run_dir: Path) -> Path:
    """A closed run: 6 modules x 10 steps, a NaN at step 6 with an anomaly and a snapshot.

    At the NaN step the gradients of block.fc1, block.fc2 and block.fc1.weight hold no finite
    value (the weight's gradient: NaN, +Inf and -Inf).
    """
    rng = np.random.default_rng(7)
    with vizdebug.Writer(run_dir, framework="torch", clock=lambda: WALL) as w:
        w.structure(
            "torch",
            [
                ModuleInfo("", "Net"),
                ModuleInfo("conv", "Conv2d", params=80),
                ModuleInfo("block", "Sequential"),
                ModuleInfo("block.fc1", "Linear", params=330),
                ModuleInfo("block.act", "ReLU"),
                ModuleInfo("block.fc2", "Linear", params=110),
                ModuleInfo(MARKUP_NAME, "Identity"),
                ModuleInfo(HTML_NAME, "Identity"),
            ],
            step=0,
        )
        for step in range(STEPS):
            for i, name in enumerate(MODULES):
                out = rng.standard_normal((4, 8)) * (1 + 0.1 * step) + i * 0.1
                if name == "block.act":
                    out = np.maximum(out, 0) * (rng.random((4, 8)) > 0.95)
                if name == "block.fc2" and step == NAN_STEP:
                    out[0, :3] = np.nan
                w.stats(name, "output", reference_stats(out.astype(np.float32)), step=step)
                grad = rng.standard_normal((4, 8)) * 1e-3
                if name in ("block.fc1", "block.fc2") and step == NAN_STEP:
                    grad = np.full((4, 8), np.nan)  # backward from the NaN: no finite values
                w.stats(name, "grad_output", reference_stats(grad.astype(np.float32)), step=step)
            weight = rng.standard_normal((10, 32)) * 0.1
            w.stats("block.fc1.weight", "weight", reference_stats(weight), step=step)
            wgrad = weight * 1e-2
            if step == NAN_STEP:
                wgrad[:] = np.nan
                wgrad[0, 0], wgrad[0, 1] = np.inf, -np.inf  # no finite value, both infinities
            w.stats("block.fc1.weight", "grad", reference_stats(wgrad), step=step)
            w.scalar("loss", 2.0 / (step + 1), step=step)
            if step == NAN_STEP:
                w.anomaly(
                    "nan",
                    step=step,
                    module="block.fc2",
                    module_type="Linear",
                    phase="forward",
                    role="output",
                    message="NaN in the output of block.fc2",
                    nan=3,
                )
                x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
                y = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
                y[0, 0], y[1, 1] = np.nan, np.inf
                w.snapshot(
                    {"block.fc2/input": x, "block.fc2/output": y}, step=step, reason="anomaly"
                )
            w.flush()
    return run_dir


GAP_NAN_STEP = 4


def make_gap_run(run_dir: Path) -> Path:
    """Statistics at steps 0-4 (NaN at 4); snapshots at 4 and at 5, which has no statistics.

    What the flight recorder leaves when training stops recording after the NaN: the
    snapshot of the step after it is at a step with no statistics.
    """
    rng = np.random.default_rng(3)
    with vizdebug.Writer(run_dir, framework="torch", clock=lambda: WALL) as w:
        for step in range(GAP_NAN_STEP + 1):
            out = rng.standard_normal(16)
            if step == GAP_NAN_STEP:
                out[:] = np.nan
            w.stats("mid", "output", reference_stats(out.astype(np.float32)), step=step)
        w.anomaly("nan", step=GAP_NAN_STEP, module="mid", role="output", message="NaN", nan=16)
        for step in (GAP_NAN_STEP, GAP_NAN_STEP + 1):
            t = np.full((2, 2), np.nan, dtype=np.float32)
            w.snapshot({"mid/output0": t}, step=step, reason="anomaly")
    return run_dir

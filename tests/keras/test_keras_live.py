"""The live debugger with Keras: a real training subprocess, batch boundaries and layers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

from vizdebug.live import LiveClient, read_live_file

SCRIPT = Path(__file__).with_name("live_train_keras.py")
REPO = Path(__file__).resolve().parents[2]


def test_pause_at_batches_step_through_layers_and_nan_breakpoint(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), str(run_dir), "30"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        deadline = time.time() + 120
        while (live := read_live_file(run_dir)) is None:
            assert time.time() < deadline and proc.poll() is None, "live.json never appeared"
            time.sleep(0.1)
        with LiveClient.attach(live) as client:
            status = client.status()
            if not status["paused"]:
                client.wait_event("paused", timeout=120)
                status = client.status()
            where = status["position"]
            assert (where["step"], where["phase"]) == (4, "batch"), where
            assert {"fc1/input0", "fc1/output0", "fc2/output0"} <= set(status["tensors"])
            # the weights after step 4's update are the ones step 5's forward pass uses
            kernel = client.fetch("param:sequential/fc1/kernel")
            bias = client.fetch("param:sequential/fc1/bias")
            client.next_step()
            where = client.wait_event("paused")["position"]
            assert (where["step"], where["phase"]) == (5, "batch"), where
            client.step()
            at = client.wait_event("paused")["position"]
            assert (at["step"], at["phase"], at["module"]) == (5, "forward", "fc1")
            names = set(client.status()["tensors"])
            assert {"input0", "output0", "param:kernel", "param:bias"} <= names, names
            inp, out = client.fetch("input0"), client.fetch("output0")
            digits = load_digits()
            np.testing.assert_allclose(inp, digits.data[80:96] / 16.0, rtol=1e-6)
            np.testing.assert_allclose(out, inp @ kernel + bias, rtol=1e-4, atol=1e-5)
            layers = []
            for _ in range(3):
                client.step()
                layers.append(client.wait_event("paused")["position"]["module"])
            assert layers == ["act", "fc2", ""]
            client.step()
            nxt = client.wait_event("paused")["position"]
            assert (nxt["step"], nxt["phase"]) == (6, "batch")
            client.clear_break()
            client.set_break("nan")
            client.cont()
            hit = client.wait_event("paused", timeout=120)
            assert hit["position"]["step"] == 30 and "NaN" in hit["reason"]
            assert np.isnan(client.fetch("fc1/input0")).any()
            client.clear_break()
            client.cont()
        assert proc.stdout.readline().strip() == "done"
        assert proc.wait(120) == 0
    finally:
        proc.kill()
    assert not (run_dir / "live.json").exists()

"""Helpers of the TensorBoard tests: a small vizdebug run and a real TensorBoard process."""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vizdebug.stats import reference_stats

XSS = "<img src=x onerror=alert(1)>"
MODULES = ("conv1", "fc1", XSS)
STEPS = 30
NAN_STEP = 17


@dataclass(frozen=True)
class Fixture:
    """What :func:`write_run` wrote, to compare the dashboards with."""

    logdir: Path
    run: str
    grad_l2: dict[tuple[str, int], float]  # (parameter, step) -> L2 of its gradient
    grad_hist: dict[tuple[str, int], tuple[int, ...]]


def write_run(logdir: Path, *, run: str = "demo", ranks: int = 2) -> Fixture:
    """Write ``STEPS`` steps of three modules on ``ranks`` ranks, with two anomalies on rank 0."""
    from vizdebug import Writer

    rng = np.random.default_rng(0)
    grad_l2: dict[tuple[str, int], float] = {}
    grad_hist: dict[tuple[str, int], tuple[int, ...]] = {}
    for rank in range(ranks):
        with Writer(logdir / run, rank=rank, world_size=ranks, framework="torch") as w:
            for step in range(STEPS):
                w.scalar("loss", 2.0 / (step + 1), step=step)
                for i, module in enumerate(MODULES):
                    act = rng.normal(size=256) * (i + 1)
                    if module == "fc1" and step == NAN_STEP:
                        act[:5] = math.nan
                    act[act < -1.5] = 0.0
                    w.stats(module, "output", reference_stats(act), step=step)
                    param = f"{module}.weight"
                    grad = rng.normal(size=64) * (step + 1) * 0.01 * (i + 1)
                    gs = reference_stats(grad)
                    w.stats(param, "grad", gs, step=step)
                    weight = rng.normal(size=64)
                    w.stats(param, "weight", reference_stats(weight), step=step)
                    w.stats(param, "update", reference_stats(weight * 0.1), step=step)
                    if rank == 0:
                        grad_l2[(param, step)] = gs.l2
                        grad_hist[(param, step)] = gs.hist_counts
                if rank == 0 and step == NAN_STEP:
                    w.anomaly(
                        "nan",
                        module="fc1",
                        module_type="Linear",
                        phase="forward",
                        role="output",
                        message="fc1 produced 5 NaN in its output",
                        nan=5,
                        step=step,
                    )
                if rank == 0 and step == NAN_STEP + 3:
                    w.anomaly(
                        "inf",
                        module=XSS,
                        module_type="Evil",
                        phase="backward",
                        role="grad_output",
                        message=f"{XSS} overflowed",
                        posinf=1,
                        step=step,
                    )
    return Fixture(logdir=logdir, run=run, grad_l2=grad_l2, grad_hist=grad_hist)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Server:
    url: str
    fixture: Fixture
    log: Path


def _get(url: str, timeout: float = 10.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return bytes(response.read())


def wait_for(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 90.0) -> None:
    """Wait until ``url`` answers 200 (or fail with TensorBoard's log)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"tensorboard exited with {proc.returncode}:\n{log.read_text()}")
        try:
            _get(url, timeout=2.0)
            return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"tensorboard did not answer {url} in {timeout}s:\n{log.read_text()}")


def start_tensorboard(logdir: Path, log: Path, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``python -m tensorboard.main`` on a free loopback port; returns it and its URL."""
    port = free_port()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    cmd = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir)]
    cmd += ["--port", str(port), "--host", "127.0.0.1", "--reload_interval", "1", *extra]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    return proc, f"http://127.0.0.1:{port}"

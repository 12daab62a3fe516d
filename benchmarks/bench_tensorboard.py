"""TensorBoard with a big vizdebug run: file size, time to serve, the plugin's heatmap latency.

Writes a run of M modules x S steps (roles output and grad per module, 32 histogram bins, plus
one loss scalar a step) with vizdebug.Writer, once with the native TensorBoard copies (the
default) and once without, then starts a real TensorBoard on it and measures:

- event-file bytes per step, with and without the native copies;
- seconds from starting ``tensorboard`` until it serves the last step (Scalars: ``loss``;
  vizdebug plugin: ``/runs`` reports the last step);
- the vizdebug plugin's ``/heatmap`` latency, cold (first request, reads the event files) and
  warm (median of 5).

Usage: python benchmarks/bench_tensorboard.py [--modules 200] [--steps 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np


def _write(path: Path, modules: int, steps: int, native: bool) -> float:
    os.environ["VIZDEBUG_TB_NATIVE"] = "1" if native else "0"
    from vizdebug import Writer
    from vizdebug.stats import reference_stats

    rng = np.random.default_rng(0)
    names = [f"layer{i:03d}.linear" for i in range(modules)]
    pool = [reference_stats(rng.normal(size=512) * (1 + k / 8)) for k in range(16)]
    t0 = time.perf_counter()
    with Writer(path, max_queue_bytes=1 << 30, when_full="block") as w:
        for step in range(steps):
            w.scalar("loss", 1.0 / (step + 1), step=step)
            for i, name in enumerate(names):
                w.stats(name, "output", pool[(i + step) % 16], step=step)
                w.stats(f"{name}.weight", "grad", pool[(i * 7 + step) % 16], step=step)
            if step % 50 == 49:
                # A training step takes far longer than these calls; without a pause the
                # run-directory sink's bounded queue (200,000 events) would drop events.
                w.flush()
    elapsed = time.perf_counter() - t0
    info = json.loads((path / "run.json").read_text())
    dropped = info["sinks"]["rundir"]["dropped"]
    if dropped or info["dropped"]:
        raise RuntimeError(f"the writer dropped events: {dropped} {info['dropped']}")
    return elapsed


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if "tfevents" in p.name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=120) as response:
        return json.loads(response.read())


def _until(check: Any, timeout: float = 900.0) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        try:
            if check():
                return time.perf_counter() - t0
        except (OSError, ValueError, KeyError, IndexError):
            pass
        time.sleep(0.25)
    raise TimeoutError("TensorBoard did not serve the last step in time")


def _serve(logdir: Path, run: str, last: int) -> dict[str, float]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir)]
    cmd += ["--port", str(port), "--host", "127.0.0.1"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        scalars = f"{url}/data/plugin/scalars/scalars?run={run}&tag=loss"
        _until(lambda: _get(scalars)[-1][1] == last)
        t_scalars = time.perf_counter() - t0
        runs = f"{url}/data/plugin/vizdebug/runs"
        _until(lambda: _get(runs)["runs"][0]["last_step"] == last)
        t_plugin = time.perf_counter() - t0
        heat = f"{url}/data/plugin/vizdebug/heatmap?run={run}&role=grad&stat=l2"
        times = []
        for _ in range(6):
            t = time.perf_counter()
            body = _get(heat)
            times.append(time.perf_counter() - t)
        assert body["last_step"] == last
        return {
            "scalars": t_scalars,
            "plugin": t_plugin,
            "heat_cold": times[0],
            "heat_warm": statistics.median(times[1:]),
        }
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def run(modules: int, steps: int) -> str:
    """Run the benchmark and return its markdown section."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t_plain = _write(root / "plain" / "run", modules, steps, native=False)
        plain = _size(root / "plain" / "run")
        t_native = _write(root / "native" / "run", modules, steps, native=True)
        native = _size(root / "native" / "run")
        served = _serve(root / "native", "run", steps - 1)
    rows = [
        ("event-file bytes per step, packed stats only", f"{plain / steps:,.0f}"),
        ("event-file bytes per step, with native copies (default)", f"{native / steps:,.0f}"),
        (
            "writer: seconds to write and close, without / with copies",
            f"{t_plain:.1f} / {t_native:.1f}",
        ),
        ("TensorBoard: seconds until Scalars serves the last step", f"{served['scalars']:.1f}"),
        (
            "TensorBoard: seconds until the vizdebug plugin has the last step",
            f"{served['plugin']:.1f}",
        ),
        (
            "plugin /heatmap latency, first request after /runs (ms)",
            f"{served['heat_cold'] * 1e3:.0f}",
        ),
        ("plugin /heatmap latency, warm median of 5 (ms)", f"{served['heat_warm'] * 1e3:.0f}"),
    ]
    lines = [
        "## TensorBoard",
        "",
        f"A run of {modules} modules x {steps:,} steps (output and gradient statistics of every",
        "module every step, 32 bins; native copies with the default caps: 256 grad-norm scalars,",
        "16 histogram names per role), served by `tensorboard --logdir` (default flags).",
        "",
        "| measure | value |",
        "|---|---|",
        *[f"| {a} | {b} |" for a, b in rows],
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", type=int, default=200)
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args()
    print(run(args.modules, args.steps))


if __name__ == "__main__":
    main()

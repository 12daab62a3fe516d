"""Overhead of vizdebug.watch against a bare training step and the tools users use instead.

Run: ``.venv/bin/python benchmarks/bench_torch.py [--steps N]``. Every (model, tool) pair runs
in its own subprocess, one CPU thread (``torch.set_num_threads(1)``), so that its peak memory
can be read from ``resource.getrusage(RUSAGE_SELF).ru_maxrss``: tracemalloc does not see
torch's allocator, and torch has no allocator statistics on CPU. The peak includes the ~0.3 GB
that importing torch costs, so compare the columns, not the absolute value.

Models: the digits CNN of examples/torch_digits.py (batch 64, 8x8 images) and a small
``nn.TransformerEncoder`` (2 layers, d_model 64, 4 heads, sequence 32, batch 16). Prints a
markdown table of the median (and mean) step time and the ratio to the bare step.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

TOOLS = {
    "bare": "no instrumentation",
    "vizdebug default": "watch(model, opt): every=50, first=5, sentinel every step",
    "vizdebug every step": "watch(model, opt, every=1): everything, every step",
    "vizdebug sentinel only": "watch(model, opt, what=set()): NaN/Inf sentinel alone",
    "torch SummaryWriter": "add_histogram of every parameter and gradient, every step",
    "tensorboardX": "add_histogram of every parameter and gradient, every step",
    "detect_anomaly": "torch.autograd.detect_anomaly() around each step",
}


def _model(kind: str) -> tuple[Any, Any, Any]:
    import torch
    from torch import nn

    torch.manual_seed(0)
    if kind == "cnn":
        model = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64 * 16, 128), nn.ReLU(),
            nn.Linear(128, 10),
        )  # fmt: skip
        x, y = torch.randn(64, 1, 8, 8), torch.randint(0, 10, (64,))
    else:
        layer = nn.TransformerEncoderLayer(64, 4, dim_feedforward=128, batch_first=True)
        model = nn.Sequential(nn.TransformerEncoder(layer, 2), nn.Flatten(), nn.Linear(64 * 32, 10))
        x, y = torch.randn(16, 32, 64), torch.randint(0, 10, (16,))
    return model, x, y


def child(kind: str, tool: str, steps: int, logdir: str) -> dict[str, float]:
    """Time ``steps`` training steps of one model with one tool (in this process)."""
    import torch
    from torch import nn

    torch.set_num_threads(1)
    model, x, y = _model(kind)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    handle: Any = None
    hist: Any = None
    if tool.startswith("vizdebug"):
        import vizdebug

        opts: dict[str, Any] = {
            "vizdebug default": {},
            "vizdebug every step": {"every": 1},
            "vizdebug sentinel only": {"what": set()},
        }[tool]
        handle = vizdebug.watch(model, opt, logdir=logdir, **opts)
    elif tool == "torch SummaryWriter":
        from torch.utils.tensorboard import SummaryWriter

        hist = SummaryWriter(logdir)
    elif tool == "tensorboardX":
        from tensorboardX import SummaryWriter as XWriter

        hist = XWriter(logdir)
    anomaly = torch.autograd.detect_anomaly if tool == "detect_anomaly" else contextlib.nullcontext
    times = []
    warmup = 10
    for i in range(steps + warmup):
        t0 = time.perf_counter()
        with anomaly():
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
        if handle is not None:
            handle.step(loss=loss)
        if hist is not None:
            for name, p in model.named_parameters():
                hist.add_histogram(name, p, i)
                hist.add_histogram(name + "/grad", p.grad, i)
        times.append(time.perf_counter() - t0)
    if handle is not None:
        handle.close()
    if hist is not None:
        hist.close()
    t = times[warmup:]
    return {
        "median_ms": statistics.median(t) * 1e3,
        "mean_ms": statistics.fmean(t) * 1e3,
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "TOOL"))
    args = parser.parse_args()
    if args.child:
        with tempfile.TemporaryDirectory() as logdir:
            print(json.dumps(child(args.child[0], args.child[1], args.steps, logdir)))
        return
    import torch

    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, torch {torch.__version__}, one thread, "
          f"{args.steps} timed steps, {time.strftime('%Y-%m-%d')}\n")  # fmt: skip
    print(
        "Each tool runs in its own subprocess, one after another: on a shared 2-core machine\n"
        "a ratio below 1.00x is noise, and differences of a few tenths are within it.\n"
    )
    for kind, title in (("cnn", "digits CNN, batch 64"), ("tf", "TransformerEncoder")):
        print(f"### {title}\n")
        print("| tool | median ms | ratio | mean ms | ratio | peak RSS MB |")
        print("|---|---:|---:|---:|---:|---:|")
        base: dict[str, float] = {}
        for tool in TOOLS:
            cmd = [sys.executable, __file__, "--steps", str(args.steps), "--child", kind, tool]
            out = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if out.returncode:
                print(f"| {tool} | failed: {out.stderr.strip().splitlines()[-1]} |||||")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            base = base or r
            print(f"| {tool} | {r['median_ms']:.2f} | {r['median_ms'] / base['median_ms']:.2f}x "
                  f"| {r['mean_ms']:.2f} | {r['mean_ms'] / base['mean_ms']:.2f}x "
                  f"| {r['maxrss_mb']:.0f} |")  # fmt: skip
        print()
    for tool, what in TOOLS.items():
        print(f"- {tool}: {what}")


if __name__ == "__main__":
    main()

"""How long ``vizdebug.watch`` takes to set up on a large model, and ``close`` to undo it.

Run: ``.venv/bin/python benchmarks/bench_torch_setup.py``. The model: 100 blocks of
``Linear(1000, 1000)``, ``LayerNorm`` and ``GELU`` (301 modules, 100.3M parameters) with AdamW.
The first ``watch`` of a process includes importing vizdebug's torch adapter; the median of the
next five is the set-up itself (model index, hooks, flat parameter groups, writer, live server).
"""

from __future__ import annotations

import platform
import statistics
import tempfile
import time

import torch
from torch import nn


def main() -> None:
    torch.set_num_threads(1)
    layers: list[nn.Module] = []
    for _ in range(100):
        layers += [nn.Linear(1000, 1000), nn.LayerNorm(1000), nn.GELU()]
    model = nn.Sequential(*layers)
    opt = torch.optim.AdamW(model.parameters())
    modules = sum(1 for _ in model.modules())
    params = sum(p.numel() for p in model.parameters())
    t0 = time.perf_counter()
    import vizdebug

    first = vizdebug.watch(model, opt, logdir=tempfile.mkdtemp())
    cold = time.perf_counter() - t0
    first.close()
    setups, closes = [], []
    for _ in range(5):
        t = time.perf_counter()
        w = vizdebug.watch(model, opt, logdir=tempfile.mkdtemp())
        setups.append(time.perf_counter() - t)
        t = time.perf_counter()
        w.close()
        closes.append(time.perf_counter() - t)
    print(
        f"{platform.machine()}, Python {platform.python_version()}, torch {torch.__version__}, "
        f"{time.strftime('%Y-%m-%d')}: {modules} modules, {params / 1e6:.1f}M parameters"
    )
    print(
        f"first watch() with imports {cold:.3f} s; watch() {statistics.median(setups):.3f} s; "
        f"close() {statistics.median(closes):.3f} s (medians of 5)"
    )


if __name__ == "__main__":
    main()

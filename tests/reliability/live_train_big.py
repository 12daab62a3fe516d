"""A real training process for the live-channel reliability tests: a 2048x2048 layer (16 MiB).

Usage: python live_train_big.py RUN_DIR STEPS
Watched with vizdebug.watch (live debugger on, the defaults otherwise). Prints "ready" once
watching, "step N" every 10 steps (flushed: the test counts progress), "done N" at the end.
"""

from __future__ import annotations

import sys

import torch
from torch import nn

import vizdebug

run_dir, steps = sys.argv[1], int(sys.argv[2])
torch.manual_seed(0)
torch.set_num_threads(1)
model = nn.Sequential(nn.Linear(64, 2048), nn.ReLU(), nn.Linear(2048, 2048), nn.Linear(2048, 10))
opt = torch.optim.SGD(model.parameters(), lr=1e-3)
x, y = torch.randn(8, 64), torch.randint(0, 10, (8,))
watch = vizdebug.watch(model, opt, logdir=run_dir, every=50)
print("ready", flush=True)
for step in range(steps):
    opt.zero_grad()
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    watch.step(loss=loss)
    if step % 10 == 0:
        print(f"step {step}", flush=True)
watch.close()
print(f"done {steps}", flush=True)

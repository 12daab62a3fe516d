"""A torch training whose step 5 stops in the middle of its forward pass until told to go on.

Usage: python torch_mid_step.py RUN_DIR GO_FILE [none]
With "none", watches with ``on_anomaly=None`` (no NaN sentinel). At step 5, after module "a"
returned, prints "mid" and waits for GO_FILE to exist, so a
client's pause arrives mid-forward for sure. Prints "ready" once watching, "done" at the end.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from torch import nn

import vizdebug

run_dir, go = sys.argv[1], Path(sys.argv[2])
on_anomaly = None if sys.argv[3:] == ["none"] else "warn"
torch.manual_seed(0)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 8)
        self.b = nn.ReLU()
        self.c = nn.Linear(8, 2)
        self.step = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.a(x)
        if self.step == 5:
            print("mid", flush=True)
            while not go.exists():
                time.sleep(0.01)
        return self.c(self.b(h))


model = Net()
opt = torch.optim.SGD(model.parameters(), lr=0.1)
watch = vizdebug.watch(model, opt, logdir=run_dir, every=1000, on_anomaly=on_anomaly)
print("ready", flush=True)
for step in range(40):
    model.step = step
    opt.zero_grad()
    model(torch.randn(3, 4)).sum().backward()
    opt.step()
    watch.step()
watch.close()
print("done", flush=True)

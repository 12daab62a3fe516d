"""A training-like process for the live-channel tests: three 'modules' per step, numpy only.

Usage: python loop_numpy.py RUN_DIR STEPS [RESUME_TIMEOUT]
Module "b" produces a NaN at step 7. Prints "done" at the end. ``VIZDEBUG_TEST_IDLE_TIMEOUT``
sets the server's idle timeout (seconds); with ``VIZDEBUG_TEST_WAIT_CLIENT=1`` the loop starts only
once a client armed the debugger (a breakpoint or a command), so short runs do not race it.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

from vizdebug.live import ControlServer, Debugger, Position

run_dir = Path(sys.argv[1])
steps = int(sys.argv[2])
timeout = float(sys.argv[3]) if len(sys.argv) > 3 else 60.0
run_dir.mkdir(parents=True, exist_ok=True)
debugger = Debugger(resume_timeout=timeout)
idle = float(os.environ.get("VIZDEBUG_TEST_IDLE_TIMEOUT", "60"))
server = ControlServer(debugger, run_dir, run=run_dir.name, idle_timeout=idle)
print("ready", flush=True)
if os.environ.get("VIZDEBUG_TEST_WAIT_CLIENT") == "1":
    while not debugger.armed:
        time.sleep(0.01)
x = np.arange(12, dtype=np.float32).reshape(3, 4)
for step in range(steps):
    for i, name in enumerate(("a", "b", "c")):
        y = x * (i + 1) + step
        if name == "b" and step == 7:
            y[1, 2] = np.nan
        debugger.at(
            Position(step, "forward", name, "Toy", 0, ("",), i),
            lambda x=x, y=y: {"input0": x, "output": y},
        )
    time.sleep(0.01)
server.close()
print("done", flush=True)

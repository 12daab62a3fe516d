"""The live debugger: key response in the TUI, and the cost of serving it to no one.

1. Step key → position: a real training subprocess (tests/torch/live_train.py, the digits CNN
   under vizdebug.watch) is paused; the TUI (headless, ``App.run_test``) is attached and ``s`` is
   pressed K times; timed from the key press until the status widget shows the new hook point
   (the reply travels over the loopback channel: request, resume, pause message, render).
2. Step-time overhead of the live server with no client attached, two ways. Exactly: the CPU
   time of the server thread (it blocks in ``accept``) and the disarmed hook-point tests of a
   step (counted, times the cost of one test). By wall clock: the same CNN trained in this
   process under ``vizdebug.watch`` with ``live=True`` and ``live=False``, blocks of steps
   interleaved, with an A/A control that shows how much of the difference is noise.
   ``torch.set_num_threads(1)``.

Usage: python benchmarks/bench_live.py [--keys K] [--blocks N] [--block S]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from paired import bootstrap_ci

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


async def _key_latency(keys: int) -> list[float]:
    from tests.tui.live_helpers import pause_at, start_training, wait_live
    from vizdebug.tui.app import VizdebugApp
    from vizdebug.tui.screens.live_screen import LiveScreen
    from vizdebug.tui.widgets.live_status import LiveStatus

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "train"
        proc = start_training(run_dir, steps=1_000_000, nan_step=10**9)
        try:
            live = wait_live(run_dir)
            pause_at(live, 2)
            app = VizdebugApp(run_dir, attach=[live])
            times: list[float] = []
            async with app.run_test(size=(150, 45)) as pilot:
                while not isinstance(app.screen, LiveScreen):
                    await asyncio.sleep(0.01)
                status = app.screen.query_one(LiveStatus)
                while status.state != "paused":
                    await asyncio.sleep(0.01)
                for _ in range(keys):
                    before = (status.position or {}).get("index")
                    t0 = time.perf_counter()
                    # not pilot.press: it also waits for the screen to go idle (the tensor fetch
                    # and the inspector's rendering that follow the new position)
                    app.simulate_key("s")
                    while (
                        status.state != "paused" or (status.position or {}).get("index") == before
                    ):
                        await asyncio.sleep(0.0005)
                    times.append(time.perf_counter() - t0)
                    await pilot.pause(0.1)  # let the tensor fetch of this point finish
        finally:
            proc.kill()
            proc.wait()
    return times


def _cnn() -> Any:
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(512, 32),
        nn.Linear(32, 10),
    )  # fmt: skip


def _thread_cpu_ns(name: str) -> int:
    """CPU time (ns) used so far by this process's thread called ``name`` (Linux schedstat)."""
    import threading

    for t in threading.enumerate():
        if t.name == name and t.native_id is not None:
            stat = Path(f"/proc/self/task/{t.native_id}/schedstat").read_text()
            return int(stat.split()[0])
    raise LookupError(f"no thread {name!r}")


class _CountingDebugger:
    """Counts how often the hook points read ``armed`` (never armed)."""

    reads = 0

    def __init__(self, real: Any) -> None:
        self._real = real

    @property
    def armed(self) -> bool:
        _CountingDebugger.reads += 1
        return False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def _overhead(blocks: int, block: int) -> dict[str, Any]:
    """The live server's cost to a training step with no client attached.

    Three training loops in one process, each on its own copy of the CNN: ``live=True``,
    ``live=False`` and a second ``live=False`` (an A/A control: the method's own noise). They
    take turns in blocks of ``block`` steps, shuffled each round; per round, the ratio of the
    block times of on/off and of off/off. Also measured exactly: the CPU time of the server
    thread over the whole run, and the number of disarmed hook-point tests a step (counted).
    """
    import copy
    import random

    import torch
    from sklearn.datasets import load_digits
    from torch import nn

    import vizdebug

    torch.set_num_threads(1)
    digits = load_digits()
    x = torch.tensor(digits.images[:256], dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target[:256])
    torch.manual_seed(0)
    base = _cnn()
    with tempfile.TemporaryDirectory() as tmp:
        loops: dict[str, tuple[Any, Any, Any]] = {}
        for name, live in (("on", True), ("off", False), ("off2", False)):
            model = copy.deepcopy(base)
            opt = torch.optim.SGD(model.parameters(), lr=0.05)
            w = vizdebug.watch(model, opt, logdir=Path(tmp) / name, live=live)
            loops[name] = (model, opt, w)

        def run(name: str, steps: int) -> float:
            model, opt, w = loops[name]
            t0 = time.perf_counter()
            for step in range(steps):
                idx = torch.arange(step * 16, step * 16 + 16) % len(x)
                opt.zero_grad()
                loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
                loss.backward()  # type: ignore[no-untyped-call]
                opt.step()
                w.step(loss=loss)
            return time.perf_counter() - t0

        for name in loops:
            run(name, 10)  # structure events, allocator warm-up
        server_cpu0 = _thread_cpu_ns("vizdebug-live")
        times: dict[str, list[float]] = {name: [] for name in loops}
        order = list(loops)
        rng = random.Random(0)
        for _ in range(blocks):
            rng.shuffle(order)
            for name in order:
                times[name].append(run(name, block))
        server_ns = _thread_cpu_ns("vizdebug-live") - server_cpu0
        # count the disarmed tests of one step, on the live loop itself
        live_part = loops["on"][2]._live
        real = live_part.debugger
        live_part.debugger = _CountingDebugger(real)
        _CountingDebugger.reads = 0
        run("on", 10)
        reads = _CountingDebugger.reads / 10
        live_part.debugger = real
        for _, _, w in loops.values():
            w.close()
    on_off = [a / b for a, b in zip(times["on"], times["off"], strict=True)]
    aa = [a / b for a, b in zip(times["off2"], times["off"], strict=True)]
    return {
        "step_on": statistics.median(times["on"]) / block,
        "step_off": statistics.median(times["off"]) / block,
        "ratio": statistics.median(on_off),
        "ratio_ci": bootstrap_ci(on_off),
        "aa": statistics.median(aa),
        "aa_ci": bootstrap_ci(aa),
        "server_ns_per_step": server_ns / (blocks * block),
        "reads": reads,
    }


def _check_cost() -> float:
    """Seconds per disarmed hook point: the test every hook makes with no client attached."""
    import timeit
    from types import SimpleNamespace

    from vizdebug.live import Debugger

    live = SimpleNamespace(debugger=Debugger())
    n = 1_000_000
    best = min(
        timeit.repeat("live is not None and live.debugger.armed", globals={"live": live},
                      number=n, repeat=5)
    )  # fmt: skip
    return best / n


def main() -> None:
    """Run both measurements and print a markdown report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=30)
    parser.add_argument("--blocks", type=int, default=150)
    parser.add_argument("--block", type=int, default=10)
    args = parser.parse_args()

    import textual
    import torch

    keys = asyncio.run(_key_latency(args.keys))
    o = _overhead(args.blocks, args.block)
    check = _check_cost()
    computed = (o["reads"] * check + o["server_ns_per_step"] * 1e-9) / o["step_off"]
    print(
        f"{platform.machine()}, {platform.python_version()}, torch {torch.__version__}, "
        f"textual {textual.__version__}, {time.strftime('%Y-%m-%d')}\n"
    )
    print("| measurement | median | p95 / 95% CI | target |")
    print("|---|---|---|---|")
    print(
        f"| step key → new position on screen ({len(keys)} steps, real training subprocess, "
        f"headless TUI) | {statistics.median(keys) * 1e3:.1f} ms | {_p95(keys) * 1e3:.1f} ms "
        "| ≤ 50 ms |"
    )
    print(f"| training step, live server on, no client | {o['step_on'] * 1e3:.3f} ms | | |")
    print(f"| training step, `live=False` | {o['step_off'] * 1e3:.3f} ms | | |")
    lo, hi = o["ratio_ci"]
    print(
        f"| wall clock: on / off, median of {args.blocks} interleaved {args.block}-step block "
        f"pairs | {(o['ratio'] - 1) * 100:+.2f} % | {(lo - 1) * 100:+.2f} % … "
        f"{(hi - 1) * 100:+.2f} % | ≤ 1 % |"
    )
    lo, hi = o["aa_ci"]
    print(
        f"| wall clock A/A control: off / off (the method's noise) | {(o['aa'] - 1) * 100:+.2f} % "
        f"| {(lo - 1) * 100:+.2f} % … {(hi - 1) * 100:+.2f} % | |"
    )
    print(
        f"| server thread CPU time per training step (schedstat, whole run) "
        f"| {o['server_ns_per_step']:.0f} ns | | |"
    )
    print(
        f"| disarmed hook-point tests per step (counted) x cost of one ({check * 1e9:.0f} ns) "
        f"| {o['reads']:.0f} x | | |"
    )
    print(
        f"| exact cost: tests + server CPU, as a share of a step | {computed * 100:.3f} % | "
        "| ≤ 1 % |"
    )


if __name__ == "__main__":
    main()

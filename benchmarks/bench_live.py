"""The live debugger: key response in the TUI, and the cost of serving it to no one.

1. Step key → position: a real training subprocess (tests/torch/live_train.py, the digits CNN
   under vizdebug.watch) is paused; the TUI (headless, ``App.run_test``) is attached and ``s`` is
   pressed K times; timed from the key press until the status widget shows the new hook point
   (the reply travels over the loopback channel: request, resume, pause message, render).
2. Step-time overhead: the same CNN trained in this process under ``vizdebug.watch`` with the
   live server on (no client attached) and with ``live=False``; interleaved repeats, median
   seconds per training step, ``torch.set_num_threads(1)``.

Usage: python benchmarks/bench_live.py [--keys K] [--steps N] [--repeats R]
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


_NODELAY_LAUNCHER = """
import runpy, socket, sys
import vizdebug.live.server as srv
_init = srv._Client.__init__
def _patched(self, sock):
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    _init(self, sock)
srv._Client.__init__ = _patched
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


async def _key_latency(keys: int, *, nodelay: bool) -> list[float]:
    from tests.tui.live_helpers import pause_at, start_training, wait_live
    from vizdebug.tui.app import VizdebugApp
    from vizdebug.tui.screens.live_screen import LiveScreen
    from vizdebug.tui.widgets.live_status import LiveStatus

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "train"
        launcher: list[str] = []
        if nodelay:  # what the proposed server fix (TCP_NODELAY on accepted sockets) gives
            (Path(tmp) / "nodelay.py").write_text(_NODELAY_LAUNCHER)
            launcher = [str(Path(tmp) / "nodelay.py")]
        proc = start_training(run_dir, steps=1_000_000, nan_step=10**9, launcher=launcher)
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


def _overhead(steps: int, repeats: int) -> tuple[float, float, float]:
    """Median step time with the live server on and off, and the median paired ratio."""
    import torch
    from sklearn.datasets import load_digits
    from torch import nn

    import vizdebug

    torch.set_num_threads(1)
    digits = load_digits()
    x = torch.tensor(digits.images[:256], dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target[:256])

    def run(live: bool, logdir: Path) -> float:
        torch.manual_seed(0)
        model = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(512, 32),
            nn.Linear(32, 10),
        )  # fmt: skip
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        per_step = []
        with vizdebug.watch(model, opt, logdir=logdir, live=live) as watch:
            for step in range(steps):
                idx = torch.arange(step * 16, step * 16 + 16) % len(x)
                t0 = time.perf_counter()
                opt.zero_grad()
                loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
                loss.backward()  # type: ignore[no-untyped-call]
                opt.step()
                watch.step(loss=loss)
                per_step.append(time.perf_counter() - t0)
        return statistics.median(per_step[10:])  # the first steps record the structure

    on: list[float] = []
    off: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats):
            order = (True, False) if r % 2 == 0 else (False, True)
            for live in order:
                (on if live else off).append(run(live, Path(tmp) / f"r{r}-{live}"))
    ratio = statistics.median(a / b for a, b in zip(on, off, strict=True))
    return statistics.median(on), statistics.median(off), ratio


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
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=21)
    args = parser.parse_args()

    import textual
    import torch

    current = asyncio.run(_key_latency(args.keys, nodelay=False))
    nodelay = asyncio.run(_key_latency(args.keys, nodelay=True))
    on, off, ratio = _overhead(args.steps, args.repeats)
    print("## Live debugger\n")
    print(
        f"{platform.machine()}, {platform.python_version()}, torch {torch.__version__}, "
        f"textual {textual.__version__}, {time.strftime('%Y-%m-%d')}\n"
    )
    print("| measurement | median | p95 | target |")
    print("|---|---|---|---|")
    for label, times in (("server as is", current), ("server with TCP_NODELAY", nodelay)):
        print(
            f"| step key → new position on screen, {label} ({len(times)} steps, real training "
            f"subprocess) | {statistics.median(times) * 1e3:.1f} ms | {_p95(times) * 1e3:.1f} ms "
            "| ≤ 50 ms |"
        )
    print(
        f"| training step, live server on, no client ({args.repeats} interleaved repeats x "
        f"{args.steps} steps) | {on * 1e3:.3f} ms | | |"
    )
    print(f"| training step, live=False | {off * 1e3:.3f} ms | | |")
    print(
        f"| step-time overhead of the live server: ratio of medians / median of paired ratios "
        f"| {(on / off - 1) * 100:+.2f} % / {(ratio - 1) * 100:+.2f} % | | ≤ 1 % |"
    )
    hooks = 2 * 6 + 1  # forward and backward of 5 modules + the root, the optimizer step
    check = _check_cost()
    print(
        f"| computed: {hooks} disarmed hook tests a step x {check * 1e9:.0f} ns "
        f"| {hooks * check / off * 100:.3f} % of a step | | ≤ 1 % |"
    )


if __name__ == "__main__":
    main()

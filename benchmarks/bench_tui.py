"""The terminal UI: load-to-first-screen of a large run, and key response during a live tail.

1. First screen: a run of M modules x N steps of tensor statistics (one packed stats record a
   step, as vizdebug.Writer writes them), opened headless with ``App.run_test``; timed from
   creating the app until the health table shows every module.
2. Key response: while a Writer appends ~1,000 events/s to a run the app tails, press the step
   keys and time from the key press until the screen shows the new step.

Usage: python benchmarks/bench_tui.py [--modules M] [--steps N] [--keys K]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def make_big_run(run_dir: Path, modules: int, steps: int, *, seed: int = 0) -> None:
    """Write a run of ``modules`` x ``steps`` statistics, one packed record per step.

    Going through ``Writer.write`` for a million TensorStats takes minutes, so this encodes
    step 0 with the real codec and then reuses that record, replacing the step and the
    statistics matrix: the bytes on disk are exactly what the writer produces.
    """
    from tensorboard.compat.proto import event_pb2

    import vizdebug
    from vizdebug.events import ModuleInfo, TensorStats
    from vizdebug.runs.codec import encode_batch
    from vizdebug.runs.records import encode_record
    from vizdebug.stats import reference_stats

    rng = np.random.default_rng(seed)
    names = [f"blocks.{i // 4}.layer{i % 4}" for i in range(modules)]
    with vizdebug.Writer(run_dir, framework="torch") as w:
        w.structure("torch", [ModuleInfo(n, "Linear", params=64) for n in names], step=0)
        w.anomaly(
            "nan",
            step=steps // 2,
            module=names[modules // 2],
            phase="forward",
            role="output",
            message="NaN in output",
            nan=3,
        )
    base = reference_stats(rng.standard_normal(256))
    template = encode_batch(
        [TensorStats(step=0, wall_time=1.0, name=n, role="output", stats=base) for n in names]
    )[0]
    ev = event_pb2.Event.FromString(template)
    cols = np.array(
        [[256, 0, 0, 0, 0, -3, 3, 0, 1, 16, -3, 3] + [8.0] * len(base.hist_counts)],
        dtype="<f8",
    ).repeat(modules, axis=0)
    out = run_dir / f"events.out.tfevents.{int(time.time())}.bench.1.vizdebug-r0"
    with open(out, "wb") as f:
        for step in range(steps):
            cols[:, 7] = rng.standard_normal(modules) * 0.1
            cols[:, 8] = 1.0 + step * 1e-4
            ev.step = step
            ev.wall_time = 1_700_000_000.0 + step
            ev.summary.value[0].tensor.string_val[1] = cols.tobytes()
            f.write(encode_record(ev.SerializeToString()))


async def _first_screen(run_dir: Path, modules: int) -> float:
    from vizdebug.tui.app import VizdebugApp
    from vizdebug.tui.widgets.health_table import HealthTable

    t0 = time.perf_counter()
    app = VizdebugApp(run_dir)
    # Poll with asyncio.sleep: pilot.pause() walks every widget each call, which would compete
    # with the loading thread for the GIL.
    async with app.run_test(size=(160, 50)):
        while app.store is None:
            await asyncio.sleep(0.02)
        table = app.run_screen.query_one(HealthTable)
        while table.row_count < modules:
            await asyncio.sleep(0.02)
        return time.perf_counter() - t0


async def _key_response(
    run_dir: Path, keys: int, rate: int
) -> tuple[list[float], list[float], int]:
    import vizdebug
    from vizdebug.stats import reference_stats
    from vizdebug.tui.app import VizdebugApp
    from vizdebug.tui.widgets.health_table import HealthTable
    from vizdebug.tui.widgets.step_bar import StepBar

    writer = vizdebug.Writer(run_dir, flush_secs=0.05)
    stats = reference_stats(np.linspace(-1, 1, 64))
    stop = threading.Event()
    written = [0]

    def feed() -> None:
        step = 0
        while not stop.is_set():
            t = time.perf_counter()
            for i in range(10):  # 10 modules a step, 100 steps a second: 1,000 events/s
                writer.stats(f"net.layer{i}", "output", stats, step=step)
            written[0] += 10
            step += 1
            time.sleep(max(0.0, 0.01 - (time.perf_counter() - t)))

    writer.stats("net.layer0", "output", stats, step=0)
    writer.flush()
    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    latencies: list[float] = []
    tables: list[float] = []
    app = VizdebugApp(run_dir)
    try:
        async with app.run_test(size=(160, 50)) as pilot:
            while app.store is None:
                await pilot.pause(0.01)
            bar = app.run_screen.query_one(StepBar)
            table = app.run_screen.query_one(HealthTable)
            while len(app.store.steps if app.store else []) < 50:
                await pilot.pause(0.02)
            await pilot.press("home")
            for k in range(keys):
                key = "right" if k % 2 == 0 else "left"
                before = bar.rendered_step
                t0 = time.perf_counter()
                app.simulate_key(key)  # as a terminal would deliver it; no pilot waiting
                while bar.rendered_step == before:
                    await asyncio.sleep(0.001)
                latencies.append(time.perf_counter() - t0)
                while table.shown_step != bar.rendered_step:
                    await asyncio.sleep(0.001)
                tables.append(time.perf_counter() - t0)
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        thread.join()
        writer.close()
    return latencies, tables, written[0]


def main() -> None:
    """Run both measurements and print a markdown section."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", type=int, default=200)
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--keys", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "big"
        t = time.perf_counter()
        make_big_run(big, args.modules, args.steps)
        gen = time.perf_counter() - t
        size = sum(p.stat().st_size for p in big.rglob("*") if p.is_file())
        firsts = [asyncio.run(_first_screen(big, args.modules)) for _ in range(args.repeats)]
        lat, tables, written = asyncio.run(_key_response(Path(tmp) / "live", args.keys, 1000))
    print("## Terminal UI (`vizdebug tui`)\n")
    print(
        f"Run: {args.modules} modules x {args.steps} steps of tensor statistics "
        f"({args.modules * args.steps:,} rows, {size / 2**20:.0f} MiB; generated in {gen:.1f} s). "
        "Headless `App.run_test`, 160x50.\n"
    )
    print("| measurement | median | worst | target |")
    print("|---|---:|---:|---:|")
    print(
        f"| load to first screen (health table filled), {args.repeats} runs "
        f"| {statistics.median(firsts):.2f} s | {max(firsts):.2f} s | <= 2 s |"
    )
    ms = [x * 1000 for x in lat]
    print(
        f"| step key to step bar update while a run appends ~1,000 events/s ({len(ms)} keys, "
        f"{written:,} events written) | {statistics.median(ms):.1f} ms | {max(ms):.1f} ms "
        "| <= 50 ms |"
    )
    ts = [x * 1000 for x in tables]
    print(
        f"| same keys: until the health table shows the new step (debounced "
        f"rebuild) | {statistics.median(ts):.1f} ms | {max(ts):.1f} ms | - |"
    )


if __name__ == "__main__":
    main()

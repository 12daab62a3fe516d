"""Writer throughput: vizdebug.Writer vs torch's SummaryWriter vs tensorboardX, in one run.

Two figures per tool and pattern:
- calling thread: scalars per second while the training thread makes the calls (wall clock of
  the loop; the writer's background thread competes for the GIL during it, as in training);
- end to end: scalars per second until the last one is flushed to disk (loop + close).

Patterns: "1 tag/step" (one scalar per step, the worst case for batching) and "100 tags/step"
(per-module figures, what adapters write).

Usage: python benchmarks/bench_writer.py [--n N] [--repeats R]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

Factory = Callable[[str], Any]


def _vizdebug(path: str) -> Any:
    import vizdebug

    w = vizdebug.Writer(path)
    w.add_scalar = lambda tag, value, step: w.scalar(tag, value, step)
    return w


def _summary_writer(path: str) -> Any:
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(path)


def _tensorboardx(path: str) -> Any:
    from tensorboardX import SummaryWriter

    return SummaryWriter(path)


TOOLS: dict[str, Factory] = {
    "vizdebug.Writer": _vizdebug,
    "torch SummaryWriter": _summary_writer,
    "tensorboardX SummaryWriter": _tensorboardx,
}


def measure(factory: Factory, n: int, tags_per_step: int) -> tuple[float, float]:
    tags = [f"module{i}/grad_norm" for i in range(tags_per_step)]
    steps = n // tags_per_step
    with tempfile.TemporaryDirectory() as tmp:
        writer = factory(str(Path(tmp) / "run"))
        add = writer.add_scalar
        gc.collect()
        t0 = time.perf_counter()
        for step in range(steps):
            for tag in tags:
                add(tag, 0.5, step)
        t1 = time.perf_counter()
        writer.close()
        t2 = time.perf_counter()
    total = steps * tags_per_step
    return total / (t1 - t0), total / (t2 - t0)


def run(n: int, repeats: int) -> str:
    lines = [
        f"Writer throughput, {n:,} scalars per measurement, median of {repeats}.",
        "",
        "| tool | pattern | calling thread (scalars/s) | end to end (scalars/s) |",
        "|---|---|---:|---:|",
    ]
    e2e: dict[tuple[str, int], float] = {}
    for tags_per_step in (1, 100):
        for name, factory in TOOLS.items():
            results = [measure(factory, n, tags_per_step) for _ in range(repeats)]
            call = statistics.median(r[0] for r in results)
            end = statistics.median(r[1] for r in results)
            e2e[(name, tags_per_step)] = end
            lines.append(f"| {name} | {tags_per_step} tag/step | {call:,.0f} | {end:,.0f} |")
    lines.append("")
    for tags_per_step in (1, 100):
        ours = e2e[("vizdebug.Writer", tags_per_step)]
        base = e2e[("torch SummaryWriter", tags_per_step)]
        lines.append(
            f"End to end, {tags_per_step} tag/step: vizdebug is {ours / base:.1f}x torch's "
            f"SummaryWriter and {ours / e2e[('tensorboardX SummaryWriter', tags_per_step)]:.1f}x "
            "tensorboardX."
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(run(args.n, args.repeats))


if __name__ == "__main__":
    main()

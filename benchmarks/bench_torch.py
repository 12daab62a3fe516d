"""Overhead of vizdebug.watch against a bare training step and the tools users use instead.

Run: ``.venv/bin/python benchmarks/bench_torch.py [--blocks 16] [--block 100]``.

Method. Every tool runs in a process of its own, next to a bare copy of the model: a user's
process holds one tool, and tools sharing a process disturb each other (with torch's
SummaryWriter in the same process, whose histograms churn through ~500 MB of heap, vizdebug's
every-step ratio on the digits CNN read 1.36x, against 1.17x alone, in two runs of six rounds;
presumably the heap and caches that writer leaves behind slow a tool that keeps more tensors
alive more than they slow the bare copy. ``--one-process`` runs all the tools together anyway).
Each copy (same initial weights) has its own optimizer and its instrumentation attached for the
whole run, on one CPU thread (``torch.set_num_threads(1)``; vizdebug's statistics worker and
writer threads may use the second core, as they would in a user's process). The two copies then
take turns in rounds (with ``--one-process``, all the tools and one bare copy): in each round
every tool trains ``--block`` steps (as long as vizdebug's default schedule, ``every=100``, so
each round of the default holds exactly one step that records statistics: its cost is amortized
as in training), in slices of 50 steps. Each slice of a tool runs right next to a slice of the
bare copy, the two in random order, and the tools' order is shuffled for every slice: the load
on a shared machine changes over seconds, so a ratio taken between neighbours a second apart
cancels it far better than one taken against a bare slice run many seconds away. A slice's time
includes flushing the tool's writer at its end, so work a tool pushes to background threads is
paid inside its own slice, not by the next tool's (vizdebug's worker and writer threads would
otherwise catch up while another tool is timed). That flush waits for the statistics of the
slice's last step, a tail a training run pays once, at its end; slices of 50 steps keep it from
being counted more often than a run would notice (in 10-step slices it was a fifth of
vizdebug's every-step overhead on the digits CNN, and each slice started on caches the other
tools had filled). Per tool: the median over rounds of the mean step time, and the median over
rounds of the ratio of its round to its bare neighbours' (with a bootstrap 95% confidence
interval). The "bare (A/A)" row, a second bare copy timed the same way, shows the method's
noise floor.

Peak memory is measured separately, one subprocess per tool (``VmHWM`` after 60 steps):
tracemalloc does not see torch's allocator and torch has no allocator statistics on CPU. It
includes the ~0.3 GB that importing torch costs: compare the columns.

Models (``--models``): the digits CNN of examples/torch_digits.py (batch 64, 8x8 images), a
small ``nn.TransformerEncoder`` (2 layers, d_model 64, 4 heads, sequence 32, batch 16), and two
models people train, from the test zoo (tests/torch/zoo.py): ``resnet18`` (the full ResNet-18
layout, batch 8, 64x64) and ``bert`` (Hugging Face's BERT-mini from a config, sequence 64,
batch 8). A ``-compiled`` suffix (``cnn-compiled``) runs every copy, the bare one included,
under ``torch.compile`` (watched first, then compiled). The real models take minutes a round:
``--models resnet18,bert --blocks 3`` keeps a run under half an hour.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conditions import Steal
from paired import beside_bare, paired_ratio

TOOLS = {
    "bare": "no instrumentation",
    "bare (A/A)": "a second bare copy: the noise floor of the method",
    "vizdebug default": "watch(model, opt): every=100, first=5, NaN/Inf sentinel every step",
    "vizdebug sentinel only": "watch(model, opt, what=set()): NaN/Inf sentinel alone",
    "vizdebug every step": "watch(model, opt, every=1): statistics and histograms of "
    "activations, output gradients, weights, gradients and updates, every step",
    "torch SummaryWriter": "add_histogram of every parameter and gradient, every step",
    "tensorboardX": "add_histogram of every parameter and gradient, every step",
    "detect_anomaly": "torch.autograd.detect_anomaly() around each step",
}


#: What each ``--models`` name trains (a ``-compiled`` suffix: the same under torch.compile).
TITLES = {
    "cnn": "digits CNN, batch 64",
    "tf": "TransformerEncoder, 2 layers, d_model 64",
    "resnet18": "ResNet-18 (11.2M parameters), batch 8, 64x64",
    "bert": "BERT-mini (4 layers, hidden 256, 4 heads), sequence 64, batch 8",
}


def _model(kind: str) -> tuple[Any, Any, Any]:
    import torch
    from torch import nn

    torch.manual_seed(0)
    kind = kind.removesuffix("-compiled")
    if kind in ("resnet18", "bert"):
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "torch"))
        import zoo

        if kind == "resnet18":
            return zoo.resnet18(10), torch.randn(8, 3, 64, 64), torch.randint(0, 10, (8,))

        class Logits(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.bert = zoo.bert_mini()

            def forward(self, ids: Any) -> Any:
                return self.bert(input_ids=ids).logits

        batch = zoo.hf_batch("bert_mini", batch=8, seq=64)
        return Logits(), batch["input_ids"], batch["labels"]
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


class Runner:
    """One tool on its own copy of the model: ``run(n)`` trains ``n`` steps and flushes."""

    def __init__(
        self, tool: str, model: Any, x: Any, y: Any, logdir: str, compiled: bool = False
    ) -> None:
        import torch

        self.model, self.x, self.y = model, x, y
        self.opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        self.handle: Any = None
        self.hist: Any = None
        self.i = 0
        self.bg_seconds = 0.0  # CPU time of the tool's own threads (worker, writer, sinks)
        self.steps = 0
        before = set(threading.enumerate())
        if tool.startswith("vizdebug"):
            import vizdebug

            opts: dict[str, Any] = {
                "vizdebug default": {},
                "vizdebug every step": {"every": 1},
                "vizdebug sentinel only": {"what": set()},
            }[tool]
            self.handle = vizdebug.watch(model, self.opt, logdir=logdir, **opts)
        elif tool == "torch SummaryWriter":
            from torch.utils.tensorboard import SummaryWriter

            self.hist = SummaryWriter(logdir)
        elif tool == "tensorboardX":
            from tensorboardX import SummaryWriter as XWriter

            self.hist = XWriter(logdir)
        if compiled:  # watched first, then compiled, as a user adds one line to a script
            self.model = torch.compile(model)
        self.anomaly: Callable[[], Any] = (
            torch.autograd.detect_anomaly if tool == "detect_anomaly" else contextlib.nullcontext
        )
        self.threads = [t for t in threading.enumerate() if t not in before]

    def background_cpu(self) -> float:
        """CPU seconds the tool's own threads have used so far."""
        total = 0.0
        for t in self.threads:
            if t.is_alive() and t.ident is not None:
                with contextlib.suppress(OSError):  # ended in between
                    total += time.clock_gettime(time.pthread_getcpuclockid(t.ident))
        return total

    def run(self, steps: int) -> float:
        """Seconds for ``steps`` steps plus the flush of the tool's writer."""
        import torch
        from torch import nn

        model, opt, x, y = self.model, self.opt, self.x, self.y
        bg0 = self.background_cpu()
        t0 = time.perf_counter()
        for _ in range(steps):
            with self.anomaly():
                opt.zero_grad()
                loss = nn.functional.cross_entropy(model(x), y)
                loss.backward()
                opt.step()
            if self.handle is not None:
                self.handle.step(loss=loss)
            if self.hist is not None:
                for name, p in model.named_parameters():
                    self.hist.add_histogram(name, p, self.i)
                    self.hist.add_histogram(name + "/grad", p.grad, self.i)
            self.i += 1
        if self.handle is not None:
            self.handle.writer.flush()
        if self.hist is not None:
            self.hist.flush()
        del torch
        spent = time.perf_counter() - t0
        self.bg_seconds += self.background_cpu() - bg0
        self.steps += steps
        return spent

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
        if self.hist is not None:
            self.hist.close()


#: Steps a tool runs before the next takes its turn (a round gives each tool ``--block`` steps).
SLICE = 50


def interleaved(
    kind: str, blocks: int, block: int, logdir: str, tools: list[str]
) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, float]]:
    """Per-step time of every round of every tool, each slice of a tool next to a bare slice
    (seconds); the per-step time of those bare neighbours, per tool and round; and the CPU
    time per step of each tool's own threads (seconds)."""
    import torch

    torch.set_num_threads(1)
    model, x, y = _model(kind)
    compiled = kind.endswith("-compiled")
    runners = {
        tool: Runner(
            tool, copy.deepcopy(model), x, y, os.path.join(logdir, f"{kind}-{i}"), compiled
        )
        for i, tool in enumerate(tools)
    }
    for r in runners.values():
        r.run(5)  # warm-up: allocator, first-step structure events
        r.bg_seconds, r.steps = 0.0, 0
    times: dict[str, list[float]] = {tool: [] for tool in tools}
    neighbours: dict[str, list[float]] = {tool: [] for tool in tools}
    rng = random.Random(0)
    others = [tool for tool in tools if tool != "bare"]
    n = min(SLICE, block)
    for _ in range(blocks):
        spent = dict.fromkeys(tools, 0.0)
        bare_next = dict.fromkeys(tools, 0.0)
        for _ in range(max(1, block // SLICE)):
            for who, tool in beside_bare(rng, others, "bare"):
                took = runners[who].run(n)
                if who == tool:
                    spent[tool] += took
                else:
                    bare_next[tool] += took
        # the bare copy's own row: all its slices of the round (as the other rows, per tool)
        spent["bare"] = bare_next["bare"] = sum(bare_next[t] for t in others) / max(1, len(others))
        for tool in tools:
            times[tool].append(spent[tool] / block)
            neighbours[tool].append(bare_next[tool] / block)
    background = {tool: r.bg_seconds / max(1, r.steps) for tool, r in runners.items()}
    for r in runners.values():
        r.close()
    return times, neighbours, background


def _child(*args: str) -> str:
    """The last line this script prints when run with ``args`` in a subprocess."""
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{' '.join(args)}: {out.stderr.strip()[-2000:]}")
    return out.stdout.strip().splitlines()[-1]


def peak_rss(kind: str, tool: str, steps: int) -> float:
    """Peak RSS (MB) of a subprocess that trains ``steps`` steps with one tool."""
    return float(_child("--rss", kind, tool, str(steps)))


def _rss_child(kind: str, tool: str, steps: int) -> None:
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as logdir:
        model, x, y = _model(kind)
        runner = Runner(tool, model, x, y, logdir, kind.endswith("-compiled"))
        runner.run(steps)
        runner.close()
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec, so a child would report the
    # parent's peak (every model and tool of the interleaved run) instead of its own
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            print(int(line.split()[1]) / 1024)
            return
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def measure(
    kind: str, blocks: int, block: int, tools: list[str], one_process: bool
) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, float]]:
    """:func:`interleaved` for every tool: each tool with its own bare copy in a process of
    its own (``one_process``: all tools in this one)."""
    if one_process:
        with tempfile.TemporaryDirectory() as logdir:
            return interleaved(kind, blocks, block, logdir, tools)
    times: dict[str, list[float]] = {"bare": []}
    neighbours: dict[str, list[float]] = {"bare": []}
    background: dict[str, float] = {"bare": 0.0}
    for tool in tools[1:]:
        got = json.loads(
            _child("--pair", kind, tool, "--blocks", str(blocks), "--block", str(block))
        )
        times[tool], neighbours[tool] = got["times"][tool], got["neighbours"][tool]
        background[tool] = got["background"][tool]
        times["bare"] += got["times"]["bare"]  # every process's bare copy: the bare row
    neighbours["bare"] = times["bare"]
    return times, neighbours, background


def _pair_child(kind: str, tool: str, blocks: int, block: int) -> None:
    with tempfile.TemporaryDirectory() as logdir:
        times, neighbours, background = interleaved(kind, blocks, block, logdir, ["bare", tool])
    print(json.dumps({"times": times, "neighbours": neighbours, "background": background}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=16)
    parser.add_argument("--block", type=int, default=100)
    parser.add_argument("--models", default="cnn,tf")
    parser.add_argument("--tools", default=",".join(TOOLS), help="comma-separated subset")
    parser.add_argument("--no-rss", action="store_true")
    parser.add_argument(
        "--one-process",
        action="store_true",
        help="all tools in one process (they then disturb each other: see the docstring)",
    )
    parser.add_argument("--json", action="store_true", help="print raw block times as JSON")
    parser.add_argument("--rss", nargs=3, metavar=("MODEL", "TOOL", "STEPS"))
    parser.add_argument("--pair", nargs=2, metavar=("MODEL", "TOOL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss:
        _rss_child(args.rss[0], args.rss[1], int(args.rss[2]))
        return
    if args.pair:
        _pair_child(args.pair[0], args.pair[1], args.blocks, args.block)
        return
    tools = ["bare", *(t for t in args.tools.split(",") if t != "bare")]
    unknown = set(tools) - set(TOOLS)
    if unknown:
        parser.error(f"unknown tools {sorted(unknown)}; choose from {list(TOOLS)}")
    if len(tools) < 2:
        parser.error("name at least one tool besides bare")
    import torch

    where = (
        "tools interleaved in one process"
        if args.one_process
        else "each tool in a process of its own with a bare copy, the two interleaved"
    )
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, torch {torch.__version__}, one training "
          f"thread; {args.blocks} rounds of {args.block} steps per tool in {SLICE}-step slices, "
          f"{where}, each slice next to a bare slice (its ratio's pair), "
          f"{time.strftime('%Y-%m-%d')}.\n")  # fmt: skip
    for kind in args.models.split(","):
        title = TITLES[kind.removesuffix("-compiled")]
        if kind.endswith("-compiled"):
            title += ", torch.compile (the bare copy compiled too)"
        steal = Steal()
        times, neighbours, background = measure(
            kind, args.blocks, args.block, tools, args.one_process
        )
        stolen = steal.describe()
        if args.json:
            print(json.dumps(times))
        rss = {} if args.no_rss else {t: peak_rss(kind, t, 60) for t in tools}
        print(f"### {title}\n")
        print("| tool | median ms/step | x bare (paired) | 95% CI | own threads' CPU ms/step "
              "| peak RSS MB |")  # fmt: skip
        print("|---|---:|---:|---:|---:|---:|")
        for tool, t in times.items():
            med, lo, hi = paired_ratio(t, neighbours[tool])
            mem = f"{rss[tool]:.0f}" if tool in rss else "-"
            print(f"| {tool} | {statistics.median(t) * 1e3:.2f} | {med:.2f}x | "
                  f"{lo:.2f}x - {hi:.2f}x | {background[tool] * 1e3:.2f} | {mem} |")  # fmt: skip
        print(f"\n{stolen} Own threads: the CPU time of the threads a tool started (vizdebug's "
              "statistics worker, writer and sinks; the summary writers' event-file threads), "
              "per training step. They run on the second vCPU, but their Python holds the GIL "
              "the training thread takes back after every kernel, and a statistics worker that "
              "needs about as long as a bare step holds the training back at the end of each "
              "step.\n")  # fmt: skip
    for tool in tools:
        print(f"- {tool}: {TOOLS[tool]}")


if __name__ == "__main__":
    main()

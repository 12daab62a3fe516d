"""The Visdom sink: what it sustains, and what it costs the training thread.

Starts its own Visdom server on a free loopback port (offline-safe), then measures:

1. sink throughput: events per second through ``VisdomSink.write`` (buffering, aggregation and
   the rate-limited sends it triggers), and until everything is on the server (``flush``);
2. training-thread cost: a loop that records one loss and statistics of 100 modules per step
   through ``vizdebug.Writer``, with no extra sink vs with the Visdom sink (wall clock of the
   loop, and until ``close`` returns);
3. the same with a real (small) torch training loop under ``vizdebug.watch``;
4. what a user would do instead: the ``visdom`` client's ``vis.line(..., update="append")``
   once per step in the training loop (one scalar only).

Usage: python benchmarks/bench_visdom.py [--steps N] [--torch-steps N]
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
from vizdebug_visdom import VisdomSink

from vizdebug import Writer
from vizdebug.events import Event, Scalar, TensorStats
from vizdebug.stats import reference_stats

MODULES = 100
_SERVER_PID = [0]


class TimedSink(VisdomSink):
    """The Visdom sink, adding up the CPU time its thread spends in it."""

    cpu = 0.0

    def write(self, events: Any) -> None:
        t = time.thread_time()
        super().write(events)
        self.cpu += time.thread_time() - t

    def flush(self) -> None:
        t = time.thread_time()
        super().flush()
        self.cpu += time.thread_time() - t


def server_cpu() -> float:
    """CPU seconds the Visdom server process used so far (Linux)."""
    try:
        fields = Path(f"/proc/{_SERVER_PID[0]}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(env_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    cmd = [sys.executable, "-c", "from visdom.server.run_server import main; main()",
           "-port", str(port), "-bind_local", "-env_path", str(env_path),
           "-logging_level", "WARNING"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _SERVER_PID[0] = proc.pid
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            req = urllib.request.Request(url + "/env_state", data=b"{}")
            urllib.request.urlopen(req, timeout=1).read()
            return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("visdom server did not start")


def _events(steps: int) -> list[list[Event]]:
    st = reference_stats(np.random.default_rng(0).normal(size=1000))
    batches = []
    for step in range(steps):
        batch: list[Event] = [Scalar(step=step, tag="loss", value=1.0 / (step + 1))]
        batch += [
            TensorStats(step=step, name=f"layers.{i}", role="grad", stats=st)
            for i in range(MODULES)
        ]
        batches.append(batch)
    return batches


def sink_throughput(url: str, steps: int) -> dict[str, float]:
    batches = _events(steps)
    n = sum(len(b) for b in batches)
    idle = VisdomSink(url, env="bench_ingest", max_buffer=10 * n)
    t0 = time.perf_counter()
    for batch in batches:
        idle.dashboard.ingest(batch)  # buffering and aggregation alone, no HTTP
    ingest = n / (time.perf_counter() - t0)
    sink = VisdomSink(url, env="bench_sink")
    t0 = time.perf_counter()
    for batch in batches:
        sink.write(batch)
    t1 = time.perf_counter()
    sink.flush()
    t2 = time.perf_counter()
    status = sink.status
    sink.close()
    return {
        "events": n,
        "ingest_eps": ingest,
        "write_eps": n / (t1 - t0),
        "e2e_eps": n / (t2 - t0),
        "requests": status.requests,
        "points_sent": status.points_sent,
    }


def training_loop(url: str | None, steps: int) -> tuple[float, float, dict[str, Any]]:
    st = reference_stats(np.random.default_rng(0).normal(size=1000))
    names = [f"layers.{i}" for i in range(MODULES)]
    with tempfile.TemporaryDirectory() as tmp:
        sinks = [VisdomSink(url, env="bench_train")] if url else []
        writer = Writer(Path(tmp) / "run", sinks=sinks)
        t0 = time.perf_counter()
        for step in range(steps):
            writer.scalar("loss", 1.0 / (step + 1), step)
            for name in names:
                writer.stats(name, "grad", st, step)
        t1 = time.perf_counter()
        writer.close()
        t2 = time.perf_counter()
        extra = {"requests": sinks[0].status.requests} if sinks else {}
    return (t1 - t0) / steps, (t2 - t0) / steps, extra


def torch_loop(url: str | None, steps: int) -> tuple[float, float, float] | None:
    """Per training step of a small MLP, watched every step: wall, sink CPU, server CPU."""
    try:
        import torch
    except ImportError:
        return None
    import vizdebug

    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 128), torch.nn.ReLU(),
        torch.nn.Linear(128, 10),
    )  # fmt: skip
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(64, 64), torch.randint(0, 10, (64,))
    sinks = [TimedSink(url, env="bench_torch")] if url else []
    cpu0 = server_cpu()
    with tempfile.TemporaryDirectory() as tmp:
        watch = vizdebug.watch(model, opt, logdir=Path(tmp) / "run", sinks=sinks, every=1,
                               live=False)  # fmt: skip
        t0 = time.perf_counter()
        for _ in range(steps):
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            watch.step(loss)
        elapsed = time.perf_counter() - t0
        watch.close()
    sink_cpu = sinks[0].cpu if sinks else 0.0
    return elapsed / steps, sink_cpu / steps, (server_cpu() - cpu0) / steps


def visdom_client_loop(url: str, steps: int) -> float:
    import visdom

    port = int(url.rsplit(":", 1)[1])
    vis = visdom.Visdom(
        server="http://127.0.0.1", port=port, env="bench_client", use_incoming_socket=False
    )
    t0 = time.perf_counter()
    for step in range(steps):
        vis.line(X=[step], Y=[1.0 / (step + 1)], win="loss", update="append" if step else None)
    return (time.perf_counter() - t0) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--torch-steps", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_server(Path(tmp))
        try:
            thr = sink_throughput(url, args.steps)
            off = min((training_loop(None, args.steps) for _ in range(3)), key=lambda r: r[0])
            on = min((training_loop(url, args.steps) for _ in range(3)), key=lambda r: r[0])
            t_off = [torch_loop(None, args.torch_steps) for _ in range(3)]
            t_on = [torch_loop(url, args.torch_steps) for _ in range(3)]
            client = visdom_client_loop(url, min(args.steps, 500))
        finally:
            proc.kill()
            proc.wait()
    from importlib.metadata import version

    print(f"Machine: {platform.machine()}, {platform.processor() or 'cpu'}; Python "
          f"{platform.python_version()}; visdom {version('visdom')}; "
          f"{time.strftime('%Y-%m-%d')}\n")  # fmt: skip
    print(f"Sink throughput ({thr['events']:,} events: 1 loss + {MODULES} module statistics "
          f"per step, {args.steps} steps)\n")  # fmt: skip
    print("| measure | value |\n|---|---|")
    print(f"| buffering + aggregation alone (no HTTP) | {thr['ingest_eps']:,.0f} events/s |")
    print(
        f"| `VisdomSink.write` (buffer + rate-limited sends) | {thr['write_eps']:,.0f} events/s |"
    )
    print(f"| until all on the server (`flush`) | {thr['e2e_eps']:,.0f} events/s |")
    print(f"| HTTP requests for it all | {thr['requests']} |")
    print(f"| points sent (after aggregation) | {thr['points_sent']:,} |\n")
    print(f"Training-thread cost per step (1 loss + {MODULES} statistics a step)\n")
    print("| setup | loop, per step | until close, per step | requests |\n|---|---|---|---|")
    print(f"| Writer, no extra sink | {off[0] * 1e6:,.1f} µs | {off[1] * 1e6:,.1f} µs | - |")
    print(f"| Writer + VisdomSink | {on[0] * 1e6:,.1f} µs | {on[1] * 1e6:,.1f} µs "
          f"| {on[2].get('requests', '-')} |")  # fmt: skip
    print(f"| visdom client `vis.line(update='append')` per step, 1 scalar only "
          f"| {client * 1e6:,.1f} µs | - | 1 per step |")  # fmt: skip
    done_off = [t for t in t_off if t is not None]
    done_on = [t for t in t_on if t is not None]
    if done_off and done_on:
        off_t = min(done_off)
        on_t = min(done_on)
        print(f"\nTorch MLP (64-128-128-10, batch 64, 1 thread), vizdebug.watch every step, "
              f"{args.torch_steps} steps, best of 3 (the server shares the cores)\n")  # fmt: skip
        print("| setup | wall per step | ratio | sink thread CPU per step | Visdom server CPU "
              "per step |\n|---|---|---|---|---|")  # fmt: skip
        print(f"| watch, run directory only | {off_t[0] * 1e3:.2f} ms | 1.00x | - | - |")
        print(f"| watch + VisdomSink | {on_t[0] * 1e3:.2f} ms | {on_t[0] / off_t[0]:.2f}x "
              f"| {on_t[1] * 1e3:.2f} ms | {on_t[2] * 1e3:.2f} ms |")  # fmt: skip
    print("\n" + json.dumps({"throughput": thr, "off": off[:2], "on": on[:2], "client": client}))


if __name__ == "__main__":
    main()

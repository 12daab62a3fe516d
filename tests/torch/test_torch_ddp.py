"""DistributedDataParallel on two gloo processes: one event stream per rank."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import vizdebug
from vizdebug.runs import load_run


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, world: int, port: int, logdir: str) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        model = nn.parallel.DistributedDataParallel(nn.Sequential(nn.Linear(4, 4), nn.Tanh()))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        with vizdebug.watch(model, opt, logdir=logdir, every=1) as w:
            for _ in range(2):
                opt.zero_grad()
                loss = model(torch.randn(3, 4) + rank).sum()
                loss.backward()
                opt.step()
                w.step(loss=loss)
    finally:
        dist.destroy_process_group()


def test_ddp_two_ranks_write_one_stream_each(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    files = sorted(p.name for p in tmp_path.iterdir() if "tfevents" in p.name)
    assert len(files) == 2 and files[0].endswith("-r0") and files[1].endswith("-r1")
    run = load_run(tmp_path)
    assert {s.rank for s in run.stats} == {0, 1}
    assert {i["world_size"] for i in run.info} == {2}
    for rank in (0, 1):
        names = {s.name for s in run.stats if s.rank == rank and s.role == "output"}
        assert names == {"", "module", "module.0", "module.1"}
        assert len([s for s in run.scalars["loss"] if s.rank == rank]) == 2
    # DDP averages gradients: both ranks apply the same update
    upd = {(s.rank, s.name): s.stats.l2 for s in run.stats if s.role == "update" and s.step == 0}
    assert upd[(0, "module.0.weight")] == upd[(1, "module.0.weight")]

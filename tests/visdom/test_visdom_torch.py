"""A real torch training loop with vizdebug.watch and the Visdom sink, through an outage."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from visdom_helpers import VisdomServer, traces
from vizdebug_visdom import VisdomSink

torch = pytest.importorskip("torch")


def test_watch_survives_a_server_restart(visdom_server: VisdomServer, tmp_path: Path) -> None:
    import vizdebug

    sink = VisdomSink(visdom_server.url, max_points=None, backoff=(0.05, 0.2))
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(64, 8), torch.randint(0, 2, (64,))
    with vizdebug.watch(model, opt, logdir=tmp_path / "torchrun", sinks=[sink], every=1,
                        live=False) as watch:  # fmt: skip
        for step in range(40):
            if step == 10:
                visdom_server.stop()
            if step == 25:
                # restart only once the sink has met the outage (on a loaded machine the
                # steps between stop and start can all run before it tries to send)
                deadline = time.monotonic() + 30
                while sink.status.outages < 1 and time.monotonic() < deadline:
                    time.sleep(0.02)
                visdom_server.start()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            watch.step(loss)
    wins = visdom_server.by_title("vizdebug_torchrun")
    loss_steps = traces(wins["loss"])["loss"][0]
    assert 39 in loss_steps and 24 in loss_steps  # written after, and during, the outage
    assert set(traces(wins["grad: L2 norm"])) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    assert set(traces(wins["update_ratio"])) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    assert "Linear" in wins["model"]["content"]
    assert sink.status.outages == 1 and sink.status.dropped == 0

"""``vizdebug replay RUN --to visdom`` as a user runs it: a subprocess against a real server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from visdom_helpers import VisdomServer, free_port, traces

from vizdebug import Writer
from vizdebug.events import ModuleInfo
from vizdebug.stats import reference_stats


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vizdebug.cli", *args],
        capture_output=True,
        text=True,
        env={**env, "COLUMNS": "200"},
        timeout=120,
    )


def _stored_run(path: Path) -> Path:
    with Writer(path, framework="torch") as w:
        w.structure("torch", [ModuleInfo("", "Net"), ModuleInfo("fc", "Linear", 20)])
        for step in range(300):
            w.scalar("loss", 1.0 / (step + 1), step)
            w.stats("fc", "output", reference_stats(np.arange(8.0) * step), step)
        w.anomaly("nan", step=120, module="fc", message="NaN in fc output")
    return path


def test_replay_sends_a_stored_run(
    visdom_server: VisdomServer, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    run = _stored_run(tmp_path / "stored")
    result = _cli(
        ["replay", str(run), "--to", "visdom", "--server", visdom_server.url, "--env", "again"],
        cli_env,
    )
    assert result.returncode == 0, result.stderr
    assert "replayed" in result.stdout and "again" in result.stdout
    wins = visdom_server.by_title("again")
    x, y = traces(wins["loss"])["loss"]
    assert x == list(range(300))  # every point: replay does not aggregate
    assert y[-1] == pytest.approx(1.0 / 300, rel=1e-6)  # stored as float32
    l2 = traces(wins["output: L2 norm"])["fc"]
    assert l2[0] == list(range(300))
    assert l2[1][7] == pytest.approx(float(np.linalg.norm(np.arange(8.0) * 7)))
    assert "NaN in fc output" in wins["anomalies"]["content"]
    assert "Linear" in wins["model"]["content"]
    assert "fc: output histogram (step 299)" in wins
    assert (visdom_server.env_path / "again.json").is_file()


def test_replay_default_env_and_server_from_environment(
    visdom_server: VisdomServer, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    run = _stored_run(tmp_path / "my run")
    env = {**cli_env, "VIZDEBUG_VISDOM_SERVER": visdom_server.url}
    result = _cli(["replay", str(run), "--to", "visdom"], env)
    assert result.returncode == 0, result.stderr
    assert "loss" in visdom_server.by_title("vizdebug_my-run")


def test_replay_to_an_unreachable_server_is_one_line(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    run = _stored_run(tmp_path / "stored")
    url = f"http://127.0.0.1:{free_port()}"
    result = _cli(["replay", str(run), "--to", "visdom", "--server", url], cli_env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert url in lines[0] and "visdom.server" in lines[0]
    assert "Traceback" not in result.stderr


def test_replay_of_a_missing_run_is_one_line(tmp_path: Path, cli_env: dict[str, str]) -> None:
    result = _cli(["replay", str(tmp_path / "nope"), "--to", "visdom"], cli_env)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1

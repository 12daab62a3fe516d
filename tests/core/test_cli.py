from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vizdebug import Writer
from vizdebug.stats import reference_stats


def vizdebug_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vizdebug.cli", *args],
        capture_output=True,
        text=True,
        env={**env, "COLUMNS": "200"},
        timeout=120,
    )


@pytest.fixture
def logdir(tmp_path: Path) -> Path:
    root = tmp_path / "logs"
    with Writer(root / "mine", framework="torch") as w:
        for step in range(4):
            w.scalar("loss", 1.0 / (step + 1), step)
            w.stats("conv1", "output", reference_stats(np.arange(4.0)), step)
        w.anomaly("nan", module="conv1", phase="forward", message="NaN in conv1", step=3)
    from torch.utils.tensorboard import SummaryWriter

    sw = SummaryWriter(str(root / "theirs"))
    for step in range(5):
        sw.add_scalar("train/loss", 0.1 * step, step)
        sw.add_histogram("w", np.arange(10.0), step)
    sw.close()
    return root


def test_runs_lists_both_runs(logdir: Path, cli_env: dict[str, str]) -> None:
    out = vizdebug_cli(["runs", str(logdir)], cli_env)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    mine = next(line for line in lines if "mine" in line)
    theirs = next(line for line in lines if "theirs" in line)
    assert "torch" in mine and " 4 " in mine  # framework, steps
    assert "other" in theirs and " 5 " in theirs
    assert "dropped" in out.stdout and "anomalies" in out.stdout


def test_show_summarizes_vizdebug_and_other_runs(logdir: Path, cli_env: dict[str, str]) -> None:
    out = vizdebug_cli(["show", str(logdir / "mine")], cli_env)
    assert out.returncode == 0, out.stderr
    assert "loss" in out.stdout and "conv1" in out.stdout and "NaN in conv1" in out.stdout
    out = vizdebug_cli(["show", str(logdir / "theirs")], cli_env)
    assert out.returncode == 0, out.stderr
    assert "train/loss" in out.stdout and "histograms" in out.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["runs", "/no/such/dir"], "not a directory"),
        (["show", "/no/such/run"], "does not exist"),
        (["frobnicate"], "invalid choice"),
        (["demo", "--epochs", "many"], "invalid int"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(
    args: list[str], needle: str, cli_env: dict[str, str]
) -> None:
    out = vizdebug_cli(args, cli_env)
    assert out.returncode == 2
    assert needle in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "Traceback" not in out.stderr


def test_help_everywhere(cli_env: dict[str, str]) -> None:
    for args in (["--help"], ["runs", "--help"], ["show", "--help"], ["demo", "--help"]):
        out = vizdebug_cli(args, cli_env)
        assert out.returncode == 0 and "usage" in out.stdout

"""The PyTorch overhead benchmark still runs and pairs every tool with a bare neighbour."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_torch_benchmark_runs_and_reports_paired_ratios(cli_env: dict[str, str]) -> None:
    tools = "bare,bare (A/A),vizdebug default"
    cmd = [sys.executable, str(REPO / "benchmarks" / "bench_torch.py"), "--blocks", "2",
           "--block", "50", "--models", "cnn", "--tools", tools, "--no-rss"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, env=cli_env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = {
        line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
        for line in out.stdout.splitlines()
        if line.startswith("| ") and not line.startswith("| tool")
    }
    assert set(rows) == {"bare", "bare (A/A)", "vizdebug default"}
    # the bare row is its own neighbour; the others are ratios against theirs
    assert rows["bare"][1] == "1.00x"
    for tool in ("bare (A/A)", "vizdebug default"):
        ratio = float(rows[tool][1].removesuffix("x"))
        assert 0.3 < ratio < 3.0, (tool, rows[tool])
        assert float(rows[tool][0]) > 0  # ms per step
    assert "each slice next to a bare slice" in out.stdout

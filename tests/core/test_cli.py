from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vizdebug import Writer
from vizdebug.stats import reference_stats


def vizdebug_cli(
    args: list[str], env: dict[str, str], columns: int = 200
) -> subprocess.CompletedProcess[str]:
    """Run the CLI with its output to a pipe (as in ``vizdebug show RUN | grep ...``)."""
    return subprocess.run(
        [sys.executable, "-m", "vizdebug.cli", *args],
        capture_output=True,
        text=True,
        env={**env, "COLUMNS": str(columns)},
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
        (["demo", "--nan-at", "-5"], "must be at least 0, got -5"),
        (["demo", "--epochs", "0"], "must be at least 1, got 0"),
        (["demo", "--nan-at", "x"], "invalid int"),
        (["demo", "--no-tui", "--epochs", "1", "--nan-at", "29"], "from 0 to 28 (1 epochs)"),
        (["show", "/no/such/\x1b]0;title\x07run"], "\\x1b]0;title\\x07run does not exist"),
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
    assert "\x1b" not in out.stderr


def test_help_everywhere(cli_env: dict[str, str]) -> None:
    for args in (["--help"], ["runs", "--help"], ["show", "--help"], ["demo", "--help"]):
        out = vizdebug_cli(args, cli_env)
        assert out.returncode == 0 and "usage" in out.stdout


# --- output for pipes, JSON, non-finite values, hostile names, counts (issues 23 and 24) ------

LONG_RUN = "20261207-211500-a-rather-long-hostname.example.org-experiment-42"
LONG_MODULE = "encoder.blocks.11.mid_dense_projection_with_a_long_name"
HOSTILE = {
    "title": "t\x1b]0;PWNED-TITLE\x07x",
    "clear": "\x1b[2Jwipe",
    "rlo": "layer\u202egnp.exe",
}


@pytest.fixture
def odd_logdir(tmp_path: Path) -> Path:
    """A run with long names, an all-NaN tensor, NaN scalars, hostile names and markup."""
    root = tmp_path / "logs"
    nan_stats = reference_stats(np.full((2, 3), np.nan, dtype=np.float32))
    with Writer(root / LONG_RUN, framework="torch") as w:
        for step in range(4):
            w.scalar("update_ratio/fc", float("nan") if step >= 2 else 0.01 * (step + 1), step)
            w.scalar("all_nan", float("nan"), step)
            w.stats(LONG_MODULE, "grad", nan_stats, step)
            w.stats("fine", "output", reference_stats(np.arange(6.0)), step)
            for name in HOSTILE.values():
                w.stats(name, "output", reference_stats(np.ones(3)), step)
        w.anomaly(
            "nan",
            module=HOSTILE["title"],
            phase="[/oops]",
            message="NaN first in [bold]" + HOSTILE["clear"] + " " + "word " * 50 + "THE-END",
            step=3,
        )
    return root


def _row(out: str, name: str) -> list[str]:
    line = next(line for line in out.splitlines() if name in line)
    return [cell.strip() for cell in line.split("│")[1:-1]]


def test_pipe_at_80_columns_keeps_full_names(odd_logdir: Path, cli_env: dict[str, str]) -> None:
    runs = vizdebug_cli(["runs", str(odd_logdir)], cli_env, columns=80)
    assert runs.returncode == 0, runs.stderr
    assert LONG_RUN in runs.stdout and "…" not in runs.stdout
    show = vizdebug_cli(["show", str(odd_logdir / LONG_RUN)], cli_env, columns=80)
    assert show.returncode == 0, show.stderr
    assert "…" not in show.stdout
    assert [line for line in show.stdout.splitlines() if "mid_dense" in line]  # | grep mid_dense
    assert _row(show.stdout, LONG_MODULE)[0] == LONG_MODULE
    assert str(odd_logdir / LONG_RUN) in show.stdout
    # Anomaly messages are not cut (they were at 160 columns).
    assert "THE-END" in show.stdout and "word " * 50 in show.stdout


def test_all_nan_statistics_are_dashes_never_zero_or_nan(
    odd_logdir: Path, cli_env: dict[str, str]
) -> None:
    out = vizdebug_cli(["show", str(odd_logdir / LONG_RUN)], cli_env).stdout
    cells = _row(out, LONG_MODULE)
    # module, role, step, shape, min, max, mean, std, l2, zeros, nan/inf
    assert cells[1:4] == ["grad", "3", "[2, 3]"]
    assert cells[4:9] == ["-"] * 5, cells
    assert cells[10] == "6"
    fine = _row(out, "│ fine")
    assert fine[4:9] == ["0", "5", "2.5", "1.708", "7.416"]
    # Scalars: min/max over the finite points; a NaN point is shown as NaN and counted.
    ratio = _row(out, "│ update_ratio/fc ")
    assert ratio[4:] == ["NaN", "0.01", "0.02", "2"], ratio
    assert _row(out, "│ all_nan ")[4:] == ["NaN", "-", "-", "4"]
    tables = out.replace(str(odd_logdir), "").replace("NaN", "").replace("nan/inf", "")
    assert "nan" not in tables.replace("all_nan", "")


def test_hostile_names_and_markup_reach_the_pipe_escaped(
    odd_logdir: Path, cli_env: dict[str, str]
) -> None:
    (odd_logdir / LONG_RUN).rename(odd_logdir / HOSTILE["title"])
    for args in (["runs", str(odd_logdir)], ["show", str(odd_logdir / HOSTILE["title"])]):
        out = vizdebug_cli(args, cli_env)
        assert out.returncode == 0, out.stderr
        assert "Traceback" not in out.stderr and "MarkupError" not in out.stderr
        for bad in ("\x1b", "\x07", "\u202e"):
            assert bad not in out.stdout and bad not in out.stderr
        assert "t\\x1b]0;PWNED-TITLE\\x07x" in out.stdout
    assert "\\x1b[2Jwipe" in out.stdout and "layer\\u202egnp.exe" in out.stdout
    assert "[/oops]" in out.stdout and "NaN first in [bold]\\x1b[2Jwipe" in out.stdout


def test_json_summaries_parse_and_say_what_the_tables_say(
    odd_logdir: Path, cli_env: dict[str, str]
) -> None:
    out = vizdebug_cli(["runs", "--json", str(odd_logdir)], cli_env)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["schema"] == 1 and doc["logdir"] == str(odd_logdir)
    (run,) = doc["runs"]
    assert run["name"] == LONG_RUN and run["framework"] == "torch"
    assert (run["steps"], run["recorded"], run["anomalies"], run["dropped"]) == (4, 4, 1, 0)
    assert run["warnings"] == [] and run["live"] is False

    out = vizdebug_cli(["show", "--json", str(odd_logdir / LONG_RUN)], cli_env)
    assert out.returncode == 0, out.stderr
    assert "\x1b" not in out.stdout and "\u202e" not in out.stdout  # JSON escapes them
    doc = json.loads(out.stdout)
    assert (doc["steps"], doc["recorded"], doc["events"]) == (4, 4, run["events"])
    stats = {(s["module"], s["role"]): s for s in doc["stats"]}
    nan_row = stats[(LONG_MODULE, "grad")]
    assert nan_row["nan"] == 6 and nan_row["numel"] == 6
    assert [nan_row[k] for k in ("min", "max", "mean", "std", "l2")] == [None] * 5
    assert stats[("fine", "output")]["max"] == 5.0
    assert HOSTILE["rlo"] in {s["module"] for s in doc["stats"]}  # data as stored
    scalars = {s["tag"]: s for s in doc["scalars"]}
    assert scalars["update_ratio/fc"]["last"] == "NaN"
    assert scalars["update_ratio/fc"]["nonfinite"] == 2
    assert scalars["all_nan"]["min"] is None
    (anomaly,) = doc["anomalies"]
    assert anomaly["phase"] == "[/oops]" and anomaly["message"].endswith("THE-END")


def test_dropped_is_readable_text(tmp_path: Path, cli_env: dict[str, str]) -> None:
    run_dir = tmp_path / "logs" / "r"
    with Writer(run_dir, framework="torch") as w:
        w.scalar("loss", 1.0, 0)
    (info_path,) = run_dir.glob("run*.json")
    info = json.loads(info_path.read_text())
    info["dropped"] = {"snapshot": 1, "stats": 2}
    info["sinks"] = {"visdom": {"dropped": 3}}
    info_path.write_text(json.dumps(info))
    out = vizdebug_cli(["show", str(run_dir)], cli_env).stdout
    assert _row(out, "│ dropped ")[0].split(None, 1)[1] == "6 (snapshot 1, stats 2, visdom sink 3)"
    assert "{" not in out
    runs = vizdebug_cli(["runs", str(tmp_path / "logs")], cli_env).stdout
    assert "6 (snapshot 1, stats 2, visdom sink 3)" in runs
    doc = json.loads(vizdebug_cli(["runs", "--json", str(tmp_path / "logs")], cli_env).stdout)
    assert doc["runs"][0]["dropped_by"] == {"snapshot": 1, "stats": 2, "visdom sink": 3}


TRAIN = """
import sys, torch, vizdebug
from torch import nn
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
with vizdebug.watch(model, opt, logdir=sys.argv[1], every=1) as watch:
    for _ in range(int(sys.argv[2])):
        opt.zero_grad()
        loss = model(torch.randn(3, 4)).pow(2).mean()
        loss.backward()
        opt.step()
        watch.step(loss=loss)
"""


def _counts(root: Path, run: Path, env: dict[str, str]) -> tuple[int, int, int, int]:
    runs = json.loads(vizdebug_cli(["runs", "--json", str(root)], env).stdout)["runs"][0]
    show = json.loads(vizdebug_cli(["show", "--json", str(run)], env).stdout)
    assert (runs["steps"], runs["recorded"], runs["events"]) == (
        show["steps"],
        show["recorded"],
        show["events"],
    )
    assert runs["warnings"] == show["warnings"]
    table = vizdebug_cli(["show", str(run)], env).stdout
    listing = vizdebug_cli(["runs", str(root)], env).stdout
    steps_row = _row(table, "│ steps")[0].split()
    assert steps_row == ["steps", str(show["steps"])]
    assert _row(listing, f"│ {run.name} ")[2] == str(runs["steps"])
    return runs["steps"], runs["recorded"], runs["events"], len(runs["warnings"])


@pytest.mark.slow
def test_a_real_torch_run_of_n_steps_says_n_everywhere(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    root = tmp_path / "logs"
    run = root / "run"
    subprocess.run(
        [sys.executable, "-c", TRAIN, str(run), "4"], env=cli_env, check=True, timeout=300
    )
    steps, recorded, events, warnings = _counts(root, run, cli_env)
    assert (steps, recorded, warnings) == (4, 4, 0)

    # Cut the event file short: fewer events, both commands warn, and they still agree.
    (events_file,) = run.glob("*tfevents*")
    data = events_file.read_bytes()
    events_file.write_bytes(data[: len(data) * 6 // 10])
    steps2, _, events2, warnings2 = _counts(root, run, cli_env)
    assert events2 < events and warnings2 >= 1 and steps2 <= 4
    show = vizdebug_cli(["show", str(run)], cli_env).stdout
    runs = vizdebug_cli(["runs", str(root)], cli_env).stdout
    assert "not read whole" in show and "cut short" in show
    assert "not read whole" in runs and "cut short" in runs


def test_terminal_output_folds_long_names_instead_of_cutting_them(odd_logdir: Path) -> None:
    import io

    from rich.console import Console

    from vizdebug.ui.console import print_run

    out = io.StringIO()
    console = Console(file=out, width=80, force_terminal=True, color_system=None)
    print_run(str(odd_logdir / LONG_RUN), console)
    rows = [line.split("│")[1:-1] for line in out.getvalue().splitlines() if "│" in line]
    first = "".join(cells[0].strip() for cells in rows if cells)
    last = "".join(cells[-1].strip() for cells in rows if cells)
    assert "…" not in out.getvalue()
    assert LONG_MODULE in first  # folded onto several lines, every character kept
    assert "THE-END" in last
    assert "\x1b]" not in out.getvalue() and "\u202e" not in out.getvalue()


def test_one_unreadable_run_does_not_hide_the_others(logdir: Path, cli_env: dict[str, str]) -> None:
    bad = logdir / "bad"
    with Writer(bad, framework="torch") as w:
        w.scalar("loss", 1.0, 0)
    (info_path,) = bad.glob("run*.json")
    info_path.write_text("[" * 200_000)  # deep JSON: RecursionError in a naive reader
    for args in (["runs", str(logdir)], ["runs", "--json", str(logdir)]):
        out = vizdebug_cli(args, cli_env)
        assert out.returncode == 0, out.stderr
        assert "Traceback" not in out.stderr
        assert "mine" in out.stdout and "theirs" in out.stdout and "bad" in out.stdout
    out = vizdebug_cli(["show", str(bad)], cli_env)
    assert "Traceback" not in out.stderr
    assert out.returncode in (0, 2) and len(out.stderr.strip().splitlines()) <= 1, out.stderr


@pytest.mark.slow
def test_demo_run_counts_the_steps_it_trained(tmp_path: Path, cli_env: dict[str, str]) -> None:
    run = tmp_path / "logs" / "demo"
    out = vizdebug_cli(["demo", "--no-tui", "--epochs", "1", "--logdir", str(run)], cli_env)
    assert out.returncode == 0, out.stderr
    assert "trained 29 steps" in out.stdout
    assert _row(out.stdout, "│ steps ")[0].split() == ["steps", "29"]
    doc = json.loads(vizdebug_cli(["runs", "--json", str(run.parent)], cli_env).stdout)
    assert doc["runs"][0]["steps"] == 29 and doc["runs"][0]["warnings"] == []

"""torch.compile: a watched compiled model trains bit-identically, without recompiles, records
every parameter's statistics and traces a NaN by an eager replay (see vizdebug/torch/compiled.py).

Each run is a subprocess with ``TORCH_LOGS=recompiles``: dynamo's own log says whether the watch
made it recompile. Inductor compiles for real (its cache makes later runs quicker).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vizdebug.runs import load_run

HERE = Path(__file__).parent

pytestmark = pytest.mark.slow


def _train(mode: str, logdir: Path, *more: str) -> tuple[str, str]:
    env = dict(os.environ, TORCH_LOGS="recompiles", PYTHONPATH=str(HERE.parents[1]))
    done = subprocess.run(
        [sys.executable, str(HERE / "compile_train.py"), mode, str(logdir), *more],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])["digest"], done.stderr


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The unwatched compiled model's weights after training."""
    return _train("bare", tmp_path_factory.mktemp("bare"))[0]


@pytest.mark.parametrize("mode", ["watch-first", "compile-first"])
def test_a_watched_compiled_model_trains_identically_without_recompiles(
    tmp_path: Path, mode: str, bare: str
) -> None:
    watched, stderr = _train(mode, tmp_path / "run")
    assert watched == bare
    assert "Recompiling" not in stderr and "recompile_limit" not in stderr, stderr[-2000:]
    run = load_run(tmp_path / "run")
    by_step: dict[int, set[tuple[str, str]]] = {}
    for s in run.stats:
        by_step.setdefault(s.step, set()).add((s.name, s.role))
    assert sorted(by_step) == [0, 3, 6, 9]
    for rows in by_step.values():
        for name in ("0.weight", "1.bias", "4.weight"):
            assert {(name, "weight"), (name, "grad"), (name, "update")} <= rows


def test_a_nan_in_a_compiled_model_is_traced_to_its_module(tmp_path: Path) -> None:
    _, stderr = _train("compile-first", tmp_path, "5")
    assert "Recompiling" not in stderr
    first = load_run(tmp_path).anomalies[0]
    assert (first.step, first.module, first.phase) == (5, "3", "forward")

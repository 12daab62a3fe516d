"""Shared fixtures: every test writes under its own tmp_path and never to ./runs."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated_logdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("VIZDEBUG_LOGDIR", str(tmp_path / "default-runs"))
    monkeypatch.delenv("VIZDEBUG_SINKS", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    yield


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """Environment for running the CLI in a subprocess."""
    env = dict(os.environ)
    env["VIZDEBUG_LOGDIR"] = str(tmp_path / "default-runs")
    env["PYTHONPATH"] = str(REPO)
    env.pop("VIZDEBUG_SINKS", None)
    return env


@pytest.fixture
def python() -> str:
    return sys.executable

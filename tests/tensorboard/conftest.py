"""Fixtures: a small vizdebug run written by the real Writer, and a real TensorBoard serving it."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
from tbrun import Fixture, Server, start_tensorboard, wait_for, write_run


@pytest.fixture(scope="session")
def run_fixture(tmp_path_factory: pytest.TempPathFactory) -> Fixture:
    """A log directory holding one two-rank vizdebug run."""
    return write_run(tmp_path_factory.mktemp("tb-logdir"))


@pytest.fixture(scope="session")
def tensorboard_server(
    run_fixture: Fixture, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A real TensorBoard over :func:`run_fixture`'s log directory, ready to serve."""
    log = tmp_path_factory.mktemp("tb-server") / "tensorboard.log"
    proc, url = start_tensorboard(run_fixture.logdir, log)
    try:
        wait_for(f"{url}/data/plugins_listing", proc, log)
        yield Server(url=url, fixture=run_fixture, log=log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

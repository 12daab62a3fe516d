"""A real Visdom server on a free loopback port, started and stopped by the tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from visdom_helpers import VisdomServer, free_port


@pytest.fixture
def visdom_server(tmp_path: Path) -> Iterator[VisdomServer]:
    server = VisdomServer(free_port(), tmp_path / "visdom-envs", tmp_path / "visdom.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()

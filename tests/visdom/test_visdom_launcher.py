"""``python -m vizdebug_visdom.server``: where the page's files are looked for, and without them."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
from visdom_helpers import VisdomServer, free_port
from vizdebug_visdom.server import REQUIRED, missing_files, static_dir


def test_static_dir_follows_the_environment(tmp_path: Path) -> None:
    assert static_dir({"VIZDEBUG_VISDOM_STATIC": str(tmp_path)}) == tmp_path
    cache = static_dir({"XDG_CACHE_HOME": str(tmp_path)})
    assert cache.parent == tmp_path / "vizdebug" and cache.name.startswith("visdom-static-")
    assert missing_files(tmp_path) == list(REQUIRED)


def test_without_the_page_files_the_api_works_and_the_server_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIZDEBUG_VISDOM_STATIC", str(tmp_path / "empty"))  # the server inherits it
    server = VisdomServer(free_port(), tmp_path / "envs", tmp_path / "visdom.log")
    server.start()  # it answered the API (/env_state)
    try:
        # tornado 6.6 no longer refuses the whole page for visdom's ../user/style.css link
        with urllib.request.urlopen(server.url + "/", timeout=10) as response:
            assert response.status == 200
    finally:
        server.stop()
    log = (tmp_path / "visdom.log").read_text()
    assert "run scripts/setup-visdom-static.sh" in log and str(tmp_path / "empty") in log

"""Helpers for the Visdom tests: a real Visdom server process and readers of its windows."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

# `python -m visdom.server` downloads scripts from CDNs first and fails offline. vizdebug's
# launcher runs visdom's own main() with -bind_local (loopback only), the page's files from
# scripts/setup-visdom-static.sh, and tornado 6.6's refusal of `../user/style.css` handled.
_START = "vizdebug_visdom.server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class VisdomServer:
    """One Visdom server process; :meth:`stop` and :meth:`start` reuse the same port."""

    def __init__(self, port: int, env_path: Path, log_path: Path) -> None:
        self.port = port
        self.env_path = env_path
        self.log_path = log_path
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        self.env_path.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable, "-m", _START,
            "-port", str(self.port),
            "-bind_local",
            "-env_path", str(self.env_path),
            "-logging_level", "WARNING",
        ]  # fmt: skip
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"visdom server exited with {self.proc.returncode}: "
                    f"{self.log_path.read_text(errors='replace')[-2000:]}"
                )
            try:
                self.post("/env_state", {})
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"visdom server did not answer on port {self.port} in {timeout} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def post(self, path: str, payload: dict[str, Any]) -> str:
        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            return str(response.read().decode())

    def envs(self) -> list[str]:
        return list(json.loads(self.post("/env_state", {})))

    def windows(self, env: str) -> dict[str, Any]:
        """Every window of an environment by id (the server's own JSON)."""
        try:
            return dict(json.loads(self.post("/win_data", {"eid": env, "win": None})))
        except urllib.error.HTTPError:
            return {}

    def by_title(self, env: str) -> dict[str, dict[str, Any]]:
        return {w["title"]: w for w in self.windows(env).values()}


def traces(window: dict[str, Any]) -> dict[str, tuple[list[Any], list[Any]]]:
    """A line window's lines by name: (x, y)."""
    return {t["name"]: (t["x"], t["y"]) for t in window["content"]["data"]}

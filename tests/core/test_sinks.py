from __future__ import annotations

import sys
from pathlib import Path

import pytest

from vizdebug import SinkNotFoundError, Writer
from vizdebug.runs import load_run
from vizdebug.sinks import available_sinks

PLUGIN = """
EVENTS = []

class ListSink:
    name = "listsink"
    def __init__(self, context):
        self.context = context
    def write(self, events):
        EVENTS.extend(events)
    def flush(self):
        pass
    def close(self):
        EVENTS.append("closed:" + self.context.run)

def make(context):
    return ListSink(context)
"""


@pytest.fixture
def third_party_sink(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A third-party package, installed only as a dist-info on sys.path."""
    site = tmp_path / "site"
    dist = site / "thirdparty_sink-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-sink\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[vizdebug.sinks]\nlistsink = thirdparty_sink:make\n")
    (site / "thirdparty_sink.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(site))
    yield site
    sys.modules.pop("thirdparty_sink", None)


def test_entry_point_sink_by_argument(third_party_sink: Path, tmp_path: Path) -> None:
    assert "listsink" in available_sinks()
    with Writer(tmp_path / "run", sinks=["listsink"]) as w:
        w.scalar("x", 1.0)
    import thirdparty_sink  # type: ignore[import-not-found]

    values = [e for e in thirdparty_sink.EVENTS if not isinstance(e, str)]
    assert any(getattr(e, "tag", None) == "x" for e in values)
    assert thirdparty_sink.EVENTS[-1] == "closed:run"


def test_entry_point_sink_by_environment(
    third_party_sink: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIZDEBUG_SINKS", "listsink")
    with Writer(tmp_path / "envrun") as w:
        w.scalar("y", 2.0)
        status = [s.name for s in w.sink_status]
    assert status == ["rundir", "listsink"]


def test_unknown_sink_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SinkNotFoundError, match="unknown sink 'nosuch'"):
        Writer(tmp_path, sinks=["nosuch"])
    with pytest.raises(TypeError, match="list of names"):
        Writer(tmp_path, sinks="visdom")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="write"):
        Writer(tmp_path, sinks=[object()])  # type: ignore[list-item]
    assert not any("tfevents" in p.name for p in tmp_path.iterdir())  # nothing half-started
    assert load_run  # the reader is importable alongside

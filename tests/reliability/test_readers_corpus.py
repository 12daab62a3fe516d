"""A corpus of corrupt and hostile run directories through every reader: 0 tracebacks, 0 hangs.

The corpus is generated from a real run (scalars, statistics, an anomaly, a snapshot, a
structure and notes, one record a step): truncated, bit-flipped and zero-filled copies,
crafted records (JSON that is a list, a string, 100k deep, fields of the wrong type, markup,
a snapshot path out of the run, a valid-checksum length of 2^40), run.json files of wrong
types, too deep, too big, a FIFO and a link to /dev/zero, event files that are FIFOs or
devices. Each case goes through ``load_run``, ``vizdebug show`` and ``vizdebug runs`` (real
subprocesses with timeouts), the TUI (Textual pilot) and every TensorBoard plugin route.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, types_pb2

import vizdebug
from vizdebug.events import ModuleInfo
from vizdebug.runs import load_run
from vizdebug.runs.records import _HEADER, encode_record, masked_crc
from vizdebug.stats import reference_stats

STEPS = 30
#: Steps whose events precede every damage the corpus makes (damage starts past half the file).
SAFE_STEPS = 8


def make_base(run_dir: Path) -> Path:
    """A real run: one record a step, so damage in the middle leaves steps on both sides."""
    rng = np.random.default_rng(0)
    with vizdebug.Writer(run_dir, framework="torch", flush_secs=60) as w:
        w.structure("torch", [ModuleInfo(name="", type="Net", params=10)])
        for step in range(STEPS):
            w.scalar("loss", 1.0 / (step + 1), step)
            w.stats("net.fc", "output", reference_stats(rng.standard_normal(64)), step)
            if step == 20:
                w.anomaly("nan", step=step, module="net.fc", phase="forward", message="NaN")
                w.snapshot({"x": np.ones(4, np.float32)}, step, reason="anomaly")
            w.flush()
    return run_dir


def event_file(run_dir: Path) -> Path:
    return next(p for p in run_dir.iterdir() if "tfevents" in p.name)


def _record(kind: str, payload: bytes, *, content: bytes | None = None, step: int = 5) -> bytes:
    meta = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(
            plugin_name="vizdebug",
            content=content if content is not None else json.dumps({"kind": kind}).encode(),
        )
    )
    tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[payload])
    value = summary_pb2.Summary.Value(tag=f"vizdebug/{kind}", metadata=meta, tensor=tensor)
    ev = event_pb2.Event(step=step, wall_time=1.0, summary=summary_pb2.Summary(value=[value]))
    return encode_record(ev.SerializeToString())


def _stats_record(header: bytes, matrix: bytes) -> bytes:
    meta = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(
            plugin_name="vizdebug", content=b'{"kind":"stats"}'
        )
    )
    tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[header, matrix])
    value = summary_pb2.Summary.Value(tag="vizdebug/stats", metadata=meta, tensor=tensor)
    ev = event_pb2.Event(step=6, wall_time=1.0, summary=summary_pb2.Summary(value=[value]))
    return encode_record(ev.SerializeToString())


DEEP = b"[" * 100_000 + b"]" * 100_000
ANOMALY = {"kind": "nan", "module": "m", "phase": "forward"}

#: Crafted records, each inserted in the middle of the file: name -> record bytes.
CRAFTED: dict[str, bytes] = {
    "anomaly-json-list": _record("anomaly", b"[1, 2, 3]"),
    "anomaly-json-string": _record("anomaly", b'"just a string"'),
    "anomaly-deep-json": _record("anomaly", DEEP),
    "anomaly-not-json": _record("anomaly", b"\xff\xfe{"),
    "anomaly-phase-int": _record("anomaly", json.dumps({**ANOMALY, "phase": 7}).encode()),
    "anomaly-module-list": _record("anomaly", json.dumps({**ANOMALY, "module": [1]}).encode()),
    "anomaly-markup": _record(
        "anomaly", json.dumps({**ANOMALY, "phase": "[/oops]", "module": "[bold]x[/]"}).encode()
    ),
    "anomaly-nan-count-str": _record("anomaly", json.dumps({**ANOMALY, "nan": "9"}).encode()),
    "snapshot-escape": _record(
        "snapshot", json.dumps({"path": "../../etc/passwd", "tensors": ["x"]}).encode()
    ),
    "snapshot-absolute": _record(
        "snapshot", json.dumps({"path": "/etc/passwd", "tensors": ["x"]}).encode()
    ),
    "snapshot-tensors-str": _record(
        "snapshot", json.dumps({"path": "snapshots/a.safetensors", "tensors": "x"}).encode()
    ),
    "snapshot-nbytes-float": _record(
        "snapshot", json.dumps({"path": "s.safetensors", "tensors": [], "nbytes": 1.5}).encode()
    ),
    "structure-modules-ints": _record("structure", b'{"framework":"torch","modules":[1,2]}'),
    "structure-shapes-str": _record(
        "structure",
        b'{"framework":"t","modules":[{"name":"a","type":"L","output_shapes":"x"}]}',
    ),
    "run-info-versions-list": _record("run_info", b'{"versions":[1],"argv":"x"}'),
    "note-text-dict": _record("note", b'{"tag":"t","text":{"a":1}}'),
    "metadata-list": _record("anomaly", b"{}", content=b"[1]"),
    "metadata-deep": _record("anomaly", b"{}", content=DEEP),
    "stats-header-list": _stats_record(b"[1,2]", b""),
    "stats-rows-wrong": _stats_record(b'{"v":1,"bins":2,"rows":[[1,2,3]]}', b""),
    "stats-matrix-size": _stats_record(
        b'{"v":1,"bins":2,"rows":[["a","output",0,"float32",[2]]]}', b"\0" * 24
    ),
    "stats-nan-counts": _stats_record(
        b'{"v":1,"bins":0,"rows":[["a","output",0,"float32",[2]]]}',
        np.full(14, np.nan).tobytes(),
    ),
    "stats-bins-huge": _stats_record(b'{"v":1,"bins":1e300,"rows":[]}', b""),
    "protobuf-garbage": encode_record(b"\xff" * 64),
    "huge-valid-length": (
        (1 << 40).to_bytes(8, "little")
        + masked_crc((1 << 40).to_bytes(8, "little")).to_bytes(4, "little")
    ),
}


def _insert_middle(path: Path, record: bytes) -> None:
    data = path.read_bytes()
    # a record boundary near the middle: walk the records
    offset, cut = 0, 0
    while offset + 12 <= len(data):
        length, _ = _HEADER.unpack_from(data, offset)
        offset += 12 + length + 4
        if offset >= len(data) // 2:
            cut = offset
            break
    path.write_bytes(data[:cut] + record + data[cut:])


def _mutate_bytes(path: Path, fn: Callable[[bytearray], None]) -> None:
    data = bytearray(path.read_bytes())
    fn(data)
    path.write_bytes(bytes(data))


def _flip(seed: int) -> Callable[[bytearray], None]:
    def fn(data: bytearray) -> None:
        rnd = random.Random(seed)
        for _ in range(3):
            i = rnd.randrange(len(data) // 2, len(data))
            data[i] ^= 1 << rnd.randrange(8)

    return fn


def _zero(lo: float, hi: float) -> Callable[[bytearray], None]:
    def fn(data: bytearray) -> None:
        a, b = int(len(data) * lo), int(len(data) * hi)
        data[a:b] = bytes(b - a)

    return fn


def _truncate(frac: float) -> Callable[[bytearray], None]:
    def fn(data: bytearray) -> None:
        del data[int(len(data) * frac) :]

    return fn


def _info(run_dir: Path, text: str | bytes) -> None:
    path = run_dir / "run.json"
    path.unlink()
    path.write_bytes(text.encode() if isinstance(text, str) else text)


def _replace_with(path: Path, make: Callable[[Path], None]) -> None:
    path.unlink()
    make(path)


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _link(target: str) -> Callable[[Path], None]:
    return lambda path: path.symlink_to(target)


#: Cases: name -> (mutation of a fresh copy of the base run, events before the damage remain).
CASES: dict[str, Callable[[Path], None]] = {}


def _damage(fn: Callable[[bytearray], None]) -> Callable[[Path], None]:
    return lambda d: _mutate_bytes(event_file(d), fn)


def _inserted(record: bytes) -> Callable[[Path], None]:
    return lambda d: _insert_middle(event_file(d), record)


def _fifo_snapshots(d: Path) -> None:
    for p in (d / "snapshots").iterdir():
        _replace_with(p, _fifo)


for _frac in (0.55, 0.7, 0.93, 0.999):
    CASES[f"truncated-{_frac}"] = _damage(_truncate(_frac))
for _seed in range(6):
    CASES[f"bit-flips-{_seed}"] = _damage(_flip(_seed))
CASES["zero-filled-middle"] = lambda d: _mutate_bytes(event_file(d), _zero(0.5, 0.6))
CASES["zero-filled-tail"] = lambda d: _mutate_bytes(event_file(d), _zero(0.8, 1.0))
for _name, _rec in CRAFTED.items():
    CASES[f"crafted-{_name}"] = _inserted(_rec)
CASES["info-wrong-types"] = lambda d: _info(
    d,
    json.dumps(
        {
            "framework": 3,
            "last_step": "x",
            "dropped": [1],
            "sinks": [2],
            "versions": [1],
            "events": None,
            "pid": "1",
            "status": {"a": 1},
            "anomalies": 1.5,
        }
    ),
)
CASES["info-sinks-field-types"] = lambda d: _info(
    d, json.dumps({"sinks": {"rundir": {"dropped": "7", "written": []}}, "dropped": {"x": "1"}})
)
CASES["info-list"] = lambda d: _info(d, "[1, 2]")
CASES["info-deep"] = lambda d: _info(d, DEEP)
CASES["info-huge"] = lambda d: _info(d, b'{"a": "' + b"x" * (5 << 20) + b'"}')
CASES["info-not-json"] = lambda d: _info(d, b"\xff\x00{{{")
CASES["info-fifo"] = lambda d: _replace_with(d / "run.json", _fifo)
CASES["info-dev-zero"] = lambda d: _replace_with(d / "run.json", _link("/dev/zero"))
CASES["events-fifo"] = lambda d: _fifo(d / "events.out.tfevents.1.h.1.vizdebug-r1")
CASES["events-dev-zero"] = lambda d: _link("/dev/zero")(d / "events.out.tfevents.2.h.2.vizdebug-r2")
CASES["events-dev-urandom"] = lambda d: _link("/dev/urandom")(
    d / "events.out.tfevents.3.h.3.vizdebug-r3"
)
CASES["events-directory"] = lambda d: (d / "events.out.tfevents.4.h.4.vizdebug-r4").mkdir()
CASES["events-dangling-link"] = lambda d: _link(str(d / "nowhere"))(
    d / "events.out.tfevents.5.h.5.vizdebug-r5"
)
CASES["snapshot-file-is-fifo"] = _fifo_snapshots


def build(root: Path, names: list[str]) -> Path:
    """A log directory holding one damaged copy of the base run per case."""
    import shutil

    base = make_base(root / "_base")
    for name in names:
        shutil.copytree(base, root / name, symlinks=True)
        CASES[name](root / name)
    shutil.rmtree(base)
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A log directory holding one damaged copy of the base run per case."""
    return build(tmp_path_factory.mktemp("corpus"), sorted(CASES))


def _steps_before_damage(name: str) -> int:
    """Steps whose records must survive: every case damages only the second half."""
    if name.startswith(("info-", "events-", "snapshot-")):
        return STEPS
    return SAFE_STEPS


@pytest.mark.parametrize("name", sorted(CASES))
def test_load_run_is_total(corpus: Path, name: str) -> None:
    run = load_run(corpus / name)
    steps = {e.step for e in run.scalars.get("loss", [])}
    assert set(range(_steps_before_damage(name))) <= steps, f"events lost: {sorted(steps)}"
    if name.startswith(("crafted-", "bit-flips", "zero-")) and name != "crafted-anomaly-markup":
        # the damage is named, with its file and offset
        assert run.problems, "the damage was not reported"
        assert all(p.path and p.message for p in run.problems)
    if name.startswith("zero-filled-middle") or name.startswith("crafted-"):
        assert STEPS - 1 in steps, "events after the damage were lost"
    if name == "crafted-huge-valid-length":
        assert any("limit" in p.message for p in run.problems)
    if name == "crafted-anomaly-markup":
        assert any(a.phase == "[/oops]" for a in run.anomalies)  # kept as data
    if name.startswith("crafted-snapshot"):
        assert all(s.path.startswith("snapshots/") for s in run.snapshots)
    if name in ("info-fifo", "info-dev-zero", "info-huge", "info-deep", "info-list"):
        assert run.problems and not run.info
    if name == "info-wrong-types":
        (info,) = run.info
        assert "dropped" not in info and "last_step" not in info and "framework" not in info
    if name.startswith("events-") and name != "events-dangling-link":
        assert any("regular file" in p.message for p in run.problems)


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vizdebug.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,  # a hang fails the test
        env={**os.environ, "COLUMNS": "200"},
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.slow
def test_show_every_case_without_traceback(corpus: Path) -> None:
    failures = []
    for name in sorted(CASES):
        result = _cli("show", str(corpus / name))
        if result.returncode != 0 or "Traceback" in result.stderr + result.stdout:
            failures.append(f"{name}: rc={result.returncode} {result.stderr[-400:]}")
        elif name == "crafted-anomaly-markup":
            assert "[/oops]" in result.stdout  # data, not markup
    assert not failures, "\n".join(failures)


def test_runs_lists_every_case(corpus: Path) -> None:
    result = _cli("runs", str(corpus))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    for name in CASES:
        assert name[:20] in result.stdout.replace("…", ""), f"{name} missing from the table"


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.asyncio
async def test_tui_opens_every_case(corpus: Path) -> None:
    from vizdebug.tui.app import VizdebugApp
    from vizdebug.tui.widgets import RunsList

    app = VizdebugApp(corpus)  # discovery summarizes every case for the runs list
    async with app.run_test(size=(140, 40)) as pilot:
        runs = app.run_screen.query_one(RunsList)
        for _ in range(1200):  # 60 s at most: a hang fails here
            if len(runs.entries) == len(CASES) and any(e.steps for e in runs.entries):
                break
            await pilot.pause(0.05)
        else:
            raise AssertionError(f"the runs list never filled: {len(runs.entries)} entries")
        for name in sorted(CASES):
            app.run_screen.open_run(corpus / name)
            for _ in range(600):
                store = app.store
                if store is not None and store.path == corpus / name and app.run_screen.loaded:
                    break
                await pilot.pause(0.05)
            else:
                raise AssertionError(f"{name}: the TUI never finished loading")
            await pilot.press("end", "left", "home", "a", "s", "t", "1")
            await pilot.pause(0.05)
            assert app.store is not None
            assert len(app.store.steps) >= _steps_before_damage(name), name
            assert app._exception is None, f"{name}: {app._exception!r}"
    assert app._exception is None, repr(app._exception)


def _plugin(listed: Path, logdir: Path) -> Any:
    from tensorboard.backend.event_processing import data_ingester as ingester
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from vizdebug_tensorboard.plugin import VizdebugLoader

    mux = plugin_event_multiplexer.EventMultiplexer(
        size_guidance=ingester.DEFAULT_SIZE_GUIDANCE,
        tensor_size_guidance=ingester.DEFAULT_TENSOR_SIZE_GUIDANCE,
    )
    mux.AddRunsFromDirectory(str(listed))
    mux.Reload()
    context = base_plugin.TBContext(
        logdir=str(logdir),
        multiplexer=mux,
        data_provider=data_provider.MultiplexerDataProvider(mux, str(listed)),
    )
    return VizdebugLoader().load(context)


@pytest.mark.slow
def test_plugin_routes_never_500(corpus: Path) -> None:
    """Every route on every damaged run, read by the plugin from the files.

    TensorBoard's own loader (with TensorFlow installed, TensorFlow's record reader) raises
    or even crashes on some of these files, so the run list comes from a multiplexer over
    undamaged copies of the same names while the plugin reads the damaged directory.
    """
    from werkzeug.test import Client

    clean = corpus.parent / f"{corpus.name}-clean"
    if not clean.exists():
        import shutil

        base = make_base(clean / "_base")
        for name in CASES:
            shutil.copytree(base, clean / name)
        shutil.rmtree(base)
    plugin = _plugin(clean, corpus)
    apps = plugin.get_plugin_apps()
    prefix = "/data/plugin/vizdebug"

    def get(route: str, **params: Any) -> Any:
        response = Client(apps[route]).get(prefix + route, query_string=params)
        assert response.status_code in (200, 400, 404), (route, params, response.get_data())
        return response.get_json()

    listed = {r["name"]: r for r in get("/runs")["runs"]}
    assert set(listed) == set(CASES)
    assert all("error" not in r for r in listed.values()), listed
    for name in sorted(listed):
        for role in ("output", "grad"):
            get("/heatmap", run=name, role=role, stat="l2")
        get("/anomalies", run=name)
        get("/module", run=name, name="net.fc", role="output")
        get("/module", run=name, name="[/oops]", role="output")
    for path in ("index.js", "x" * 5000, "../" * 50 + "etc/passwd", "%00", "a/" * 3000):
        response = Client(apps["/static/*"]).get(f"{prefix}/static/{path}")
        assert response.status_code in (200, 404), (path[:40], response.status_code)


def test_snapshot_references_are_confined(tmp_path: Path) -> None:
    from vizdebug.runs.snapshots import load_snapshot, snapshot_path

    run_dir = make_base(tmp_path / "run")
    (ref,) = load_run(run_dir).snapshots
    assert load_snapshot(Path(ref.path), run_dir=run_dir)["x"].tolist() == [1, 1, 1, 1]
    for bad in ("../../etc/passwd", "/etc/passwd", "snapshots/../../x"):
        with pytest.raises(ValueError, match="not inside the run directory"):
            snapshot_path(run_dir, bad)
    (run_dir / "snapshots" / "evil.safetensors").symlink_to("/etc/passwd")
    with pytest.raises(ValueError, match="not inside"):
        load_snapshot(Path("snapshots/evil.safetensors"), run_dir=run_dir)
    os.mkfifo(run_dir / "snapshots" / "fifo.safetensors")
    with pytest.raises(OSError, match="FIFO"):
        load_snapshot(run_dir / "snapshots" / "fifo.safetensors")


def test_plugin_runs_route_survives_a_run_that_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection: the readers no longer raise on any file, so a reader that raises
    anyway (a bug to come) is injected; /runs still lists the others and names the failure."""
    from werkzeug.test import Client

    from vizdebug.runs.reader import RunReader

    for name in ("good", "bad"):
        make_base(tmp_path / name)
    real_poll = RunReader.poll

    def poll(self: RunReader) -> list[Any]:
        if self.name == "bad":
            raise RuntimeError("injected")
        return real_poll(self)

    monkeypatch.setattr(RunReader, "poll", poll)
    plugin = _plugin(tmp_path, tmp_path)
    response = Client(plugin.get_plugin_apps()["/runs"]).get("/data/plugin/vizdebug/runs")
    assert response.status_code == 200
    runs = {r["name"]: r for r in response.get_json()["runs"]}
    assert runs["good"]["last_step"] == STEPS - 1 and "error" not in runs["good"]
    assert "injected" in runs["bad"]["error"] and runs["bad"]["ranks"] == [0]

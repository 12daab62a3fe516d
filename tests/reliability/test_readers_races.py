"""Runs that cannot be read, files deleted while read, files rewritten under the same name."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import vizdebug
from vizdebug.runs import RunReader, find_runs, load_run
from vizdebug.runs.summary import summarize

REPO = Path(__file__).resolve().parents[2]


def _write_run(run_dir: Path, steps: int = 10, start: int = 0) -> Path:
    with vizdebug.Writer(run_dir) as w:
        for step in range(start, start + steps):
            w.scalar("loss", float(step), step)
    return run_dir


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory an unprivileged user can enter (pytest's tmp_path is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="vizdebug-perm-"))
    path.chmod(0o755)
    yield path
    for p in path.rglob("*"):
        if not p.is_symlink():
            p.chmod(0o755 if p.is_dir() else 0o644)
    shutil.rmtree(path)


def _drop_dac() -> None:
    """In the child: give up root's right to read any file (CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH leave the bounding set, so the exec'd program obeys file modes)."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "cannot drop capabilities")


def _unprivileged(*args: str) -> subprocess.CompletedProcess[str]:
    """Run a command that obeys file modes (root otherwise reads files whatever their mode)."""
    try:
        return subprocess.run(
            args,
            capture_output=True,
            text=True,
            timeout=120,
            preexec_fn=_drop_dac,
            env={
                **os.environ,
                "PYTHONPATH": os.environ.get("PYTHONPATH", str(REPO)),
                "COLUMNS": "200",
            },
            stdin=subprocess.DEVNULL,
        )
    except subprocess.SubprocessError as exc:
        pytest.skip(f"cannot run a process that obeys file modes here: {exc}")


def test_unreadable_run_is_listed_with_its_reason(shared_dir: Path) -> None:
    logdir = shared_dir / "runs"
    _write_run(logdir / "good")
    _write_run(logdir / "locked")
    _write_run(logdir / "locked-file")
    for p in (logdir / "locked-file").iterdir():
        p.chmod(0)
    (logdir / "locked").chmod(0)
    logdir.chmod(0o755)
    for p in (logdir / "good", logdir / "good" / "run.json"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    for p in (logdir / "good").iterdir():
        p.chmod(0o644)
    (logdir / "locked-file").chmod(0o755)

    runs = _unprivileged(sys.executable, "-m", "vizdebug.cli", "runs", str(logdir))
    assert runs.returncode == 0, runs.stderr
    assert "Traceback" not in runs.stdout + runs.stderr
    assert "No runs under" not in runs.stdout
    for name in ("good", "locked", "locked-file"):
        assert name in runs.stdout

    show = _unprivileged(sys.executable, "-m", "vizdebug.cli", "show", str(logdir / "locked"))
    assert show.returncode == 2 and "Traceback" not in show.stderr
    assert "cannot read the run" in show.stderr and len(show.stderr.strip().splitlines()) == 1

    script = (
        "import sys\n"
        "from vizdebug.runs import find_runs, load_run\n"
        "from vizdebug.runs.reader import RunUnreadableError\n"
        "from vizdebug.runs.summary import summarize\n"
        "root = sys.argv[1]\n"
        "runs = find_runs(root)\n"
        "print('found', sorted(p.name for p in runs))\n"
        "for p in runs:\n"
        "    s = summarize(p)\n"
        "    print('summary', p.name, s.steps, len(s.problems))\n"
        "try:\n"
        "    load_run(root + '/locked')\n"
        "except RunUnreadableError as exc:\n"
        "    print('unreadable', exc)\n"
        "run = load_run(root + '/locked-file')\n"
        "print('problems', [p.message for p in run.problems])\n"
    )
    out = _unprivileged(sys.executable, "-c", script, str(logdir))
    assert out.returncode == 0, out.stderr
    assert "found ['good', 'locked', 'locked-file']" in out.stdout
    assert "summary good 10 0" in out.stdout
    assert "summary locked 0 1" in out.stdout
    assert "unreadable cannot read the run" in out.stdout and "Permission denied" in out.stdout
    assert "problems ['cannot read: Permission denied'" in out.stdout


def test_files_deleted_and_recreated_while_read(tmp_path: Path) -> None:
    """A thread deletes and recreates every file of a run while it is read over and over."""
    source = _write_run(tmp_path / "source", steps=200)
    run_dir = tmp_path / "runs" / "churn"
    shutil.copytree(source, run_dir)
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            for p in list(run_dir.iterdir()) if run_dir.exists() else []:
                try:
                    if p.is_dir():
                        shutil.rmtree(p)
                    else:
                        p.unlink()
                except FileNotFoundError:
                    pass
            shutil.copytree(source, run_dir, dirs_exist_ok=True)
            time.sleep(0.002)  # let the reader find whole runs too, not only half-deleted ones

    thread = threading.Thread(target=churn)
    thread.start()
    errors: list[BaseException] = []
    reads = 0
    missing: list[str] = []
    try:
        for _ in range(300):
            try:
                run = load_run(run_dir)
                summarize(run_dir)
                find_runs(run_dir.parent)
                reads += 1
                assert all(p.message for p in run.problems)
            except vizdebug.RunNotFoundError as exc:
                missing.append(str(exc))  # between a delete and the copy: typed, one line
            except BaseException as exc:  # anything else is a failure of totality
                errors.append(exc)
    finally:
        stop.set()
        thread.join()
    assert not errors, errors[:3]
    assert reads > 0, missing[:3]


def test_tail_notices_a_file_rewritten_under_the_same_name(tmp_path: Path) -> None:
    run_dir = _write_run(tmp_path / "run", steps=5)
    reader = RunReader(run_dir)
    first = [e.step for e in reader.poll() if getattr(e, "tag", "") == "loss"]
    assert first == [0, 1, 2, 3, 4]
    (path,) = [p for p in run_dir.iterdir() if "tfevents" in p.name]
    other = _write_run(tmp_path / "other", steps=3, start=100)
    (new,) = [p for p in other.iterdir() if "tfevents" in p.name]
    shutil.copyfile(new, path)  # same name, same inode, new content (shorter)
    again = [e.step for e in reader.poll() if getattr(e, "tag", "") == "loss"]
    assert again == [100, 101, 102]
    assert any("rewritten" in p.message for p in reader.problems)
    # and a file replaced by a longer one under the same name (a new inode)
    bigger = _write_run(tmp_path / "bigger", steps=20, start=200)
    (big,) = [p for p in bigger.iterdir() if "tfevents" in p.name]
    tmp = path.with_suffix(".new")
    shutil.copyfile(big, tmp)
    os.replace(tmp, path)
    third = [e.step for e in reader.poll() if getattr(e, "tag", "") == "loss"]
    assert third == list(range(200, 220))

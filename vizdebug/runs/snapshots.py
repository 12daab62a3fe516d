"""Tensor snapshots: safetensors files beside the event files (never pickle)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .problems import open_regular

__all__ = [
    "load_snapshot",
    "save_snapshot",
    "snapshot_name",
    "snapshot_path",
    "to_numpy",
]


def to_numpy(value: Any) -> npt.NDArray[Any]:
    """Convert a framework tensor (torch, TensorFlow) or array-like to a numpy array.

    bfloat16 and other dtypes numpy lacks are upcast to float32.
    """
    if hasattr(value, "detach"):  # torch
        t = value.detach()
        if t.dtype.is_floating_point and t.element_size() < 4:
            t = t.float()
        return np.asarray(t.cpu().numpy())
    if hasattr(value, "numpy") and not isinstance(value, np.ndarray):  # tensorflow
        value = value.numpy()
    arr = np.asarray(value)
    if arr.dtype.kind == "V" or arr.dtype.name == "bfloat16":
        arr = arr.astype(np.float32)
    return arr


def snapshot_name(step: int, rank: int, reason: str) -> str:
    """Relative path of a snapshot file in a run directory."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in reason) or "snapshot"
    return f"snapshots/step-{step:07d}-r{rank}-{safe}.safetensors"


def save_snapshot(
    run_dir: Path, relpath: str, tensors: Mapping[str, Any], *, max_bytes: int
) -> tuple[tuple[str, ...], int]:
    """Write tensors to ``run_dir/relpath``, keeping the first ones that fit in ``max_bytes``.

    Returns:
        The names written and their total size in bytes.
    """
    from safetensors.numpy import save_file

    kept: dict[str, npt.NDArray[Any]] = {}
    total = 0
    for name, value in tensors.items():
        arr = np.ascontiguousarray(to_numpy(value))
        if total + arr.nbytes > max_bytes:
            continue
        kept[name] = arr
        total += arr.nbytes
    path = run_dir / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        save_file(kept, str(path))
    except Exception as exc:
        path.unlink(missing_ok=True)  # a partial file on a full disk: give its space back
        if not isinstance(exc, OSError) and "I/O error" in str(exc):  # safetensors' own type
            raise OSError(f"cannot write {relpath}: {exc}") from exc
        raise
    return tuple(kept), total


def snapshot_path(run_dir: Path, relpath: str) -> Path:
    """Where a snapshot reference points, confined to its run directory.

    Raises:
        ValueError: The reference is absolute or leads out of the run directory (``..``, or a
            link inside the directory that points out of it).
    """
    root = Path(run_dir).resolve()
    path = (root / relpath).resolve()
    if Path(relpath).is_absolute() or not path.is_relative_to(root):
        raise ValueError(f"snapshot path {relpath[:80]!r} is not inside the run directory")
    return path


def load_snapshot(path: Path, *, run_dir: Path | None = None) -> dict[str, npt.NDArray[Any]]:
    """Read a snapshot file into numpy arrays.

    Args:
        path: The file; with ``run_dir``, a path relative to it (see :func:`snapshot_path`).
        run_dir: The run directory the file must be inside.

    Raises:
        ValueError: The path leads out of ``run_dir``.
        OSError: The file cannot be read, is a link, or is not a regular file (a FIFO, a
            device); ``NotRegularFileError`` then.
    """
    from safetensors.numpy import load

    if run_dir is not None:
        path = snapshot_path(run_dir, str(path))
    with open_regular(path, follow=False) as f:
        data = f.read()
    loaded = load(data)
    # the same order every time (safetensors hands its tensors over in hash order): the
    # file's own layout, by data offset
    layout = _layout(data)
    return {name: loaded[name] for name in sorted(loaded, key=lambda n: layout.get(n, (-1, n)))}


def _layout(data: bytes) -> dict[str, tuple[int, str]]:
    """Each tensor's ``(data offset, name)`` in a safetensors file (names alone if unreadable)."""
    try:
        size = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + size])
        return {
            k: (int(v["data_offsets"][0]), k)
            for k, v in header.items()
            if k != "__metadata__" and isinstance(v, dict)
        }
    except (ValueError, KeyError, TypeError, IndexError):
        return {}

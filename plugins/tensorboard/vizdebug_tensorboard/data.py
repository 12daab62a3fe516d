"""What the dashboard shows, computed from a run's packed statistics and anomalies.

:class:`RankData` accumulates one rank of one run: the fixed statistic columns of every packed
``vizdebug/stats`` block (float32, histogram counts dropped), the latest histogram of every
tensor, and the anomalies. Queries are vectorized over all steps at once, and their answers
hold only JSON-safe values (:func:`jsonable`: NaN becomes ``None``, infinities become the
strings ``"Infinity"`` and ``"-Infinity"``).

A statistic over a tensor with no finite values (its packed row holds 0 there) is NaN: the
dashboard shows a dash, never 0. Heatmap cells carry :data:`FLAGS` besides their value, so the
frontend colours NaN and infinities as what they are whatever statistic is shown.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from vizdebug.events import Anomaly, Event
from vizdebug.runs.codec import StatsBlock
from vizdebug.stats import COLUMNS

from .metadata import STAT_COLUMNS

__all__ = ["FLAGS", "RankData", "jsonable", "label_of"]

_COL = {name: i for i, name in enumerate(COLUMNS)}
_NFIX = len(COLUMNS)
_F32 = npt.NDArray[np.float32]

#: Bits of a heatmap cell's flag (OR-ed over the steps a column holds).
FLAGS: dict[str, int] = {"recorded": 1, "nan": 2, "posinf": 4, "neginf": 8, "no_finite": 16}
#: Statistics of the finite values: undefined (NaN) for a tensor with none.
_OF_FINITE = ("l2", "mean", "std", "min", "max", "absmax")


def label_of(name: str, call: int) -> str:
    """How a tensor is named on the dashboard: ``name``, or ``name#call`` for later calls."""
    return name if call == 0 else f"{name}#{call}"


def jsonable(value: Any) -> Any:
    """``value`` with NaN as ``None`` and infinities as strings, for ``allow_nan=False`` JSON."""
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def _no_finite(fixed: _F32) -> npt.NDArray[np.bool_]:
    """Rows of a tensor with values, none of them finite (unknown counts, NaN, never match)."""
    c = _COL
    numel = fixed[:, c["numel"]]
    finite = numel - fixed[:, c["nan"]] - fixed[:, c["posinf"]] - fixed[:, c["neginf"]]
    return np.asarray((numel > 0) & (finite <= 0))


def _flags(fixed: _F32) -> npt.NDArray[np.int64]:
    """Each row's :data:`FLAGS`."""
    c = _COL
    out = np.full(len(fixed), FLAGS["recorded"], dtype=np.int64)
    for name in ("nan", "posinf", "neginf"):
        out |= np.where(fixed[:, c[name]] > 0, FLAGS[name], 0)
    out |= np.where(_no_finite(fixed), FLAGS["no_finite"], 0)
    return out


def _column(fixed: _F32, stat: str) -> _F32:
    column = _raw_column(fixed, stat)
    if stat in _OF_FINITE:
        return np.where(_no_finite(fixed), np.float32(np.nan), column)
    return column


def _raw_column(fixed: _F32, stat: str) -> _F32:
    c = _COL
    if stat in c:
        return fixed[:, c[stat]]
    if stat == "absmax":
        return np.fmax(np.abs(fixed[:, c["min"]]), np.abs(fixed[:, c["max"]]))
    if stat == "nonfinite":
        return fixed[:, c["nan"]] + fixed[:, c["posinf"]] + fixed[:, c["neginf"]]
    if stat == "zero_fraction":
        with np.errstate(divide="ignore", invalid="ignore"):
            return fixed[:, c["zeros"]] / fixed[:, c["numel"]]
    raise ValueError(f"unknown statistic {stat!r}")


@dataclass
class RankData:
    """Everything the dashboard needs from one rank of one run."""

    keys: dict[tuple[str, str], int] = field(default_factory=dict)
    anomalies: list[Anomaly] = field(default_factory=list)
    last_step: int = -1
    #: Latest wall time seen (seconds), to tell the most recent run.
    last_wall_time: float = 0.0
    blocks: int = 0
    _chunks: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], _F32]] = field(
        default_factory=list
    )
    _all: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], _F32] | None = None
    _hist: dict[int, tuple[int, float, float, npt.NDArray[np.float64]]] = field(
        default_factory=dict
    )
    _rows_cache: tuple[tuple[Any, ...], npt.NDArray[np.int64]] | None = None
    _heat_cache: tuple[tuple[str, str, int, int], dict[str, Any]] | None = None

    def add(self, item: Event | StatsBlock) -> None:
        """Take one decoded item (other kinds than stats blocks and anomalies are ignored)."""
        if isinstance(item, StatsBlock):
            self._add_block(item)
        elif isinstance(item, Anomaly):
            self.anomalies.append(item)
            self.last_step = max(self.last_step, item.step)
            self.last_wall_time = max(self.last_wall_time, item.wall_time)

    def _add_block(self, block: StatsBlock) -> None:
        cache = self._rows_cache
        if cache is not None and cache[0] == block.rows:
            idx = cache[1]
        else:
            keys = self.keys
            idx = np.array(
                [
                    keys.setdefault((label_of(n, c), r), len(keys))
                    for n, r, c, _dtype, _shape in block.rows
                ],
                dtype=np.int64,
            )
            self._rows_cache = (block.rows, idx)
        steps = np.full(len(idx), block.step, dtype=np.int64)
        self._chunks.append((idx, steps, block.matrix[:, :_NFIX].astype(np.float32)))
        counts = block.matrix[:, _NFIX:].copy()
        lo, hi = block.matrix[:, _COL["hist_lo"]], block.matrix[:, _COL["hist_hi"]]
        for i, k in enumerate(idx.tolist()):
            self._hist[k] = (block.step, float(lo[i]), float(hi[i]), counts[i])
        self.blocks += 1
        self.last_step = max(self.last_step, block.step)
        self.last_wall_time = max(self.last_wall_time, block.wall_time)

    def _arrays(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], _F32]:
        if self._chunks:
            parts = ([self._all] if self._all is not None else []) + self._chunks
            self._all = (
                np.concatenate([p[0] for p in parts]),
                np.concatenate([p[1] for p in parts]),
                np.concatenate([p[2] for p in parts]),
            )
            self._chunks = []
        if self._all is None:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, _NFIX), np.float32)
        return self._all

    def roles(self) -> list[str]:
        """Roles with statistics, in first-recorded order."""
        return list(dict.fromkeys(role for _label, role in self.keys))

    def _values(
        self, role: str, stat: str
    ) -> tuple[list[str], npt.NDArray[Any], Any, Any, npt.NDArray[np.int64]]:
        """Row labels, and per recorded value: its row, its step, the statistic, its flags."""
        idx, steps, fixed = self._arrays()
        nkeys = len(self.keys)
        key_row = np.full(nkeys, -1, dtype=np.int64)
        labels: list[str] = []
        want = "update" if stat == "update_ratio" else role
        for (label, r), k in self.keys.items():
            if r == want:
                key_row[k] = len(labels)
                labels.append(label)
        if stat == "update_ratio":
            values = self._ratios(idx, steps, fixed, key_row)
        else:
            values = _column(fixed, stat)
        rows = key_row[idx] if nkeys else np.zeros(0, np.int64)
        keep = rows >= 0
        return labels, rows[keep], steps[keep], values[keep], _flags(fixed)[keep]

    def _ratios(self, idx: Any, steps: Any, fixed: _F32, key_row: Any) -> _F32:
        partner = np.full(len(self.keys), -1, dtype=np.int64)
        for (label, r), k in self.keys.items():
            if r == "update":
                partner[k] = self.keys.get((label, "weight"), -1)
        l2 = _column(fixed, "l2")
        out = np.full(len(idx), np.nan, dtype=np.float32)
        # Weight and update of one name are recorded at the same step: match on (key, step).
        wkey = idx.astype(np.int64) * (1 << 32) + steps
        order = np.argsort(wkey, kind="stable")
        sorted_keys = wkey[order]
        upd = np.nonzero(partner[idx] >= 0)[0]
        target = partner[idx[upd]] * (1 << 32) + steps[upd]
        pos = np.searchsorted(sorted_keys, target)
        pos = np.minimum(pos, len(sorted_keys) - 1)
        found = sorted_keys[pos] == target
        w = l2[order[pos[found]]]
        with np.errstate(divide="ignore", invalid="ignore"):
            out[upd[found]] = l2[upd[found]] / np.where(w == 0, np.nan, w)
        return out

    def heatmap(self, role: str, stat: str, max_cols: int) -> dict[str, Any]:
        """Names x steps, one statistic; steps beyond ``max_cols`` share a column.

        A shared column shows the largest value of its steps (the smallest for ``min``);
        ``flags`` holds each cell's :data:`FLAGS`, OR-ed over its steps (0: nothing recorded).
        """
        cache_key = (role, stat, max_cols, self.blocks)
        if self._heat_cache is not None and self._heat_cache[0] == cache_key:
            return self._heat_cache[1]
        labels, rows, steps, values, flags = self._values(role, stat)
        uniq = np.unique(steps)
        ncols = min(len(uniq), max_cols)
        grid = np.full((len(labels), ncols), np.nan, dtype=np.float64)
        cell_flags = np.zeros((len(labels), ncols), dtype=np.int64)
        if len(uniq):
            col = np.searchsorted(uniq, steps) * ncols // len(uniq)
            np.bitwise_or.at(cell_flags, (rows, col), flags)
            finite_or_inf = ~np.isnan(values)
            r, c, v = rows[finite_or_inf], col[finite_or_inf], values[finite_or_inf]
            order = np.argsort(-v if stat == "min" else v, kind="stable")
            grid[r[order], c[order]] = v[order]  # the last write per cell wins: the extreme
        starts = [int(uniq[i * len(uniq) // ncols]) for i in range(ncols)] if ncols else []
        answer = {
            "role": role,
            "stat": stat,
            "names": labels,
            "steps": starts,
            "last_step": int(uniq[-1]) if len(uniq) else -1,
            "values": jsonable(grid.tolist()),
            "flags": cell_flags.tolist(),
            "flag_bits": FLAGS,
        }
        self._heat_cache = (cache_key, answer)  # answers are never mutated
        return answer

    def module(self, label: str, role: str, max_points: int) -> dict[str, Any] | None:
        """Every statistic of one tensor over the steps, and its latest histogram."""
        key = self.keys.get((label, role))
        if key is None:
            return None
        idx, steps, fixed = self._arrays()
        sel = np.nonzero(idx == key)[0]
        if len(sel) > max_points:
            stride = math.ceil(len(sel) / max_points)
            sel = np.concatenate([sel[:-1:stride], sel[-1:]])
        series = {s: _column(fixed[sel], s).astype(np.float64).tolist() for s in STAT_COLUMNS}
        hist = self._hist.get(key)
        histogram = None
        if hist is not None:
            step, lo, hi, counts = hist
            n = len(counts)
            edges = [lo + (hi - lo) * i / n for i in range(n + 1)] if n else []
            histogram = {"step": step, "edges": edges, "counts": counts.tolist()}
        answer: dict[str, Any] = jsonable(
            {
                "name": label,
                "role": role,
                "roles": [r for (lab, r) in self.keys if lab == label],
                "steps": steps[sel].tolist(),
                "series": series,
                "histogram": histogram,
            }
        )
        return answer

    def anomaly_list(self, limit: int) -> dict[str, Any]:
        """The anomalies in step order (the first ``limit``) and how many there are."""
        ordered = sorted(self.anomalies, key=lambda a: a.step)
        answer: dict[str, Any] = jsonable(
            {
                "total": len(ordered),
                "anomalies": [
                    {
                        "step": a.step,
                        "rank": a.rank,
                        "kind": a.kind,
                        "module": a.module,
                        "module_type": a.module_type,
                        "phase": a.phase,
                        "role": a.role,
                        "op": a.op,
                        "message": a.message,
                        "nan": a.nan,
                        "posinf": a.posinf,
                        "neginf": a.neginf,
                    }
                    for a in ordered[:limit]
                ],
            }
        )
        return answer

"""The TUI's pure parts: the packed store, index parsing and health checks."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import vizdebug
from vizdebug.stats import reference_stats
from vizdebug.tui.data import RunStore
from vizdebug.tui.health import fmt, problems, stat
from vizdebug.tui.widgets.tensor_inspector import default_index, parse_index


def test_store_keeps_stats_packed_and_matches_reference(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    arrays = {}
    with vizdebug.Writer(tmp_path / "r") as w:
        for step in range(5):
            for name in ("a", "b.c"):
                arrays[name, step] = rng.standard_normal(20) * (step + 1)
                w.stats(name, "output", reference_stats(arrays[name, step]), step=step)
            if step >= 2:  # a second row layout from step 2 on
                w.stats("b.c.weight", "weight", reference_stats(np.ones(3)), step=step)
            w.flush()
    store = RunStore(tmp_path / "r")
    store.poll()
    assert store.steps == [0, 1, 2, 3, 4]
    assert list(store.names) == ["a", "b.c", "b.c.weight"]
    assert len(store.segments) == 2
    series = store.series("b.c", "output", "std")
    assert series.steps.tolist() == [0, 1, 2, 3, 4]
    want = [reference_stats(arrays["b.c", s]).std for s in range(5)]
    np.testing.assert_allclose(series.values, want)
    at = store.at("a", "output", 3)
    assert at is not None and at.step == 3
    ref = reference_stats(arrays["a", 3])
    assert at.get("max") == ref.max
    assert at.hist.tolist() == list(ref.hist_counts)
    assert store.at("b.c.weight", "weight", 1) is None
    latest = store.at("b.c.weight", "weight")
    assert latest is not None and latest.step == 4
    assert store.poll().empty


def test_parse_index() -> None:
    shape = (2, 3, 4)
    assert default_index(shape) == "0, :, :"
    assert default_index((5,)) == ":"
    index, free = parse_index("1, 0:2, ::2", shape)
    assert index == (1, slice(0, 2), slice(None, None, 2)) and free == [1, 2]
    assert parse_index("1", shape)[1] == [1, 2]  # missing trailing entries are ":"
    assert parse_index("-1, 2, 3", shape) == ((-1, 2, 3), [])
    for bad, why in (
        (":, :, :", "left free"),
        ("2, :, :", "out of range"),
        ("x, :", "bad index"),
        ("0, 1:2:0", "step must be positive"),
        ("0, 0, 0, 0", "entries"),
    ):
        with pytest.raises(ValueError, match=why):
            parse_index(bad, shape)


def _latest(tmp_path: Path, values: np.ndarray, role: str = "output") -> object:
    run_dir = tmp_path / f"run{len(list(tmp_path.iterdir()))}"
    with vizdebug.Writer(run_dir) as w:
        w.stats("m", role, reference_stats(values), step=0)
    store = RunStore(run_dir)
    store.poll()
    return store.at("m", role)


def test_health_flags(tmp_path: Path) -> None:
    bad = np.array([1.0, math.nan, math.inf, 2e5])
    labels = [lbl for lbl, _ in problems(_latest(tmp_path, bad), "output")]  # type: ignore[arg-type]
    assert labels == ["NaN", "+Inf", "exploding"]
    dead = np.zeros(100)
    dead[0] = 1
    assert problems(_latest(tmp_path, dead), "output") == [("zeros", "warning")]  # type: ignore[arg-type]
    tiny = np.full(10, 1e-12)
    assert problems(_latest(tmp_path, tiny, "grad"), "grad") == [("vanishing", "warning")]  # type: ignore[arg-type]
    assert problems(_latest(tmp_path, np.ones(4), "weight"), "weight") == []  # type: ignore[arg-type]


def test_no_finite_values_are_a_dash_never_zero_or_vanishing(tmp_path: Path) -> None:
    all_nan = _latest(tmp_path, np.full(8, math.nan), "grad_output")
    assert all_nan.get("l2") == 0.0  # type: ignore[attr-defined]  # what the writer stored
    assert stat(all_nan, "l2") is None  # type: ignore[arg-type]
    assert fmt(stat(all_nan, "l2")) == "-"  # type: ignore[arg-type]
    assert problems(all_nan, "grad_output") == [("NaN", "nan")]  # type: ignore[arg-type]
    mixed = _latest(tmp_path, np.array([math.inf, -math.inf, math.nan]), "grad")
    assert [s for _, s in problems(mixed, "grad")] == ["nan", "posinf", "neginf"]  # type: ignore[arg-type]
    assert stat(mixed, "min") is None  # type: ignore[arg-type]
    assert stat(None, "mean") is None
    tiny_nan = _latest(tmp_path, np.array([0.0, 1e-12, math.nan]), "grad")
    assert problems(tiny_nan, "grad") == [("NaN", "nan")]  # type: ignore[arg-type]


def test_chart_buckets_keep_every_nonfinite_point_and_sort_by_step() -> None:
    from vizdebug.tui.widgets.line_chart import bucket

    steps = np.arange(1000)
    values = np.linspace(0.0, 1.0, 1000)
    values[[10, 500, 990]] = [np.nan, np.inf, -np.inf]
    vals, kinds, last = bucket(steps, values, 50)  # 20 points a column
    assert kinds.count("nan") == 1 and kinds.count("posinf") == 1 and kinds.count("neginf") == 1
    assert last[-1] == 999 and all(math.isfinite(v) for v in vals)  # means of the finite rest
    vals, kinds, last = bucket(np.array([5, 1, 3]), np.array([50.0, 10.0, 30.0]), 5)
    assert vals == [10.0, 10.0, 30.0, 30.0, 50.0] and last == [1, 1, 3, 3, 5]

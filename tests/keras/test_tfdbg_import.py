"""`vizdebug import-tfdbg`: a real Debugger V2 dump, made here, read back as a vizdebug run."""

from __future__ import annotations

from pathlib import Path

import pytest
import tensorflow as tf

from vizdebug.cli import main
from vizdebug.runs import load_run
from vizdebug.tfdbg import import_dump


def make_dump(root: Path, mode: str) -> None:
    tf.debugging.experimental.enable_dump_debug_info(
        str(root), tensor_debug_mode=mode, circular_buffer_size=-1
    )
    try:
        w = tf.Variable([[1.0], [2.0]])

        @tf.function
        def step(x: tf.Tensor) -> tf.Tensor:
            with tf.name_scope("dense"):
                h = tf.matmul(x, w)
            with tf.name_scope("head"):
                return tf.math.log(h)  # log of a negative number: NaN

        step(tf.constant([[1.0, 1.0]]))
        step(tf.constant([[-3.0, 1.0]]))
    finally:
        tf.debugging.experimental.disable_dump_debug_info()


def test_full_health_dump_via_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_dump(tmp_path / "dump", "FULL_HEALTH")
    assert main(["import-tfdbg", str(tmp_path / "dump"), "--logdir", str(tmp_path / "run")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "run")
    run = load_run(tmp_path / "run")
    (a,) = run.anomalies
    assert a.module == "head" and a.op.startswith("Log ") and a.nan == 1
    logs = [s for s in run.stats if s.name.endswith("head/Log:0")]
    # steps are top-level executions: two eager ops for the variable, then the two calls
    assert [(s.step, s.stats.numel, s.stats.nan, s.stats.dtype) for s in logs] == [
        (2, 1, 0, "float32"),
        (3, 1, 1, "float32"),
    ]
    assert a.step == 3
    assert [s.value for s in run.scalars["tfdbg/nonfinite_ops"]][-1] >= 1
    assert any("FULL_HEALTH" in n.text for n in run.notes)


def test_full_tensor_and_shape_dumps(tmp_path: Path) -> None:
    make_dump(tmp_path / "full", "FULL_TENSOR")
    run = load_run(import_dump(tmp_path / "full", logdir=tmp_path / "r1"))
    (mm,) = [s for s in run.stats if s.name.endswith("dense/MatMul:0") and s.step == 2]
    assert mm.stats.min == mm.stats.max == 3.0 and mm.stats.numel == 1
    assert run.anomalies[0].module == "head" and run.anomalies[0].nan == 1
    make_dump(tmp_path / "shape", "SHAPE")
    run = load_run(import_dump(tmp_path / "shape", logdir=tmp_path / "r2"))
    (structure,) = run.structures
    shapes = {m.name: m.output_shapes for m in structure.modules}
    assert shapes["head/Log"] == ((1, 1),)


def test_not_a_dump_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["import-tfdbg", str(tmp_path)]) == 2
    assert "not a Debugger V2 dump" in capsys.readouterr().err

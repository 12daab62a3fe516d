from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys
import vizdebug
w = vizdebug.Writer
from vizdebug.runs import load_run
import vizdebug.cli
heavy = sorted(m for m in ("torch", "tensorflow", "keras", "visdom") if m in sys.modules)
print(",".join(heavy))
"""


def test_import_vizdebug_loads_no_framework() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == ""


def test_public_api() -> None:
    import vizdebug

    assert vizdebug.__version__
    assert callable(vizdebug.Writer)
    assert issubclass(vizdebug.RunNotFoundError, vizdebug.VizdebugError)
    try:
        vizdebug.nope  # noqa: B018
    except AttributeError as exc:
        assert "nope" in str(exc)
    else:
        raise AssertionError("unknown attribute did not raise")

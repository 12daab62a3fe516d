"""Shared helpers for the PyTorch adapter tests."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.manual_seed(0)


torch.set_num_threads(1)  # steady test times on a shared 2-vCPU machine

"""Shared by every model test."""

from __future__ import annotations

import importlib.util

import pytest


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: the CI machine has two cores shared with other jobs, and these tiny ops
    only lose to thread hand-offs. Without torch (a runtime-only install running the metrics and
    dataset tests) there is nothing to limit."""
    if importlib.util.find_spec("torch") is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

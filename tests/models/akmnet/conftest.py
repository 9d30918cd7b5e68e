"""Shared by the AKMNet tests."""

import pytest


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: these tiny ops only lose to thread hand-offs on a shared CI machine."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

"""Tests marked ``gpu`` run only where the TensorRT backend can: elsewhere they are skipped with
the backend's own reason (which package to install, or why no CUDA device initializes).

A ``pytest_runtest_setup`` hook in a conftest applies to the tests of its folder only, so the
rule stays local to the backend tests.
"""

from __future__ import annotations

import pytest


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("gpu") is None:
        return
    from mestream.engine.backends.trt import TensorRTBackend

    reason = TensorRTBackend.unavailable()
    if reason is not None:
        pytest.skip(f"gpu test: {reason}")

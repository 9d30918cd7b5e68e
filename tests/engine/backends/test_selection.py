"""Choosing a backend: registered kinds, fallback with a message naming what is missing."""

from __future__ import annotations

import logging

import pytest

from mestream.engine.backends import (
    BackendError,
    BackendUnavailable,
    backend_kinds,
    open_subgraphs,
    select_backend,
)
from mestream.engine.backends.onnxrt import OnnxRuntimeBackend
from mestream.engine.config import InferenceConfig
from tests.engine.backends.fakebackends import ENTRY_POINTS, NeedsGpu
from tests.plugins import install_fake_plugin, on_path


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    on_path(monkeypatch, install_fake_plugin(tmp_path, ENTRY_POINTS))


def test_builtin_kinds_are_registered():
    assert {"onnxruntime", "tensorrt", "torch"} <= set(backend_kinds())


def test_unknown_kind_lists_the_kinds():
    with pytest.raises(
        BackendError, match=r"no backend kind 'onnx'; available: .*onnxruntime.*tensorrt.*torch"
    ):
        select_backend("onnx")


def test_unavailable_backend_falls_back_with_a_message(plugins, caplog):
    with caplog.at_level(logging.WARNING, logger="mestream.backends"):
        cls, note = select_backend("needsgpu")
    assert cls is OnnxRuntimeBackend
    assert (
        "backend 'needsgpu' cannot run here" in note and "mestream[gpu]" in note and "'onnxruntime'" in note
    )
    assert note in caplog.text


def test_unavailable_backend_without_fallback_is_an_error(plugins):
    with pytest.raises(BackendUnavailable, match=r"backend 'needsgpu' cannot run here: no CUDA device"):
        select_backend("needsgpu", fallback=False)
    assert NeedsGpu.unavailable()


def test_tensorrt_here_falls_back_naming_the_gpu_extra():
    from mestream.engine.backends.trt import TensorRTBackend

    if TensorRTBackend.unavailable() is None:
        pytest.skip("TensorRT runs on this machine")
    cls, note = select_backend("tensorrt")
    assert cls is OnnxRuntimeBackend and "tensorrt" in note
    with pytest.raises(BackendUnavailable, match="mestream\\[gpu\\]|CUDA"):
        select_backend("tensorrt", fallback=False)


def test_open_subgraphs_activates_every_shipped_subgraph_and_releases_on_error(monkeypatch):
    runners, note = open_subgraphs(InferenceConfig())
    try:
        assert note is None and set(runners) >= {"mesnet.encoder", "akmnet.encoder"}
        assert all(r.active and r.name == "onnxruntime" for r in runners.values())
    finally:
        for r in runners.values():
            r.deactivate()
    released = []
    original = OnnxRuntimeBackend.deactivate

    def record(self):
        released.append(self.key)
        original(self)

    def fail_on_crn(self):
        if self.key == "mesnet.crn":
            raise BackendError("boom")
        return original_activate(self)

    original_activate = OnnxRuntimeBackend.activate
    monkeypatch.setattr(OnnxRuntimeBackend, "deactivate", record)
    monkeypatch.setattr(OnnxRuntimeBackend, "activate", fail_on_crn)
    with pytest.raises(BackendError, match="boom"):
        open_subgraphs(InferenceConfig(), ["mesnet.encoder", "mesnet.window_head", "mesnet.crn"])
    assert released == ["mesnet.encoder", "mesnet.window_head"]

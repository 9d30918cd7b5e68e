"""The ONNX Runtime backend on tiny models the tests build: answers, buffer reuse, errors."""

from __future__ import annotations

import tracemalloc
from dataclasses import replace

import numpy as np
import pytest

from mestream.engine.backends import BackendError, InputError
from mestream.engine.backends.onnxrt import MAX_SHAPES, OnnxRuntimeBackend
from mestream.engine.config import InferenceConfig
from mestream.export.manifest import ManifestError, TensorInfo, file_sha256
from mestream.tests.engine.backends.tiny import tiny_manifest


@pytest.fixture
def doubler(tmp_path):
    return tiny_manifest(tmp_path, "Mul", [("x", ("batch", "time", 3), "float32")], constant=2.0,
                         dims={"time": (2, 4, 6)})


def test_answers_and_reuses_its_output_buffers(doubler):
    x = np.arange(24, dtype=np.float32).reshape(2, 4, 3)
    with OnnxRuntimeBackend(doubler, "tiny.op") as runner:
        first = runner.infer({"x": x})["y"]
        np.testing.assert_array_equal(first, x * 2)  # the first call of a shape answers too
        second = runner.infer({"x": x + 1})["y"]
        np.testing.assert_array_equal(second, (x + 1) * 2)
        assert second is first  # same array, overwritten: callers copy what they keep
        other = runner.infer({"x": np.ones((5, 6, 3), np.float32)})["y"]  # another batch and time
        assert other.shape == (5, 6, 3) and np.all(other == 2)
        np.testing.assert_array_equal(runner.infer({"x": x})["y"], x * 2)  # the first shape's buffers are kept


def test_no_output_allocation_in_steady_state(tmp_path):
    manifest = tiny_manifest(tmp_path, "Mul", [("x", ("batch", 1 << 16), "float32")])
    x = np.ones((16, 1 << 16), np.float32)  # 4 MiB of output per call
    with OnnxRuntimeBackend(manifest, "tiny.op") as runner:
        runner.infer({"x": x})
        tracemalloc.start()
        try:
            for _ in range(10):
                out = runner.infer({"x": x})["y"]
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert float(out[3, 7]) == 2.0
    assert peak < 1 << 20, f"{peak} bytes allocated while the output alone is 4 MiB"


def test_shape_cache_is_bounded(tmp_path):
    manifest = tiny_manifest(tmp_path, "Mul", [("x", ("batch", "time"), "float32")], dims={"time": (1, 8, 200)})
    with OnnxRuntimeBackend(manifest, "tiny.op") as runner:
        for t in range(1, MAX_SHAPES + 20):
            runner.infer({"x": np.ones((1, t), np.float32)})
        assert len(runner._bound) == MAX_SHAPES


@pytest.mark.parametrize("feed, needle", [
    ({"x": np.zeros((2, 4, 3), np.float64)}, r"model tiny.op: input 'x' must be float32 \(batch, time, 3\), got float64"),
    ({"x": np.zeros((2, 4, 5), np.float32)}, r"input 'x' has shape \(2, 4, 5\), expected \(batch 1..16, time 2..6, 3\)"),
    ({"x": np.zeros((2, 9, 3), np.float32)}, r"expected \(batch 1..16, time 2..6, 3\) \(axis 1: time\)"),
    ({"x": np.zeros((17, 4, 3), np.float32)}, r"axis 0: batch"),
    ({"x": np.zeros((4, 3), np.float32)}, r"must be float32 \(batch, time, 3\), got float32 \(4, 3\)"),
    ({"frames": np.zeros((2, 4, 3), np.float32)}, r"inputs \['frames'\] given, expected \['x'\]"),
    ({"x": [[1.0]]}, r"got list"),
])
def test_wrong_input_is_named(doubler, feed, needle):
    with OnnxRuntimeBackend(doubler, "tiny.op") as runner:
        with pytest.raises(InputError, match=needle):
            runner.infer(feed)


def test_two_inputs_must_agree_on_batch(tmp_path):
    manifest = tiny_manifest(tmp_path, "Add", [("a", ("batch", 2), "float32"), ("b", ("batch", 2), "float32")])
    with OnnxRuntimeBackend(manifest, "tiny.op") as runner:
        out = runner.infer({"a": np.ones((3, 2), np.float32), "b": np.full((3, 2), 2, np.float32)})["y"]
        assert np.all(out == 3)
        with pytest.raises(InputError, match="input 'b'"):
            runner.infer({"a": np.ones((3, 2), np.float32), "b": np.ones((2, 2), np.float32)})


def test_bool_inputs(tmp_path):
    manifest = tiny_manifest(tmp_path, "Identity", [("mask", ("batch", 4), "bool")])
    with OnnxRuntimeBackend(manifest, "tiny.op") as runner:
        mask = np.array([[True, False, True, True]])
        np.testing.assert_array_equal(runner.infer({"mask": mask})["y"], mask)


def test_lifecycle_is_guarded(doubler):
    runner = OnnxRuntimeBackend(doubler, "tiny.op", InferenceConfig(threads=2))
    with pytest.raises(BackendError, match="infer\\(\\) before activate\\(\\)"):
        runner.infer({"x": np.zeros((1, 4, 3), np.float32)})
    runner.activate()
    runner.activate()  # activating twice keeps the one session
    runner.warmup(batch=2)
    runner.deactivate()
    runner.deactivate()
    assert not runner.active


def test_modified_file_is_refused_before_loading(doubler):
    path = doubler.path("tiny.op")
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(ManifestError, match=r"model tiny.op: ONNX file .*tiny.op.onnx does not match its manifest"):
        OnnxRuntimeBackend(doubler, "tiny.op").activate()
    path.unlink()
    with pytest.raises(ManifestError, match=r"model tiny.op: ONNX file .* is missing"):
        OnnxRuntimeBackend(doubler, "tiny.op").activate()


def _with_stage(manifest, **changes):
    """The manifest with its one stage's fields replaced."""
    stage = replace(manifest.stage("tiny.op"), **changes)
    return replace(manifest, models={"tiny": replace(manifest.models["tiny"], stages=(stage,))})


def test_corrupt_file_is_named(tmp_path):
    manifest = tiny_manifest(tmp_path, "Mul")
    path = manifest.path("tiny.op")
    path.write_bytes(b"this is not protobuf" * 10)
    damaged = _with_stage(manifest, sha256=file_sha256(path))  # the hash matches: the export itself was bad
    with pytest.raises(BackendError, match=r"model tiny.op: onnxruntime cannot load .*tiny.op.onnx: the file is damaged"):
        OnnxRuntimeBackend(damaged, "tiny.op").activate()


def test_manifest_that_disagrees_with_the_file_is_named(tmp_path):
    manifest = tiny_manifest(tmp_path, "Mul", [("x", ("batch", 4), "float32")])
    wrong = _with_stage(manifest, inputs=(TensorInfo("flow", ("batch", 4), "float32"),))
    with pytest.raises(BackendError, match=r"model tiny.op: the ONNX file's inputs are \['x'\], the manifest says \['flow'\]"):
        OnnxRuntimeBackend(wrong, "tiny.op").activate()

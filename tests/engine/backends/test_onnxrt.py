"""The ONNX Runtime backend on tiny models the tests build: answers, buffer reuse, errors."""

from __future__ import annotations

import tracemalloc
from dataclasses import replace

import numpy as np
import pytest

from mestream.engine.backends import BackendError, InputError
from mestream.engine.backends.onnxrt import MAX_SHAPES, OnnxRuntimeBackend
from mestream.engine.config import InferenceConfig
from mestream.engine.manifest import ManifestError, TensorInfo, file_sha256
from tests.engine.backends.tiny import tiny_manifest


@pytest.fixture
def doubler(tmp_path):
    return tiny_manifest(
        tmp_path, "Mul", [("x", ("batch", "time", 3), "float32")], constant=2.0, dims={"time": (2, 4, 6)}
    )


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
        np.testing.assert_array_equal(
            runner.infer({"x": x})["y"], x * 2
        )  # the first shape's buffers are kept


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
    manifest = tiny_manifest(
        tmp_path, "Mul", [("x", ("batch", "time"), "float32")], dims={"time": (1, 8, 200)}
    )
    with OnnxRuntimeBackend(manifest, "tiny.op") as runner:
        for t in range(1, MAX_SHAPES + 20):
            runner.infer({"x": np.ones((1, t), np.float32)})
        assert len(runner._bound) == MAX_SHAPES


@pytest.mark.parametrize(
    "feed, needle",
    [
        (
            {"x": np.zeros((2, 4, 3), np.float64)},
            r"model tiny.op: input 'x' must be float32 \(batch, time, 3\), got float64",
        ),
        (
            {"x": np.zeros((2, 4, 5), np.float32)},
            r"input 'x' has shape \(2, 4, 5\), expected \(batch 1..16, time 2..6, 3\)",
        ),
        ({"x": np.zeros((2, 9, 3), np.float32)}, r"expected \(batch 1..16, time 2..6, 3\) \(axis 1: time\)"),
        ({"x": np.zeros((17, 4, 3), np.float32)}, r"axis 0: batch"),
        ({"x": np.zeros((4, 3), np.float32)}, r"must be float32 \(batch, time, 3\), got float32 \(4, 3\)"),
        ({"frames": np.zeros((2, 4, 3), np.float32)}, r"inputs \['frames'\] given, expected \['x'\]"),
        ({"x": [[1.0]]}, r"got list"),
        ({"x": 1.0}, r"got float \(no shape\)"),
        (
            {"x": np.zeros((2, 4, 3), ">f4")},
            r"must be float32 \(batch, time, 3\), got >f4 \(2, 4, 3\)",
        ),  # byte order
        ({"x": np.zeros((), np.float32)}, r"got float32 \(\)"),
        (
            {"x": np.zeros((0, 4, 3), np.float32)},
            r"has shape \(0, 4, 3\), expected \(batch 1\.\.16, .*\(axis 0: batch\)",
        ),
        ({"x": np.zeros((2, 1, 3), np.float32)}, r"\(axis 1: time\)"),  # below dims min
    ],
)
def test_wrong_input_is_named(doubler, feed, needle):
    with OnnxRuntimeBackend(doubler, "tiny.op") as runner:
        with pytest.raises(InputError, match=needle):
            runner.infer(feed)


def test_two_inputs_must_agree_on_batch(tmp_path):
    manifest = tiny_manifest(
        tmp_path, "Add", [("a", ("batch", 2), "float32"), ("b", ("batch", 2), "float32")]
    )
    with OnnxRuntimeBackend(manifest, "tiny.op") as runner:
        out = runner.infer({"a": np.ones((3, 2), np.float32), "b": np.full((3, 2), 2, np.float32)})["y"]
        assert np.all(out == 3)
        with pytest.raises(
            InputError,
            match=r"input 'b' has shape \(2, 2\), expected \(batch 1\.\.16, 2\) with batch 3 "
            r"as in input 'a' \(axis 0: batch\)",
        ):
            runner.infer({"a": np.ones((3, 2), np.float32), "b": np.ones((2, 2), np.float32)})


def test_two_inputs_must_agree_on_every_named_axis(tmp_path):
    """Both within their dims range but of different lengths: refused naming both inputs, not
    left to ONNX Runtime's broadcast error (which names neither the model nor the shape)."""
    manifest = tiny_manifest(
        tmp_path,
        "Add",
        [("a", ("batch", "time"), "float32"), ("b", ("batch", "time"), "float32")],
        dims={"time": (1, 4, 8)},
    )
    with OnnxRuntimeBackend(manifest, "tiny.op") as runner:
        with pytest.raises(
            InputError,
            match=r"model tiny\.op: input 'b' has shape \(2, 5\), expected .*with time 3 as "
            r"in input 'a' \(axis 1: time\)",
        ):
            runner.infer({"a": np.ones((2, 3), np.float32), "b": np.ones((2, 5), np.float32)})


def test_returned_dict_is_the_callers_own(doubler):
    """Replacing an entry of the returned dict (post-processing in place) must not make the
    next call return the caller's array instead of the fresh output."""
    x = np.ones((2, 4, 3), np.float32)
    with OnnxRuntimeBackend(doubler, "tiny.op") as runner:
        out = runner.infer({"x": x})
        out["y"] = out["y"] * 100
        del out["y"]
        np.testing.assert_array_equal(runner.infer({"x": x})["y"], x * 2)


def test_non_contiguous_inputs_and_evicted_outputs(tmp_path):
    """Strided and reversed views give the answers of their contiguous copies; outputs of a
    shape whose binding the LRU dropped stay readable (they are the caller's now)."""
    manifest = tiny_manifest(
        tmp_path, "Mul", [("x", ("batch", "time"), "float32")], dims={"time": (1, 8, 200)}
    )
    base = np.arange(2 * 16, dtype=np.float32).reshape(2, 16)
    with OnnxRuntimeBackend(manifest, "tiny.op") as runner:
        for view in (base[:, ::2], base[:, 1::2], base[:, ::-2], base[::-1, :8]):
            np.testing.assert_array_equal(runner.infer({"x": view})["y"], np.ascontiguousarray(view) * 2)
        held = runner.infer({"x": np.full((1, 1), 3, np.float32)})["y"]
        for t in range(2, MAX_SHAPES + 3):
            runner.infer({"x": np.ones((1, t), np.float32)})
        assert (1, 1) not in {k[0] for k in runner._bound}
        assert held.tolist() == [[6.0]]


def test_zero_d_input_stays_zero_d(tmp_path):
    manifest = tiny_manifest(tmp_path, "Mul", [("s", (), "float32")], constant=3.0)
    with OnnxRuntimeBackend(manifest, "tiny.op") as runner:
        for value in (np.array(2.0, np.float32), np.float32(2.0)):
            out = runner.infer({"s": value})["y"]
            assert out.shape == () and float(out) == 6.0


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
    with pytest.raises(
        ManifestError, match=r"model tiny.op: ONNX file .*tiny.op.onnx does not match its manifest"
    ):
        OnnxRuntimeBackend(doubler, "tiny.op").activate()
    path.unlink()
    with pytest.raises(ManifestError, match=r"model tiny.op: ONNX file .* is missing"):
        OnnxRuntimeBackend(doubler, "tiny.op").activate()


def _with_stage(manifest, **changes):
    """The manifest with its one subgraph's fields replaced."""
    subgraph = replace(manifest.subgraph("tiny.op"), **changes)
    return replace(manifest, models={"tiny": replace(manifest.models["tiny"], subgraphs=(subgraph,))})


def test_corrupt_file_is_named(tmp_path):
    manifest = tiny_manifest(tmp_path, "Mul")
    path = manifest.path("tiny.op")
    path.write_bytes(b"this is not protobuf" * 10)
    damaged = _with_stage(manifest, sha256=file_sha256(path))  # the hash matches: the export itself was bad
    with pytest.raises(
        BackendError, match=r"model tiny.op: onnxruntime cannot load .*tiny.op.onnx: the file is damaged"
    ):
        OnnxRuntimeBackend(damaged, "tiny.op").activate()


def test_manifest_that_disagrees_with_the_file_is_named(tmp_path):
    manifest = tiny_manifest(tmp_path, "Mul", [("x", ("batch", 4), "float32")])
    wrong = _with_stage(manifest, inputs=(TensorInfo("flow", ("batch", 4), "float32"),))
    with pytest.raises(
        BackendError, match=r"model tiny.op: the ONNX file's inputs are \['x'\], the manifest says \['flow'\]"
    ):
        OnnxRuntimeBackend(wrong, "tiny.op").activate()


@pytest.mark.parametrize(
    "field, tensor, needle",
    [
        (
            "outputs",
            TensorInfo("y", ("batch", 4), "float64"),
            r"output 'y' is float32 \('batch', 4\) in the ONNX file, the "
            r"manifest says float64",
        ),
        (
            "outputs",
            TensorInfo("y", ("batch", 5), "float32"),
            r"output 'y' is float32 \('batch', 4\) .*says float32 \('batch', 5\)",
        ),
        ("outputs", TensorInfo("y", ("batch",), "float32"), r"output 'y' .*says float32 \('batch',\)"),
        ("inputs", TensorInfo("x", ("batch", 4), "int64"), r"input 'x' is float32 .*says int64"),
    ],
)
def test_manifest_dtype_or_shape_that_disagrees_with_the_file_is_named(tmp_path, field, tensor, needle):
    """Refused at activation, naming the model: not ORT's "Unexpected output data type" on
    every call, nor outputs of another shape than the manifest promises."""
    manifest = tiny_manifest(tmp_path, "Mul", [("x", ("batch", 4), "float32")])
    with pytest.raises(BackendError, match=r"model tiny\.op: " + needle):
        OnnxRuntimeBackend(_with_stage(manifest, **{field: (tensor,)}), "tiny.op").activate()


def test_runtime_failure_names_the_model(tmp_path):
    """An input the manifest allows but the graph refuses (here: a manifest that calls a fixed
    axis dynamic) fails with the model named, not with ORT's bare InvalidArgument."""
    manifest = tiny_manifest(tmp_path, "Mul", [("x", ("batch", 4), "float32")])
    loose = _with_stage(
        manifest, inputs=(TensorInfo("x", ("batch", "time"), "float32"),), dims={"time": (1, 4, 8)}
    )
    with OnnxRuntimeBackend(loose, "tiny.op") as runner:
        with pytest.raises(
            BackendError,
            match=r"model tiny\.op: onnxruntime failed on inputs of shapes \[\(1, 5\)\]: InvalidArgument",
        ):
            runner.infer({"x": np.ones((1, 5), np.float32)})
        np.testing.assert_array_equal(
            runner.infer({"x": np.ones((1, 4), np.float32)})["y"], np.full((1, 4), 2)
        )

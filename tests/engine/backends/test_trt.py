"""TensorRT backend: the GPU-free plan (profiles, cache keys and entries, buffer sizes), the
backend's behaviour without TensorRT, and its runtime paths against a numpy stand-in for
``tensorrt``/``pycuda``. The stand-in follows the documented calls the backend makes; it proves
the backend's own logic (caching, streams in flight, graph capture and fallback, release), not
TensorRT itself, which the ``gpu`` tests do where a device is present."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mestream.engine.backends import trt_plan
from mestream.engine.backends.base import BackendError, BackendUnavailable
from mestream.engine.backends.trt import TensorRTBackend
from mestream.engine.config import InferenceConfig, TensorRTConfig
from mestream.engine.manifest import SubgraphInfo, TensorInfo
from tests.engine.backends.fake_trt import install_fake
from tests.engine.backends.tiny import tiny_manifest

STAGE = SubgraphInfo(
    model="m",
    name="enc",
    file="m.enc.onnx",
    sha256="0" * 64,
    inputs=(
        TensorInfo("x", ("batch", 2, "time", 8), "float32"),
        TensorInfo("mask", ("batch", 3), "bool"),
        TensorInfo("k", (2, 2), "int64"),
    ),
    outputs=(TensorInfo("y", ("batch", 5), "float32"), TensorInfo("z", ("batch", "frames"), "float32")),
    dims={"time": (2, 5, 9)},
)
CONFIG = InferenceConfig(opt_batch=4, max_batch=16)


def config(tmp_path: Path, **trt: object) -> InferenceConfig:
    return InferenceConfig(
        opt_batch=2, max_batch=8, tensorrt=TensorRTConfig(cache_dir=str(tmp_path / "cache"), **trt)
    )


# -- plan -------------------------------------------------------------------------------------------


def test_profile_shapes_cover_batch_named_and_fixed_axes():
    profiles = trt_plan.profile_shapes(STAGE, CONFIG)
    assert profiles["x"] == ((1, 2, 2, 8), (4, 2, 5, 8), (16, 2, 9, 8))
    assert profiles["mask"] == ((1, 3), (4, 3), (16, 3))
    assert profiles["k"] == ((2, 2),) * 3


def test_profile_shapes_name_the_stage_and_axis_without_dims():
    subgraph = SubgraphInfo(**{**STAGE.__dict__, "dims": {}})
    with pytest.raises(BackendError, match=r"model m\.enc: input 'x' axis 2 is dynamic \('time'\)"):
        trt_plan.profile_shapes(subgraph, CONFIG)


KEY_ARGS = dict(
    onnx_sha256="a" * 64,
    trt_version="10.3.0",
    gpu_name="RTX 4090",
    compute_capability=(8, 9),
    precision="fp16",
    profiles={"x": ((1, 2), (4, 2), (16, 2))},
)


def test_cache_key_is_stable_and_canonical():
    key = trt_plan.cache_key(**KEY_ARGS)
    assert key == trt_plan.cache_key(**{**KEY_ARGS, "compute_capability": "8.9"}) and len(key) == 64
    two = {"b": ((1,), (1,), (1,)), "a": ((2,), (2,), (2,))}
    assert trt_plan.cache_key(**{**KEY_ARGS, "profiles": two}) == trt_plan.cache_key(
        **{**KEY_ARGS, "profiles": dict(reversed(two.items()))}
    )
    assert key == trt_plan.fields_key(trt_plan.key_fields(**KEY_ARGS))


@pytest.mark.parametrize(
    "field, value",
    [
        ("onnx_sha256", "b" * 64),
        ("trt_version", "10.4.0"),
        ("gpu_name", "A100"),
        ("compute_capability", (8, 0)),
        ("precision", "fp32"),
        ("profiles", {"x": ((1, 2), (4, 2), (32, 2))}),
    ],
)
def test_cache_key_changes_with_every_field(field, value):
    assert trt_plan.cache_key(**{**KEY_ARGS, field: value}) != trt_plan.cache_key(**KEY_ARGS)


def test_cache_paths_follow_config_then_mestream_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MESTREAM_CACHE", str(tmp_path / "env"))
    assert trt_plan.cache_dir(CONFIG) == tmp_path / "env" / "tensorrt"
    assert trt_plan.timing_cache_path(CONFIG) == tmp_path / "env" / "tensorrt" / "timing.cache"
    own = InferenceConfig(tensorrt=TensorRTConfig(cache_dir=str(tmp_path / "own")))
    assert (
        trt_plan.engine_path(own, STAGE, "0123456789abcdef" + "f" * 48)
        == tmp_path / "own" / "m.enc-0123456789abcdef.engine"
    )


def test_cached_engine_refuses_missing_stale_and_damaged_entries(tmp_path, caplog):
    caplog.set_level(logging.INFO, "mestream.backends")
    path = tmp_path / "c" / "m.enc-k.engine"
    assert trt_plan.cached_engine(path, "k") is None and "no cached engine" in caplog.text
    trt_plan.store_engine(path, b"engine-bytes", "k", {"gpu": "x"})
    assert trt_plan.cached_engine(path, "k") == b"engine-bytes"
    assert sorted(p.name for p in path.parent.iterdir()) == [
        path.name,
        path.name + ".json",
    ]  # no temp files left
    assert json.loads(trt_plan.sidecar_path(path).read_text())["fields"] == {"gpu": "x"}
    assert trt_plan.cached_engine(path, "other") is None and "another configuration" in caplog.text
    path.write_bytes(b"engine-by")  # truncated
    assert trt_plan.cached_engine(path, "k") is None and "truncated or damaged" in caplog.text
    path.write_bytes(b"engine-bytez")  # same size, other bytes
    assert trt_plan.cached_engine(path, "k") is None
    trt_plan.sidecar_path(path).write_text("{not json")
    assert trt_plan.cached_engine(path, "k") is None and "unreadable sidecar" in caplog.text
    trt_plan.sidecar_path(path).unlink()
    assert trt_plan.cached_engine(path, "k") is None and "has no sidecar" in caplog.text


@pytest.mark.parametrize(
    "shape, dtype, nbytes",
    [
        ((2, 3), "float32", 24),
        ((5,), "bool", 5),
        ((4, 2), "int64", 64),
        ((), "float32", 4),
        ((0, 3), "float32", 0),
    ],
)
def test_buffer_nbytes(shape, dtype, nbytes):
    assert trt_plan.buffer_nbytes(shape, dtype) == nbytes


def test_buffer_nbytes_refuses_unresolved_dims():
    with pytest.raises(ValueError, match="negative"):
        trt_plan.buffer_nbytes((-1, 3), "float32")


def test_io_plan_sizes_inputs_at_max_and_leaves_named_outputs_to_the_engine():
    plan = trt_plan.io_plan(STAGE, CONFIG)
    assert (
        plan["x"].max_shape == (16, 2, 9, 8) and plan["x"].nbytes == 16 * 2 * 9 * 8 * 4 and plan["x"].is_input
    )
    assert plan["mask"].nbytes == 48 and plan["k"].nbytes == 32
    assert plan["y"].max_shape == (16, 5) and plan["y"].nbytes == 320 and not plan["y"].is_input
    assert plan["z"].max_shape is None and plan["z"].nbytes is None


def test_io_mismatch_names_the_disagreement():
    dtypes = {"x": np.float32, "mask": np.bool_, "k": np.int64, "y": np.float32, "z": np.float32}
    assert trt_plan.io_mismatch(STAGE, ["k", "x", "mask"], ["z", "y"], dtypes) is None
    assert "not the manifest's" in trt_plan.io_mismatch(STAGE, ["x", "mask"], ["y", "z"], dtypes)
    assert "'mask' is int32 in the engine but bool" in trt_plan.io_mismatch(
        STAGE, ["x", "mask", "k"], ["y", "z"], {**dtypes, "mask": np.int32}
    )


def test_precision():
    assert trt_plan.precision(InferenceConfig()) == "fp16"
    assert trt_plan.precision(InferenceConfig(tensorrt=TensorRTConfig(fp16=False))) == "fp32"


# -- without TensorRT -------------------------------------------------------------------------------

needs_no_tensorrt = pytest.mark.skipif(TensorRTBackend.unavailable() is None, reason="TensorRT can run here")


@needs_no_tensorrt
def test_unavailable_names_the_extra():
    reason = TensorRTBackend.unavailable()
    assert "pip install 'mestream[gpu]'" in reason or "no CUDA device initializes" in reason


def test_module_import_and_construction_load_neither_tensorrt_nor_pycuda(tmp_path):
    tiny_manifest(tmp_path)
    script = f"""
import sys
tried = []
class Spy:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorrt", "pycuda"):
            tried.append(name)
        return None
sys.meta_path.insert(0, Spy())
from mestream.engine.backends.trt import TensorRTBackend
from mestream.engine.manifest import Manifest
TensorRTBackend(Manifest.load({str(tmp_path)!r}), "tiny.op")
print(tried, [m for m in sys.modules if m.split(".")[0] in ("tensorrt", "pycuda")])
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[] []"


@needs_no_tensorrt
def test_activation_here_is_unavailable_with_the_install_hint(tmp_path):
    runner = TensorRTBackend(tiny_manifest(tmp_path), "tiny.op", config(tmp_path))
    with pytest.raises(BackendUnavailable, match=r"model tiny\.op: .*mestream\[gpu\]"):
        runner.activate()
    assert not runner.active


# -- runtime paths against a numpy stand-in for tensorrt / pycuda ---------------------------------------


@pytest.fixture
def fake(monkeypatch):
    return install_fake(monkeypatch)


def test_builds_once_then_loads_from_cache_and_rebuilds_damaged_entries(fake, tmp_path):
    manifest = tiny_manifest(tmp_path / "export", "Mul", constant=2.0)
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    with TensorRTBackend(manifest, "tiny.op", config(tmp_path)) as runner:
        np.testing.assert_array_equal(runner.infer({"x": x})["y"], x * 2)
    assert fake.builds == 1 and fake.ctx_stack == [] and fake.memory == {} and fake.detached
    engines = list((tmp_path / "cache").glob("tiny.op-*.engine"))
    assert len(engines) == 1 and (tmp_path / "cache" / "timing.cache").read_bytes() == b"timings"
    with TensorRTBackend(manifest, "tiny.op", config(tmp_path)) as runner:
        np.testing.assert_array_equal(runner.infer({"x": x[:1]})["y"], x[:1] * 2)
    assert fake.builds == 1
    engines[0].write_bytes(engines[0].read_bytes()[:-3])
    with TensorRTBackend(manifest, "tiny.op", config(tmp_path)) as runner:
        runner.infer({"x": x})
    assert fake.builds == 2
    key = json.loads(trt_plan.sidecar_path(engines[0]).read_text())["key"]
    trt_plan.store_engine(engines[0], b"intact, but not an engine", key)  # e.g. from another TensorRT build
    with TensorRTBackend(manifest, "tiny.op", config(tmp_path)) as runner:
        np.testing.assert_array_equal(runner.infer({"x": x})["y"], x * 2)
    assert fake.builds == 3 and trt_plan.cached_engine(engines[0], key) != b"intact, but not an engine"
    with TensorRTBackend(manifest, "tiny.op", config(tmp_path, fp16=False)):
        pass
    assert fake.builds == 4  # another precision is another engine


def test_batches_in_flight_on_separate_streams(fake, tmp_path):
    runner = TensorRTBackend(
        tiny_manifest(tmp_path / "e", "Add", constant=1.0), "tiny.op", config(tmp_path, streams=2)
    )
    runner.activate()
    a, b = np.ones((2, 4), np.float32), np.full((5, 4), 10, np.float32)
    first, second = runner.submit({"x": a}), runner.submit({"x": b})
    with pytest.raises(BackendError, match="all 2 streams have a batch in flight"):
        runner.submit({"x": a})
    np.testing.assert_array_equal(runner.collect(second)["y"], b + 1)
    np.testing.assert_array_equal(runner.collect(first)["y"], a + 1)
    with pytest.raises(BackendError, match="already collected"):
        runner.collect(first)
    before = fake.set_shapes
    runner.infer({"x": a})  # slot 0 again, same shape: no set_input_shape
    runner.infer({"x": a})  # slot 1, shape changes from b's
    assert fake.set_shapes == before + 1
    runner.deactivate()
    assert fake.memory == {} and fake.ctx_stack == []


def test_cuda_graph_is_captured_on_the_second_call_and_replayed(fake, tmp_path):
    manifest = tiny_manifest(tmp_path / "e", "Mul", constant=3.0)
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    with TensorRTBackend(manifest, "tiny.op", config(tmp_path, streams=1, cuda_graph=True)) as runner:
        for _ in range(3):
            np.testing.assert_array_equal(runner.infer({"x": x})["y"], x * 3)
        assert (fake.executes, fake.launches) == (3, 2)  # plain run, capture + launch, launch
        np.testing.assert_array_equal(runner.infer({"x": x[:1]})["y"], x[:1] * 3)  # new shape: plain first
        assert (fake.executes, fake.launches) == (4, 2)


def test_failed_capture_falls_back_to_plain_enqueue(fake, tmp_path, caplog):
    fake.fail_capture = True
    x = np.ones((2, 4), np.float32)
    with TensorRTBackend(
        tiny_manifest(tmp_path / "e"), "tiny.op", config(tmp_path, streams=1, cuda_graph=True)
    ) as r:
        for _ in range(3):
            np.testing.assert_array_equal(r.infer({"x": x})["y"], x * 2)
    assert (
        fake.launches == 0 and caplog.text.count("CUDA graph capture failed") == 1
    )  # not retried every call


def test_cuda_graph_without_capture_support_is_refused(fake, tmp_path, monkeypatch):
    monkeypatch.delattr(sys.modules["pycuda.driver"].Stream, "begin_capture")
    runner = TensorRTBackend(tiny_manifest(tmp_path / "e"), "tiny.op", config(tmp_path, cuda_graph=True))
    with pytest.raises(
        BackendError, match=r"model tiny\.op .*cuda_graph = true needs .*Stream\.begin_capture"
    ):
        runner.activate()


def test_parse_and_build_failures_name_the_stage_and_file(fake, tmp_path):
    manifest = tiny_manifest(tmp_path / "e", "Identity")
    with pytest.raises(
        BackendError, match=r"model tiny\.op \(.*tiny\.op\.onnx\): TensorRT cannot parse .*Identity"
    ):
        TensorRTBackend(manifest, "tiny.op", config(tmp_path)).activate()
    fake.fail_build = True
    with pytest.raises(BackendError, match=r"model tiny\.op .*failed to build an engine"):
        TensorRTBackend(tiny_manifest(tmp_path / "f"), "tiny.op", config(tmp_path)).activate()
    assert fake.ctx_stack == [] and fake.memory == {}


# -- on a GPU ---------------------------------------------------------------------------------------


@pytest.mark.gpu
def test_tensorrt_matches_numpy_and_reuses_its_engine(tmp_path):
    manifest = tiny_manifest(
        tmp_path / "e",
        "Mul",
        [("x", ("batch", "time", 3), "float32")],
        constant=2.0,
        dims={"time": (1, 4, 6)},
    )
    cfg = config(tmp_path, fp16=False)
    x = np.random.default_rng(0).random((5, 6, 3), dtype=np.float32)
    with TensorRTBackend(manifest, "tiny.op", cfg) as runner:
        np.testing.assert_allclose(runner.infer({"x": x})["y"], x * 2, rtol=1e-6)
        np.testing.assert_allclose(runner.infer({"x": x[:1, :2]})["y"], x[:1, :2] * 2, rtol=1e-6)
    engine = next((tmp_path / "cache").glob("tiny.op-*.engine"))
    stamp = engine.stat().st_mtime_ns
    with TensorRTBackend(manifest, "tiny.op", cfg) as runner:
        np.testing.assert_allclose(runner.infer({"x": x})["y"], x * 2, rtol=1e-6)
    assert engine.stat().st_mtime_ns == stamp  # loaded, not rebuilt

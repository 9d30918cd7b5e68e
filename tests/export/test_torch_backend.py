"""The torch backend: the same answers as ONNX Runtime on the shipped export, and refusals that
name the files (a stale checkpoint, torch not installed)."""

from __future__ import annotations

import dataclasses
import importlib.util

import numpy as np
import pytest

from mestream.engine.backends import BackendError, backend_class, example_feed
from mestream.engine.manifest import Manifest, shipped_export_dir
from mestream.export.check import load_inputs, random_feed
from tests.export.conftest import needs_torch, save_small


def test_unavailable_without_torch_names_the_extra(monkeypatch):
    from mestream.export.torch_backend import TorchBackend

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a)
    )
    reason = TorchBackend.unavailable()
    assert reason is not None and "'torch'" in reason and "pip install 'mestream[train]'" in reason


def test_registered_as_the_torch_kind():
    from mestream.export.torch_backend import TorchBackend

    assert backend_class("torch") is TorchBackend and TorchBackend.extra == "train"


@needs_torch
def test_torch_and_onnxruntime_agree_on_the_shipped_export():
    from mestream.engine.backends.onnxrt import OnnxRuntimeBackend
    from mestream.export.torch_backend import TorchBackend

    manifest = Manifest.load(shipped_export_dir())
    camera = load_inputs(manifest.root, manifest)
    rng = np.random.default_rng(3)
    for key, subgraph in manifest.subgraphs.items():
        feeds = [random_feed(subgraph, 2, rng), camera[key][0]]
        with TorchBackend(manifest, key) as ref, OnnxRuntimeBackend(manifest, key) as ort:
            for feed in feeds:
                want = {k: v.copy() for k, v in ref.infer(feed).items()}
                got = ort.infer(feed)
                for spec in subgraph.outputs:
                    assert want[spec.name].dtype == np.dtype(spec.dtype), (key, spec.name)
                    if spec.dtype == "float32":
                        np.testing.assert_allclose(
                            got[spec.name], want[spec.name], rtol=0, atol=1e-4, err_msg=key
                        )
                    else:
                        np.testing.assert_array_equal(got[spec.name], want[spec.name], err_msg=key)
            recorded = camera[key][1]
            out = ref.infer(camera[key][0])
            for name, value in recorded.items():  # the same torch gives the outputs recorded at export
                np.testing.assert_allclose(out[name], value, rtol=0, atol=1e-6, err_msg=f"{key} {name}")


@needs_torch
def test_a_checkpoint_other_than_the_exported_one_is_refused_naming_both(export_copy, tmp_path):
    from mestream.export.torch_backend import TorchBackend

    manifest = Manifest.load(export_copy)
    other = save_small(tmp_path / "retrained.pt", "mesnet.demo", seed=7)
    info = dataclasses.replace(manifest.models["mesnet"], checkpoint=str(other))
    stale = dataclasses.replace(manifest, models={**manifest.models, "mesnet": info})
    with pytest.raises(BackendError, match=r"(?s)mesnet\.encoder.*retrained\.pt.*manifest\.json.*stale"):
        TorchBackend(stale, "mesnet.encoder").activate()
    gone = dataclasses.replace(
        manifest,
        models={**manifest.models, "mesnet": dataclasses.replace(info, checkpoint=str(tmp_path / "gone.pt"))},
    )
    with pytest.raises(BackendError, match=r"checkpoint .*gone\.pt .* is missing"):
        TorchBackend(gone, "mesnet.crn").activate()


@needs_torch
def test_inputs_are_checked_before_torch_sees_them(export_copy):
    from mestream.engine.backends import InputError
    from mestream.export.torch_backend import TorchBackend

    manifest = Manifest.load(export_copy)
    with TorchBackend(manifest, "akmnet.clip_head") as runner:
        feed = example_feed(runner.subgraph, 2)
        feed["mask"] = feed["mask"].astype(np.float32)
        with pytest.raises(InputError, match="akmnet.clip_head.*'mask' must be bool"):
            runner.infer(feed)


@needs_torch
def test_strided_reversed_and_read_only_inputs_give_the_contiguous_answer():
    """The torch backend takes what the onnxruntime backend takes: torch.from_numpy refuses
    negative strides, so a reversed view must be copied rather than fail."""
    from mestream.export.torch_backend import TorchBackend

    manifest = Manifest.load(shipped_export_dir())
    subgraph = manifest.subgraph("mesnet.crn")
    base = random_feed(subgraph, 4, np.random.default_rng(5))["proposals"]
    frozen = base[:2].copy()
    frozen.flags.writeable = False
    with TorchBackend(manifest, "mesnet.crn") as runner:
        for view in (base[::-1], base[::2], base[:, ::-1], frozen):
            want = {k: v.copy() for k, v in runner.infer({"proposals": np.ascontiguousarray(view)}).items()}
            got = runner.infer({"proposals": view})
            for name, value in want.items():
                np.testing.assert_array_equal(got[name], value, err_msg=name)

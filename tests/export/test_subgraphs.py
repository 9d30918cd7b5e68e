"""Every subgraph of every registered model exports, passes the ONNX checker, and computes in ONNX
Runtime what it computes in torch; the window head takes every length down to its minimum."""

from __future__ import annotations

import numpy as np
import pytest

from mestream.models.registry import list_models
from tests.export.conftest import needs_torch, small_model

pytestmark = needs_torch


def _spec(name: str):
    from mestream.export.subgraphs import model_spec

    family, _, preset = name.partition(".")
    return model_spec(family, small_model(name), preset)


@pytest.mark.parametrize("name", list_models())
def test_every_stage_exports_checks_and_matches_torch(name, tmp_path):
    from mestream.export.check import difference, random_sets
    from mestream.export.onnx_export import export_subgraph, ort_session, torch_outputs

    spec = _spec(name)
    assert [s.name for s in spec.subgraphs] == (
        ["encoder", "window_head", "crn"] if name.startswith("mesnet") else ["encoder", "clip_head"]
    )
    for subgraph in spec.subgraphs:
        path = tmp_path / subgraph.file
        export_subgraph(subgraph, path, 17)  # runs onnx.checker.check_model(full_check=True)
        session = ort_session(path)
        assert [(t.name, tuple(t.shape)) for t in session.get_inputs()] == [
            (t.name, t.shape) for t in subgraph.inputs
        ]
        assert [(t.name, tuple(t.shape)) for t in session.get_outputs()] == [
            (t.name, t.shape) for t in subgraph.outputs
        ]
        for label, feed in random_sets(subgraph.info()):
            want = torch_outputs(subgraph, feed)
            got = dict(zip(want, session.run(list(want), feed)))
            for out in subgraph.outputs:
                assert got[out.name].dtype == np.dtype(out.dtype), (subgraph.key, out.name)
                peak, _, metric = difference(got[out.name], want[out.name])
                assert peak <= 1e-4 if metric == "abs" else peak == 0, (subgraph.key, label, out.name, peak)


def test_window_head_minimum_length_is_the_smallest_that_runs(tmp_path):
    import torch

    from mestream.export.onnx_export import export_subgraph, ort_session
    from mestream.export.subgraphs import min_window_steps, scale_positions

    spec = _spec("mesnet.paper")
    cfg = spec.net.config
    lo = min_window_steps(cfg)
    assert lo == max(cfg.receptive_fields) - 4 * cfg.temporal_padding == 7
    subgraph = spec.subgraph("window_head")
    assert subgraph.dims["time"] == (lo, cfg.window_steps, cfg.window_steps)
    export_subgraph(subgraph, tmp_path / "head.onnx", 17)
    session = ort_session(tmp_path / "head.onnx")
    features = np.random.default_rng(0).random((2, lo, cfg.feature_size), dtype=np.float32)
    scores = session.run(None, {"features": features})
    assert [s.shape for s in scores] == [(2, n) for n in scale_positions(cfg, lo)]
    assert min(scale_positions(cfg, lo)) == 1
    assert [subgraph.dims[f"positions_{i}"][1] for i in range(1, 6)] == scale_positions(cfg, cfg.window_steps)
    with pytest.raises(RuntimeError):  # one step shorter: the largest scale has no position left
        with torch.inference_mode():
            subgraph.module(torch.zeros(1, lo - 1, cfg.feature_size))


def test_akmnet_manifest_config_names_the_classes():
    spec = _spec("akmnet.demo")
    from mestream.models.akmnet.config import AKMNetConfig

    assert spec.config["classes"] == ["positive", "negative", "surprise", "others"]
    assert AKMNetConfig.from_dict(spec.config).class_names == spec.net.config.class_names


def test_random_masks_are_valid_first_with_lengths_from_one_to_all():
    from mestream.export.check import random_feed

    spec = _spec("akmnet.demo")
    info = spec.subgraph("clip_head").info()
    mask = random_feed(info, 5, np.random.default_rng(0))["mask"]
    lengths = mask.sum(axis=1)
    assert mask.dtype == bool and lengths.min() == 1 and lengths.max() == mask.shape[1]
    assert all(row[:n].all() and not row[n:].any() for row, n in zip(mask, lengths))


def test_preprocessing_contract_follows_the_config():
    spec = _spec("mesnet.demo")
    cfg, pre = spec.net.config, spec.preprocessing
    for key in (
        "input_size",
        "sample_hz",
        "flow_crop",
        "flow_method",
        "flow_preset",
        "flow_gap",
        "flow_blur",
        "flow_scale",
    ):
        assert pre[key] == getattr(cfg, key), key
    assert pre["flow_gain_value"] == cfg.flow_scale * cfg.input_size / cfg.flow_crop
    assert pre["channels"] == ["dx", "dy"] and pre["face_box"]["scale"] == 1.2
    akm = _spec("akmnet.paper")
    for key in ("image_size", "max_frames", "input_mode", "magnify_alpha", "magnify_sigma"):
        assert akm.preprocessing[key] == getattr(akm.net.config, key), key
    assert akm.preprocessing["crop_side"] == akm.net.config.train_resize

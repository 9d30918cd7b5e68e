import dataclasses

import numpy as np
import pytest
import torch

from mestream.engine.intervals import (
    cpn_proposals,
    crn_intervals,
    merge,
    resample,
    shift,
    to_frames,
    window_starts,
)
from mestream.models.mesnet.network import MESNet


def staged_spot(net, flow, t_cpn, t_crn):
    """The runtime path: subgraph 1, subgraph 2, numpy proposals and resampling, subgraph 3, numpy
    post-processing."""
    cfg = net.config
    subgraphs = net.subgraphs()
    starts = window_starts(len(flow), cfg.window_steps, cfg.overlap_steps)
    found = []
    with torch.no_grad():
        for start in starts:
            window = np.zeros((cfg.window_steps, *flow.shape[1:]), np.float32)
            part = flow[start : start + cfg.window_steps]
            window[: len(part)] = part
            feats = subgraphs["encoder"](torch.from_numpy(window)).numpy()
            scores = [s[0].numpy() for s in subgraphs["window_head"](torch.from_numpy(feats)[None])]
            props = cpn_proposals(scores, cfg, t_cpn)
            if not len(props):
                continue
            rows = np.stack([resample(feats, a, b, cfg.crn_steps) for a, b in props.intervals])
            probs, offsets = subgraphs["crn"](torch.from_numpy(rows))
            spots = crn_intervals(props, probs.numpy(), offsets.numpy(), t_crn, cfg.t_nms)
            found.append(shift(spots, start, len(flow)))
    return merge(found, cfg.t_nms)


def test_stages_equal_end_to_end(tiny):
    torch.manual_seed(0)
    cfg = dataclasses.replace(tiny, max_proposals=6)
    net = MESNet(cfg).eval()
    flow = np.random.default_rng(0).normal(0, 1, (70, 2, 16, 16)).astype(np.float32)
    # thresholds at the median of this random net's scores, so that some proposals pass and some do not
    _, _, scores = net.window_outputs(flow)
    t_cpn = float(np.median(np.concatenate([s.ravel() for s in scores])))
    e2e = net.spot(flow, t_cpn=t_cpn, t_crn=0.0)
    staged = staged_spot(net, flow, t_cpn, 0.0)
    assert len(e2e) > 3
    np.testing.assert_allclose(staged.intervals, e2e.intervals, atol=1e-4)
    np.testing.assert_allclose(staged.scores, e2e.scores, atol=1e-5)
    frames = 5 * np.arange(70) + 2.0
    assert [f[:2] for f in to_frames(staged, frames)] == [f[:2] for f in to_frames(e2e, frames)]


def test_stages_export_to_onnx_with_static_shapes(tiny):
    import io

    ort = pytest.importorskip("onnxruntime")
    net = MESNet(tiny).eval()
    inputs = {
        "encoder": torch.randn(5, 2, 16, 16),
        "window_head": torch.randn(2, tiny.window_steps, tiny.feature_size),
        "crn": torch.randn(3, tiny.crn_steps, tiny.feature_size),
    }
    for name, subgraph in net.subgraphs().items():
        blob = io.BytesIO()
        torch.onnx.export(subgraph, (inputs[name],), blob, opset_version=17, dynamo=False)
        session = ort.InferenceSession(blob.getvalue())
        outputs = session.run(None, {session.get_inputs()[0].name: inputs[name].numpy()})
        with torch.no_grad():
            expected = subgraph(inputs[name])
        expected = expected if isinstance(expected, tuple) else (expected,)
        assert len(outputs) == len(expected)
        for got, want in zip(outputs, expected):
            np.testing.assert_allclose(got, want.numpy(), atol=1e-5)

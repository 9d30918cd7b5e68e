import numpy as np
import pytest
import torch
from torch import nn

from mestream.engine.intervals import cpn_positions, resample
from mestream.models.mesnet.network import MESNet, PretrainNet, resample_features


def test_spatial_encoder_follows_table_one(tiny):
    net = MESNet(tiny)
    convs = [m for m in net.encoder.modules() if isinstance(m, nn.Conv2d)]
    pools = [m for m in net.encoder.modules() if isinstance(m, nn.MaxPool2d)]
    relus = [m for m in net.encoder.modules() if isinstance(m, nn.ReLU)]
    assert [c.out_channels for c in convs] == [8, 16, 32, 64] and convs[0].in_channels == 2
    assert all(c.kernel_size == (3, 3) and c.padding == (2, 2) and c.stride == (1, 1) for c in convs)
    assert len(pools) == 4 and all(p.kernel_size == 2 and p.stride == 2 for p in pools) and len(relus) == 4
    x = torch.zeros(3, 2, 64, 64)
    shapes = []
    for layer in net.encoder.layers:
        x = layer(x)
        if isinstance(layer, nn.MaxPool2d):
            shapes.append(tuple(x.shape[1:]))
    assert shapes == [(8, 33, 33), (16, 17, 17), (32, 9, 9), (64, 5, 5)]


def test_window_shapes_and_temporal_convs(tiny):
    net = MESNet(tiny).eval()
    for conv in (net.temporal.conv1, net.temporal.conv2):
        assert (conv.kernel_size, conv.padding, conv.stride, conv.out_channels) == ((3,), (2,), (1,), 128)
    logits, feats = net(torch.randn(2, tiny.window_steps, 2, 16, 16))
    n = tiny.window_steps
    assert feats.shape == (2, n, tiny.feature_size)
    # N_s = (N + 4) - (receptive field on S) + 1, as in section III-B
    assert [lg.shape for lg in logits] == [(2, 2, n + 4 - (rf - 4) + 1) for rf in (7, 9, 11, 13, 15)]


def test_cpn_follows_table_two(tiny):
    cpn = MESNet(tiny).cpn
    assert (cpn.shared.kernel_size, cpn.shared.dilation, cpn.shared.padding) == ((3,), (1,), (0,))
    assert (cpn.first5.kernel_size, cpn.first5.dilation) == ((3,), (2,))
    assert [(c.kernel_size[0], c.dilation[0], c.padding[0], c.out_channels) for c in cpn.second] == [
        (1, 1, 0, 2),
        (3, 1, 0, 2),
        (3, 2, 0, 2),
        (3, 3, 0, 2),
        (3, 3, 0, 2),
    ]


def test_receptive_fields_on_f_are_7_to_15_and_match_the_bookkeeping(tiny):
    """Gradient of one CPN output w.r.t. F: its support is the receptive field, where postprocess says."""
    torch.manual_seed(0)
    net = MESNet(tiny).double()
    for module in net.modules():  # positive weights: no ReLU dead zone hides a dependency
        if isinstance(module, (nn.Conv1d,)):
            module.weight.data.abs_().add_(0.01)
            module.bias.data.fill_(0.1)
    feats = torch.rand(1, tiny.window_steps, tiny.feature_size, dtype=torch.float64, requires_grad=True)
    logits = net.cpn_logits(feats)
    positions = cpn_positions(tiny)
    sizes = []
    for s, lg in enumerate(logits):
        n = 8  # a position whose receptive field lies inside the window
        (grad,) = torch.autograd.grad(lg[0, 0, n], feats, retain_graph=True)
        support = np.flatnonzero(grad[0].abs().sum(dim=1).numpy() > 0)
        sizes.append(len(support))
        assert (support[0], support[-1]) == tuple(positions[s][n])
        assert len(support) == support[-1] - support[0] + 1
    assert sizes == [7, 9, 11, 13, 15]


def test_crn_and_pretrain_head(tiny):
    net = MESNet(tiny).eval()
    crn = net.crn
    assert (crn.conv1.kernel_size, crn.conv1.padding, crn.conv1.out_channels) == ((3,), (0,), 128)
    assert crn.conv1.in_channels == tiny.feature_size  # its own convs on f_n, not shared with the backbone
    assert crn.conv1 is not net.temporal.conv1
    assert (crn.fc1.out_features, crn.fc2.out_features, crn.cls.out_features, crn.reg.out_features) == (
        300,
        300,
        2,
        2,
    )
    probs, offsets = net.crn_outputs(torch.randn(5, tiny.crn_steps, tiny.feature_size))
    assert probs.shape == offsets.shape == (5, 2)
    assert torch.allclose(probs.sum(1), torch.ones(5))
    head = PretrainNet(net)
    assert head(torch.randn(3, tiny.pretrain_steps, 2, 16, 16)).shape == (3, 2)
    assert head.head.dropout.p == 0.5 and head.head.fc1.out_features == head.head.fc2.out_features == 300


def test_subgraphs_have_static_shapes(tiny):
    subgraphs = MESNet(tiny).eval().subgraphs()
    assert subgraphs["encoder"](torch.randn(7, 2, 16, 16)).shape == (7, tiny.feature_size)
    scores = subgraphs["window_head"](torch.randn(2, tiny.window_steps, tiny.feature_size))
    assert len(scores) == 5 and all(s.shape[0] == 2 and ((s >= 0) & (s <= 1)).all() for s in scores)
    probs, offsets = subgraphs["crn"](torch.randn(3, tiny.crn_steps, tiny.feature_size))
    assert probs.shape == offsets.shape == (3, 2)


def test_resample_matches_numpy():
    feats = torch.randn(30, 6)
    ivs = np.array([[3, 10], [0, 29], [7, 7], [12, 13]])
    out = resample_features(feats, ivs, 9).numpy()
    for k, (a, b) in enumerate(ivs):
        np.testing.assert_allclose(out[k], resample(feats.numpy(), a, b, 9), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out[0, [0, -1]], feats.numpy()[[3, 10]], atol=1e-6)


@pytest.mark.parametrize("preset", ["paper", "demo"])
def test_weights_fit_the_repository(preset):
    from mestream.models.mesnet import PRESETS

    net = MESNet(PRESETS[preset])
    assert sum(p.numel() for p in net.parameters()) * 4 <= 10 * 2**20

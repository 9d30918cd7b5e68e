import numpy as np
import torch

from mestream.engine.intervals import cpn_positions, labels
from mestream.models.mesnet import losses
from mestream.models.mesnet.network import MESNet, PretrainNet, resample_features


def _fit(params, loss_fn, steps=15, lr=1e-3):
    opt = torch.optim.Adam(params, lr=lr)
    first = float(loss_fn().detach())
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
    return first, float(loss_fn().detach())


def test_pretrain_loss_decreases_and_penalises_weights(tiny):
    torch.manual_seed(0)
    model = PretrainNet(MESNet(tiny)).eval()  # no dropout noise
    x, y = torch.randn(4, tiny.pretrain_steps, 2, 16, 16), torch.tensor([0, 1, 0, 1])
    x[y == 1, :, :, 4:8, 4:8] += 3.0  # ME clips move
    first, last = _fit(
        model.parameters(), lambda: losses.pretrain_loss(model(x), y, model.net, model.head, tiny.l2)
    )
    assert last < 0.5 * first
    reg = losses.l2_penalty([model.head.fc1], 0.02)
    assert torch.isclose(reg, 0.01 * model.head.fc1.weight.pow(2).sum())  # λ/2 Σw², weights only


def test_cpn_loss_decreases(tiny):
    torch.manual_seed(0)
    net = MESNet(tiny)
    x = torch.randn(2, tiny.window_steps, 2, 16, 16)
    x[:, 5:13, :, 4:8, 4:8] += 3.0
    positions = cpn_positions(tiny)
    truth = np.array([[5, 12]])
    cpn_labels = [torch.from_numpy(np.stack([labels(p, truth, 0.7)[0]] * 2)) for p in positions]
    assert sum(int(lb.sum()) for lb in cpn_labels) > 0
    first, last = _fit(
        net.parameters(),
        lambda: losses.cpn_loss(net(x)[0], cpn_labels, net, tiny.l2, torch.Generator().manual_seed(0)),
        steps=20,
    )
    assert last < 0.7 * first


def test_balance_mask_keeps_every_me_and_about_as_many_others():
    labels = torch.zeros(10000, dtype=torch.long)
    labels[:500] = 1
    mask = losses.balance_mask(labels, torch.Generator().manual_seed(0))
    assert bool(mask[:500].all())
    assert 400 < int(mask[500:].sum()) < 600


def test_crn_loss_decreases_and_regresses_only_me(tiny):
    torch.manual_seed(0)
    net = MESNet(tiny).eval()
    feats = torch.randn(tiny.window_steps, tiny.feature_size)
    props = np.array([[3, 10], [4, 12], [15, 22]])
    truth = torch.tensor([[4.0, 11.0], [4.0, 11.0], [4.0, 11.0]])
    targets = losses.regression_targets(torch.from_numpy(props).float(), truth)
    np.testing.assert_allclose(targets[0].numpy(), [1 / 7, 1 / 7])
    cls = torch.tensor([1, 1, 0])
    rows = resample_features(feats, props, tiny.crn_steps)

    def loss():
        logits, offsets = net.crn(rows)
        return losses.crn_loss(logits, offsets, cls, targets, net.crn, tiny.l2)

    first, last = _fit(net.crn.parameters(), loss)
    assert last < 0.5 * first
    # a non-ME proposal's offsets do not enter the loss
    logits, offsets = net.crn(rows)
    moved = targets.clone()
    moved[2] += 100.0
    assert torch.isclose(
        losses.crn_loss(logits, offsets, cls, targets, net.crn, 0.0),
        losses.crn_loss(logits, offsets, cls, moved, net.crn, 0.0),
    )
    assert float(losses.mesnet_loss(torch.tensor(1.0), torch.tensor(2.0))) == 3.0


def test_l2_covers_the_layers_each_equation_lists(tiny):
    """Eq. 8 spares the head's last FC layer, Eq. 12 the CRN's two parallel output layers."""
    torch.manual_seed(0)
    net = MESNet(tiny)
    model = PretrainNet(net)
    logits, y = torch.randn(2, 2), torch.tensor([0, 1])
    offsets, targets = torch.randn(2, 2), torch.randn(2, 2)

    def pre():
        return float(losses.pretrain_loss(logits, y, net, model.head, 0.1))

    def crn():
        return float(losses.crn_loss(logits, offsets, y, targets, net.crn, 0.1))

    def cpn():
        return float(losses.cpn_loss([torch.zeros(1, 2, 3)], [torch.ones(1, 3, dtype=torch.long)], net, 0.1))

    with torch.no_grad():
        base = pre(), crn(), cpn()
        for layer in (model.head.out, net.crn.cls, net.crn.reg):  # outside every penalty
            layer.weight.mul_(3.0)
        assert (pre(), crn(), cpn()) == base
        for layer, changed in (
            (model.head.fc2, (1, 0, 0)),
            (net.crn.fc2, (0, 1, 0)),
            (net.cpn.first5, (0, 0, 1)),
            (net.crn.conv1, (0, 1, 0)),
            (net.temporal.conv1, (1, 0, 1)),
            (net.encoder.layers[0], (1, 0, 1)),
        ):
            before = pre(), crn(), cpn()
            layer.weight.mul_(1.5)
            assert [a != b for a, b in zip((pre(), crn(), cpn()), before)] == [bool(c) for c in changed], (
                layer
            )

"""AKMNet's network: Table II shapes, batched = unbatched, the authors' per-clip forward, gradients."""

from __future__ import annotations

import dataclasses

import pytest

torch = pytest.importorskip("torch")

from mestream.models.akmnet import PRESETS, build  # noqa: E402
from mestream.models.akmnet.config import AKMNetConfig, ConfigError  # noqa: E402
from mestream.models.akmnet.losses import akmnet_loss  # noqa: E402
from mestream.models.akmnet.network import pack_to_front  # noqa: E402
from mestream.models.registry import create_model  # noqa: E402

TINY = dataclasses.replace(
    PRESETS["demo"], widths=(8, 8, 16, 16), gru_hidden=8, image_size=64, train_resize=72
)


def _model(config: AKMNetConfig = TINY, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build(config).eval()
    for m in model.modules():  # non-trivial BatchNorm statistics, so eval mode is really tested
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model


def test_paper_preset_shapes_follow_table_ii() -> None:
    model = create_model("akmnet.paper", num_classes=4).eval()
    enc = model.encoder
    assert (enc.conv1.kernel_size, enc.conv1.stride, enc.conv1.padding, enc.conv1.in_channels) == (
        (5, 5),
        (2, 2),
        (2, 2),
        1,
    )
    x = torch.zeros(1, 1, 128, 128)
    sizes = []
    x = enc.relu(enc.bn1(enc.conv1(x)))
    sizes.append(tuple(x.shape[1:]))
    x = enc.maxpool(x)
    for layer in (enc.layer1, enc.layer2, enc.layer3, enc.layer4):
        x = layer(x)
        sizes.append(tuple(x.shape[1:]))
    assert sizes == [(64, 64, 64), (64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4)]
    assert [len(layer) for layer in (enc.layer1, enc.layer2, enc.layer3, enc.layer4)] == [2, 2, 2, 2]
    gru = model.head.temporal.gru
    assert (gru.input_size, gru.hidden_size, gru.num_layers, gru.bidirectional) == (512, 32, 2, True)
    assert model.head.fc.in_features == 1024 and model.head.fc.out_features == 4
    assert model.head.attention.in_features == 512 and model.head.dropout.p == 0.5


def test_class_count_is_configurable_and_config_is_strict() -> None:
    assert create_model("akmnet.demo", num_classes=7).head.fc.out_features == 7
    assert PRESETS["paper"].class_names == ("positive", "negative", "surprise", "others")
    with pytest.raises(ConfigError, match="widthz"):
        AKMNetConfig.from_dict({"widthz": [1, 2, 3, 4]})
    with pytest.raises(ConfigError, match="classes"):
        AKMNetConfig(num_classes=3, classes=("a", "b"))
    assert AKMNetConfig.from_dict(PRESETS["demo"].as_dict()) == PRESETS["demo"]


def test_default_class_names_follow_the_dataset_class_maps() -> None:
    from mestream.models.datasets import get_class_map

    for name in ("paper4", "smic3", "dfme7"):
        classes = tuple(get_class_map(name).classes)
        assert AKMNetConfig(num_classes=len(classes)).class_names == classes, name


def test_pack_to_front_moves_key_frames_in_order() -> None:
    key = torch.tensor([[False, True, False, True, True], [True, False, False, False, False]])
    x = torch.arange(10, dtype=torch.float32).view(2, 5, 1) + 1
    packed = pack_to_front(key) @ x
    assert packed[0, :, 0].tolist() == [2.0, 4.0, 5.0, 0.0, 0.0]
    assert packed[1, :, 0].tolist() == [6.0, 0.0, 0.0, 0.0, 0.0]


def test_batched_equals_each_clip_alone() -> None:
    model = _model()
    torch.manual_seed(1)
    lengths = [12, 5, 1, 9]
    T = 12
    frames = torch.rand(len(lengths), T, 1, 64, 64)
    mask = torch.arange(T).view(1, T) < torch.tensor(lengths).view(-1, 1)
    frames[~mask] = torch.rand(int((~mask).sum()), 1, 64, 64)  # padding content must not matter
    with torch.no_grad():
        batched = model(frames, mask)
        for b, n in enumerate(lengths):
            alone = model(frames[b : b + 1, :n], torch.ones(1, n, dtype=torch.bool))
            torch.testing.assert_close(batched.logits[b], alone.logits[0], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(batched.beta[b, :n], alone.beta[0], rtol=1e-5, atol=1e-6)
            assert torch.equal(batched.key_mask[b, :n], alone.key_mask[0])
            assert not batched.key_mask[b, n:].any() and torch.all(batched.beta[b, n:] == 0)
            assert int(batched.max_key[b]) == int(alone.max_key[0])
            assert batched.key_mask[b, int(batched.max_key[b])]


def test_identical_frames_are_all_key_frames_batched_or_alone() -> None:
    """Equal β (a clip without motion): every frame is a key frame (β_t ≥ mean), never none,
    whatever the float mean rounds to with or without padding."""
    model = _model()
    C, S, T = TINY.widths[3], TINY.feature_size, 40
    torch.manual_seed(4)
    for n in range(1, T + 1):
        feats = torch.randn(2, T, C, S, S)
        feats[0, :n] = torch.randn(C, S, S)  # n identical frames
        mask = torch.ones(2, T, dtype=torch.bool)
        mask[0, n:] = False
        with torch.no_grad():
            batched = model.head(feats, mask)
            alone = model.head(feats[:1, :n], torch.ones(1, n, dtype=torch.bool))
        assert batched.key_mask[0, :n].all() and alone.key_mask[0].all(), n
        torch.testing.assert_close(batched.logits[0], alone.logits[0], rtol=1e-5, atol=1e-5)


def test_padding_content_never_leaks_into_a_clip() -> None:
    """Padded slots may hold NaN (an uninitialised runtime buffer): outputs are those of zero padding."""
    model = _model()
    C, S, T = TINY.widths[3], TINY.feature_size, 6
    torch.manual_seed(5)
    feats = torch.randn(2, T, C, S, S)
    mask = torch.arange(T).view(1, T) < torch.tensor([4, 0]).view(-1, 1)  # the second clip is all padding
    dirty = feats.clone()
    dirty[~mask] = float("nan")
    with torch.no_grad():
        clean, got = model.head(feats, mask), model.head(dirty, mask)
    for a, b in zip(clean, got):
        assert torch.equal(a, b)
    assert torch.isfinite(got.logits).all() and not got.key_mask[1].any()


def _reference(model: torch.nn.Module, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The authors' forward for one clip, written from the equations: boolean-index the key
    frames, run a plain nn.GRU on them alone, average, classify."""
    head = model.head
    feats, pooled = model.encoder(frames)  # (T, C, S, S), (T, C)
    alpha = torch.sigmoid(head.attention(pooled)).squeeze(1)  # Eq. 5
    glob = (alpha[:, None] * pooled).sum(0)  # Eq. 6
    beta = (pooled @ glob) / (pooled.norm(dim=1) * glob.norm())  # Eq. 7
    key = beta >= beta.mean()  # Eq. 8 (the authors' >=)
    sel = feats[key]  # (N, C, S, S)
    N, C, S, _ = sel.shape
    seq = sel.permute(2, 3, 0, 1).reshape(S * S, N, C)
    out, _ = head.temporal.gru(seq)  # batch_first: (S*S, N, 64)
    g = out.mean(dim=1).reshape(1, -1)
    return head.fc(g)[0], key


@pytest.mark.parametrize("T", [1, 7, 16])
def test_matches_the_per_clip_reference(T: int) -> None:
    model = _model(seed=T)
    torch.manual_seed(10 + T)
    frames = torch.rand(T, 1, 64, 64)
    with torch.no_grad():
        ref_logits, ref_key = _reference(model, frames)
        out = model(frames[None], torch.ones(1, T, dtype=torch.bool))
    assert torch.equal(out.key_mask[0], ref_key)
    torch.testing.assert_close(out.logits[0], ref_logits, rtol=1e-5, atol=1e-5)


def test_gradients_follow_eqs_14_to_17() -> None:
    """Non-key frames get no gradient through F_key (Eq. 14); β gets gradient only on key frames (Eq. 17)."""
    model = _model()
    model.train()
    model.head.dropout.p = 0.0
    torch.manual_seed(3)
    T, C, S = 6, TINY.widths[3], TINY.feature_size
    feats = torch.randn(2, T, C, S, S, requires_grad=True)
    mask = torch.ones(2, T, dtype=torch.bool)
    out = model.head(feats, mask)
    beta = out.beta
    beta.retain_grad()
    # CE and L_GS: both reach β only through B (the MMM term uses β itself, on every frame)
    akmnet_loss(out.logits, torch.tensor([0, 1]), beta, out.key_mask, mask, lambda_mmm=0.0).total.backward()
    key = out.key_mask
    assert not key.all() and (key.sum(dim=1) > 1).all()  # L_GS > 0, so it has a gradient
    # β has gradient only on key frames
    assert torch.all(beta.grad[~key] == 0) and beta.grad[key].abs().sum() > 0
    # a non-key frame's features get gradient only through β (pooled vector), uniformly over
    # positions; a key frame's get position-specific gradient through the GRU
    g = feats.grad
    spatial_spread = (g - g.mean(dim=(3, 4), keepdim=True)).abs().amax(dim=(2, 3, 4))
    assert torch.all(spatial_spread[~key] < 1e-7) and torch.all(spatial_spread[key] > 1e-7)


def test_loss_trains_a_few_steps() -> None:
    model = _model()
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    torch.manual_seed(0)
    frames = torch.rand(4, 5, 1, 64, 64)
    mask = torch.ones(4, 5, dtype=torch.bool)
    mask[2, 3:] = False
    y = torch.tensor([0, 1, 2, 0])
    first = None
    for _ in range(8):
        out = model(frames, mask)
        loss = akmnet_loss(out.logits, y, out.beta, out.key_mask, mask).classification
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    assert loss.item() < first

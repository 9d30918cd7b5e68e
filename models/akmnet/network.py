"""AKMNet with static shapes: clips padded to T frames, key frames as a mask, GRU over them.

The authors' code runs one clip at a time and gathers key frames with ``nonzero`` and
``index_select``, whose output shapes depend on the data; that neither batches nor exports.
Here every shape is fixed by (batch, T):

- key-frame selection is a (B, T) mask;
- the key frames are moved to the front of each clip by a one-hot (B, T, T) matrix built
  from a cumulative sum (a matmul with one 1 per row: exact in float);
- the bi-GRU runs over all T steps with its state frozen where a step is not a key frame:
  the forward direction's outputs past the last key frame are simply ignored, and the
  backward direction starts from the last key frame because its state stays at zero until
  then; the outputs are averaged over the key steps only.

So each clip gets exactly what the GRU gives on its packed key frames alone. The GRU's
weights live in a standard ``nn.GRU`` (so the authors' state dicts load); its cell is
unrolled here because the frozen-state recurrence is what keeps shapes static.

Training gradients follow Eqs. 14-17: the forward pass uses the binary mask B; backward,
dΩ/dF = dΩ/dF_key·B and dΩ/dβ_t = dΩ/dB_t on key frames, 0 elsewhere (`KeyFrameGate`, a
custom autograd function; in eval and export the plain mask is used).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from mestream.models.akmnet.config import AKMNetConfig


class ClipOutput(NamedTuple):
    """What the clip head returns; (B, T) tensors are zero (False) on padded frames."""

    logits: torch.Tensor  # (B, classes)
    probabilities: torch.Tensor  # (B, classes)
    beta: torch.Tensor  # (B, T) fine-grained weights, Eq. 7
    key_mask: torch.Tensor  # (B, T) bool, Eq. 8
    max_key: torch.Tensor  # (B,) int64: the key frame with the largest β (the apex estimate)


class BasicBlock(nn.Module):
    """ResNet's two 3×3 convolutions with a shortcut (torchvision's layout and names)."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class FrameEncoder(nn.Module):
    """The ResNet-18 of Table II, shared by every frame: (N, 1, 128, 128) → (N, C, 4, 4) and P̄ (N, C).

    conv1 is 5×5 stride 2 padding 2 on one channel, then a 3×3 max-pool (stride 2, pad 1),
    then four stages of BasicBlocks at 32/16/8/4 pixels.
    """

    def __init__(self, config: AKMNetConfig) -> None:
        super().__init__()
        w = config.widths
        self.conv1 = nn.Conv2d(config.in_channels, w[0], 5, 2, 2, bias=False)
        self.bn1 = nn.BatchNorm2d(w[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        layers = []
        inplanes = w[0]
        for i, (planes, n) in enumerate(zip(w, config.blocks)):
            blocks = [BasicBlock(inplanes, planes, 1 if i == 0 else 2)]
            blocks += [BasicBlock(planes, planes) for _ in range(n - 1)]
            layers.append(nn.Sequential(*blocks))
            inplanes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.out_channels = w[3]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(frames))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return x, x.mean(dim=(2, 3))


class KeyFrameGate(torch.autograd.Function):
    """B = 1 on key frames, 0 elsewhere; backward dΩ/dβ = dΩ/dB on key frames only (Eq. 17)."""

    @staticmethod
    def forward(ctx, beta: torch.Tensor, key: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(key)
        return key.to(beta.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        (key,) = ctx.saved_tensors
        return grad * key.to(grad.dtype), None


def mine_key_frames(
    pooled: torch.Tensor, mask: torch.Tensor, attention: nn.Module
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eqs. 5-8 over the valid frames: β (B, T) and the key mask (B, T), both 0 on padding.

    α_t = σ(W·P̄_t); P̃ = Σ_t α_t·P̄_t over valid t; β_t = cos(P̄_t, P̃); key: β_t ≥ mean of β.

    The frames with the largest β are always key frames. Mathematically they are anyway, but
    when every β is equal (identical frames, e.g. a clip without motion) the float mean can
    round above them, which would leave no key frame at all, and whether it does depends on
    the summation order (padding, batch, ONNX runtime).
    """
    valid = mask.to(pooled.dtype)
    alpha = torch.sigmoid(attention(pooled).squeeze(-1)) * valid
    glob = (alpha.unsqueeze(-1) * pooled).sum(dim=1)
    beta = F.cosine_similarity(pooled, glob.unsqueeze(1), dim=-1, eps=1e-8) * valid
    mean = beta.sum(dim=1, keepdim=True) / valid.sum(dim=1, keepdim=True).clamp(min=1.0)
    top = torch.where(mask, beta, torch.full_like(beta, -2.0)).amax(dim=1, keepdim=True)
    key = ((beta >= mean) | (beta >= top)) & mask
    return beta, key


def pack_to_front(key: torch.Tensor) -> torch.Tensor:
    """A one-hot (B, T, T) matrix M with (M @ x)[j] = the j-th key frame of x; rows past the
    last key frame are zero. Built from a cumulative sum: no data-dependent shapes."""
    T = key.shape[1]
    dest = torch.cumsum(key.to(torch.int64), dim=1) - 1  # slot of each key frame
    slots = torch.arange(T, device=key.device).view(1, T, 1)
    return ((dest.unsqueeze(1) == slots) & key.unsqueeze(1)).to(torch.float32)


class MaskedBiGRU(nn.Module):
    """A multi-layer bidirectional GRU over padded sequences whose valid steps come first.

    Same weights (an ``nn.GRU`` named ``gru``) and, on the valid steps, the same outputs as
    ``nn.GRU`` on each sequence cut to its length. Returns the mean over valid steps of the
    last layer's outputs, (N, 2·hidden).
    """

    def __init__(self, input_size: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.gru = nn.GRU(input_size, hidden, layers, bidirectional=True, batch_first=True)
        self.hidden, self.layers = hidden, layers

    def _direction(self, x: torch.Tensor, valid: torch.Tensor, layer: int, reverse: bool) -> torch.Tensor:
        sfx = f"_l{layer}" + ("_reverse" if reverse else "")
        w_ih, w_hh = getattr(self.gru, "weight_ih" + sfx), getattr(self.gru, "weight_hh" + sfx)
        b_ih, b_hh = getattr(self.gru, "bias_ih" + sfx), getattr(self.gru, "bias_hh" + sfx)
        n, T, _ = x.shape
        H = self.hidden
        gi = F.linear(x, w_ih, b_ih)  # (N, T, 3H): every step's input projection at once
        h = x.new_zeros(n, H)
        outs: list[torch.Tensor] = [h] * T
        for t in range(T - 1, -1, -1) if reverse else range(T):
            gh = F.linear(h, w_hh, b_hh)
            i_r, i_z, i_n = gi[:, t].chunk(3, dim=1)
            h_r, h_z, h_n = gh.chunk(3, dim=1)
            r = torch.sigmoid(i_r + h_r)
            z = torch.sigmoid(i_z + h_z)
            cand = torch.tanh(i_n + r * h_n)
            new = (1.0 - z) * cand + z * h
            h = torch.where(valid[:, t : t + 1], new, h)  # frozen on steps past the sequence's end
            outs[t] = h
        return torch.stack(outs, dim=1)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``x`` (N, T, input), ``valid`` (N, T) bool with the valid steps first."""
        for layer in range(self.layers):
            x = torch.cat(
                [self._direction(x, valid, layer, False), self._direction(x, valid, layer, True)], dim=-1
            )
        w = valid.to(x.dtype).unsqueeze(-1)
        return (x * w).sum(dim=1) / w.sum(dim=1).clamp(min=1.0)


class ClipHead(nn.Module):
    """Features (B, T, C, 4, 4) and validity mask (B, T) → `ClipOutput` (Eqs. 5-9, bi-GRU, classifier)."""

    def __init__(self, config: AKMNetConfig) -> None:
        super().__init__()
        c, s = config.widths[3], config.feature_size
        self.attention = nn.Linear(c, 1)
        self.temporal = MaskedBiGRU(c, config.gru_hidden, config.gru_layers)
        self.dropout = nn.Dropout(config.dropout)
        self.fc = nn.Linear(s * s * 2 * config.gru_hidden, config.num_classes)
        nn.init.xavier_normal_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> ClipOutput:
        B, T, C, S, _ = features.shape
        mask = mask.to(torch.bool)
        # padded slots may hold anything (a reused buffer, NaN): zero them, since 0·NaN is NaN
        features = torch.where(mask.view(B, T, 1, 1, 1), features, torch.zeros_like(features))
        pooled = features.mean(dim=(3, 4))
        beta, key = mine_key_frames(pooled, mask, self.attention)
        if self.training and torch.is_grad_enabled():
            gate = KeyFrameGate.apply(beta, key)  # Eqs. 14-17
        else:
            gate = key.to(features.dtype)
        selected = features * gate.view(B, T, 1, 1, 1)  # Eq. 9: F_key = F ⊙ B
        packed = torch.einsum(
            "bjt,btk->bjk", pack_to_front(key).to(features.dtype), selected.reshape(B, T, C * S * S)
        )
        n_key = key.sum(dim=1, keepdim=True)
        steps = torch.arange(T, device=features.device).view(1, T) < n_key  # (B, T): packed key steps
        seq = (
            packed.view(B, T, C, S * S).permute(0, 3, 1, 2).reshape(B * S * S, T, C)
        )  # one sequence per position
        pos_valid = steps.unsqueeze(1).expand(B, S * S, T).reshape(B * S * S, T)
        g = self.temporal(seq, pos_valid).view(B, S * S * 2 * self.temporal.hidden)
        logits = self.fc(self.dropout(g))
        max_key = torch.where(key, beta, torch.full_like(beta, -2.0)).argmax(dim=1)
        return ClipOutput(logits, torch.softmax(logits, dim=1), beta, key, max_key)


class AKMNet(nn.Module):
    """`FrameEncoder` then `ClipHead`: frames (B, T, 1, H, W) and mask (B, T) → `ClipOutput`.

    The two stages are separate so that a runtime can encode each frame once (frames overlap
    between spotted clips) and batch the clip heads. Here only the valid frames are encoded
    (padding would skew BatchNorm's batch statistics in training and costs time); padded
    slots get zero features, which the head masks out anyway.
    """

    def __init__(self, config: AKMNetConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = FrameEncoder(config)
        self.head = ClipHead(config)

    def encode(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, 1, H, W) → (B, T, C, 4, 4); boolean indexing, so not for export (export
        `encoder` and `head` separately)."""
        mask = mask.to(torch.bool)
        feats, _ = self.encoder(frames[mask])
        out = feats.new_zeros(*mask.shape, *feats.shape[1:])
        out[mask] = feats
        return out

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> ClipOutput:
        return self.head(self.encode(frames, mask), mask)


def build(config: AKMNetConfig) -> AKMNet:
    """A freshly initialised AKMNet (the registry's entry point)."""
    if not isinstance(config, AKMNetConfig):
        raise TypeError(f"akmnet.build needs an AKMNetConfig, got {type(config).__name__}")
    return AKMNet(config)

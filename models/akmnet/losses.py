"""The training objective Ω = L_c + λ1·L_GS + λ2·L_MMM (Eqs. 4, 10-13), over padded batches.

L_GS = max(0, sum(B) - 1) keeps the key set small; L_MMM = C - (mean β over key frames -
mean β over the other valid frames) pushes the two groups apart. Both are averaged over the
clips of a batch, as the authors' code does. Gradients reach β through the key mask's
straight-through gate (`network.KeyFrameGate`), so sum(B) has gradient 1 per key frame (Eq. 17).

A clip whose valid frames are all key frames (one frame, or equal β) has no "other" frames:
their mean is taken as 0 there rather than 0/0.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from mestream.models.akmnet.network import KeyFrameGate


class Losses(NamedTuple):
    total: torch.Tensor
    classification: torch.Tensor
    sparsity: torch.Tensor  # L_GS, before λ1
    margin: torch.Tensor  # L_MMM, before λ2


def gs_loss(gate: torch.Tensor) -> torch.Tensor:
    """Eq. 10 per clip: max(0, sum(B) - 1); ``gate`` (B, T) is 0 on padding."""
    return torch.clamp(gate.sum(dim=1) - 1.0, min=0.0)


def mmm_loss(beta: torch.Tensor, key: torch.Tensor, mask: torch.Tensor, margin: float = 2.0) -> torch.Tensor:
    """Eq. 11 per clip: C - (mean of β over key frames - mean of β over non-key valid frames)."""
    key_f = key.to(beta.dtype)
    rest_f = (mask.to(torch.bool) & ~key.to(torch.bool)).to(beta.dtype)
    key_mean = (beta * key_f).sum(dim=1) / key_f.sum(dim=1).clamp(min=1.0)
    rest_mean = (beta * rest_f).sum(dim=1) / rest_f.sum(dim=1).clamp(min=1.0)
    return margin - (key_mean - rest_mean)


def akmnet_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    beta: torch.Tensor,
    key: torch.Tensor,
    mask: torch.Tensor,
    *,
    lambda_gs: float = 0.1,
    lambda_mmm: float = 1.0,
    margin: float = 2.0,
) -> Losses:
    """Ω of Eq. 13 averaged over the batch, with its terms for logging."""
    ce = F.cross_entropy(logits, target)
    gate = KeyFrameGate.apply(beta, key) if beta.requires_grad else key.to(beta.dtype)
    gs = gs_loss(gate).mean()
    mmm = mmm_loss(beta, key, mask, margin).mean()
    return Losses(ce + lambda_gs * gs + lambda_mmm * mmm, ce, gs, mmm)

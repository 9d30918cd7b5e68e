"""MESNet's losses: Eq. 8 (pre-training), Eq. 11 (CPN), Eq. 12-13 (CRN) and Eq. 14 (their sum).

Class index 1 is "ME". λ/2·Σw² runs over the weights of the listed layers; the paper omits
biases from all its formulas ("for convenience, all biases are omitted"), so they are not
penalised.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn


def l2_penalty(modules: Iterable[nn.Module], l2: float) -> torch.Tensor:
    """λ/2 · Σ w² over the weight tensors of ``modules``."""
    terms = [p.pow(2).sum() for m in modules for name, p in m.named_parameters() if name.endswith("weight")]
    return 0.5 * l2 * torch.stack(terms).sum() if terms else torch.zeros(())


def pretrain_loss(
    logits: torch.Tensor, target: torch.Tensor, net: nn.Module, head: nn.Module, l2: float
) -> torch.Tensor:
    """Eq. 8: cross-entropy + L2 over the four 2D convs, the two 1D convs and the head's first two
    FC layers (not its last)."""
    reg = l2_penalty([net.encoder, net.temporal, head.fc1, head.fc2], l2)
    return F.cross_entropy(logits, target) + reg


def balance_mask(labels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Eq. 11's M: 1 for every ME position; a non-ME position is kept with probability #ME / #non-ME."""
    me = labels == 1
    n_me, n_non = int(me.sum()), int((~me).sum())
    p = n_me / n_non if n_non else 0.0
    keep = torch.rand(labels.shape, generator=generator, device=labels.device) < p
    return me | (~me & keep)


def cpn_loss(
    logits: list[torch.Tensor],
    labels: list[torch.Tensor],
    net: nn.Module,
    l2: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Eq. 11: masked cross-entropy over all positions of the five scales + L2 over all weights of
    the backbone and the CPN. ``logits[s]`` is (B, 2, N_s), ``labels[s]`` (B, N_s)."""
    flat_logits = torch.cat([lg.permute(0, 2, 1).reshape(-1, 2) for lg in logits])
    flat_labels = torch.cat([lb.reshape(-1) for lb in labels])
    mask = balance_mask(flat_labels, generator).float()
    ce = F.cross_entropy(flat_logits, flat_labels, reduction="none")
    reg = l2_penalty([net.encoder, net.temporal, net.cpn], l2)
    return (ce * mask).sum() / mask.sum().clamp(min=1.0) + reg


def crn_loss(
    logits: torch.Tensor,
    offsets: torch.Tensor,
    labels: torch.Tensor,
    targets: torch.Tensor,
    crn: nn.Module,
    l2: float,
) -> torch.Tensor:
    """Eq. 12-13: mean over proposals of cross-entropy + S·SmoothL1 of both offsets (S = 1 for ME
    proposals), + L2 over the CRN's weights except its last two (parallel) FC layers."""
    reg = l2_penalty([crn.conv1, crn.conv2, crn.fc1, crn.fc2], l2)
    if not len(labels):
        return reg
    ce = F.cross_entropy(logits, labels, reduction="none")
    box = F.smooth_l1_loss(offsets, targets, reduction="none", beta=1.0).sum(dim=1) * (labels == 1).float()
    return (ce + box).mean() + reg


def regression_targets(proposals: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Eq. 12's targets ((a - a')/(b - a), (b - b')/(b - a)) for proposals [a', b'] and matched
    truths [a, b]."""
    length = (truth[:, 1] - truth[:, 0]).clamp(min=1).float()
    return torch.stack(
        [(truth[:, 0] - proposals[:, 0]) / length, (truth[:, 1] - proposals[:, 1]) / length], dim=1
    )


def mesnet_loss(cpn: torch.Tensor, crn: torch.Tensor) -> torch.Tensor:
    """Eq. 14."""
    return cpn + crn

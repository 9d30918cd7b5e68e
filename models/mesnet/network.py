"""MESNet layer by layer (section III), cut into the three subgraphs the runtime exports.

Subgraphs (static shapes, no data-dependent control flow inside any of them):

1. `EncoderSubgraph`: flow frames (B, 2, H, W) → spatial features f_n (B, L).
2. `WindowHeadSubgraph`: a window of features (B, N, L) → the ME probability of every CPN
   position of the five scales, five tensors (B, N_s).
3. `CRNSubgraph`: resampled proposals (B, N_CR, L) → class probabilities (B, 2) and boundary
   offsets (B, 2).

Between 2 and 3 the numpy post-processing of `mestream.engine.intervals` picks the
proposals; `MESNet.spot` runs the same path end to end in torch. Class index 1 is "ME".
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mestream.engine.intervals import Spots, cpn_proposals, crn_intervals, merge, shift, window_starts
from mestream.models.mesnet.config import MESNetConfig


class SpatialEncoder(nn.Module):
    """Table I: four 3×3 convs (padding 2) each with ReLU and 2×2 max-pool, flattened to f_n."""

    def __init__(self, config: MESNetConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = config.in_channels
        for out in config.conv_channels:
            layers += [
                nn.Conv2d(channels, out, 3, padding=config.conv_padding),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            channels = out
        self.layers = nn.Sequential(*layers).to(memory_format=torch.channels_last)

    def forward(self, flow: torch.Tensor) -> torch.Tensor:
        # channels-last runs these thin convs ~1.5x faster on CPU; the result is the same
        return self.layers(flow.contiguous(memory_format=torch.channels_last)).flatten(1)


class TemporalConv(nn.Module):
    """Two 1D convs (kernel 3, padding 2, 128 channels, ReLU) over F: (B, N, L) → S (B, 128, N+4)."""

    def __init__(self, in_features: int, channels: int = 128, kernel: int = 3, padding: int = 2) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(in_features, channels, kernel, padding=padding)
        self.conv2 = nn.Conv1d(channels, channels, kernel, padding=padding)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(features.transpose(1, 2)))
        return F.relu(self.conv2(x))


class CPN(nn.Module):
    """Table II: five two-layer dilated sub-networks, no padding; layer 1 shared by sub-networks 1-4.

    Returns the logits (B, 2, N_s) of every scale; softmax over dim 1 gives the paper's ŷ.
    """

    def __init__(self, config: MESNetConfig) -> None:
        super().__init__()
        c_in, c = config.temporal_channels, config.cpn_channels
        first = {layer1 for layer1, _ in config.cpn_layers[:4]}
        if len(first) != 1:
            raise ValueError(f"CPN: sub-networks 1-4 must share their first layer, got {sorted(first)}")
        ((k1, d1),) = first
        self.shared = nn.Conv1d(c_in, c, k1, dilation=d1)
        (k5, d5), _ = config.cpn_layers[4]
        self.first5 = nn.Conv1d(c_in, c, k5, dilation=d5)
        self.second = nn.ModuleList(nn.Conv1d(c, 2, k, dilation=d) for _, (k, d) in config.cpn_layers)

    def forward(self, s: torch.Tensor) -> list[torch.Tensor]:
        shared, fifth = F.relu(self.shared(s)), F.relu(self.first5(s))
        return [conv(shared if i < 4 else fifth) for i, conv in enumerate(self.second)]


class CRN(nn.Module):
    """Classification-regression network: its own two unpadded 1D convs, FC 300 → FC 300 → dropout,
    then a 2-way classifier and a 2-value boundary regression (Fig. 5)."""

    def __init__(self, config: MESNetConfig) -> None:
        super().__init__()
        c = config.temporal_channels
        self.conv1 = nn.Conv1d(config.feature_size, c, config.temporal_kernel)
        self.conv2 = nn.Conv1d(c, c, config.temporal_kernel)
        steps = config.crn_steps - 2 * (config.temporal_kernel - 1)
        self.fc1 = nn.Linear(c * steps, config.fc_units)
        self.fc2 = nn.Linear(config.fc_units, config.fc_units)
        self.dropout = nn.Dropout(config.dropout)
        self.cls = nn.Linear(config.fc_units, 2)
        self.reg = nn.Linear(config.fc_units, 2)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, N_CR, L) f_n → (class logits (B, 2), offsets (B, 2))."""
        x = F.relu(self.conv2(F.relu(self.conv1(features.transpose(1, 2)))))
        x = self.dropout(F.relu(self.fc2(F.relu(self.fc1(x.flatten(1))))))
        return self.cls(x), self.reg(x)


class PretrainHead(nn.Module):
    """Backbone pre-training head: S flattened → FC 300 → FC 300 → dropout 0.5 → 2 (section III-A)."""

    def __init__(self, config: MESNetConfig) -> None:
        super().__init__()
        steps = config.pretrain_steps + 2 * (2 * config.temporal_padding - (config.temporal_kernel - 1))
        self.fc1 = nn.Linear(config.temporal_channels * steps, config.fc_units)
        self.fc2 = nn.Linear(config.fc_units, config.fc_units)
        self.dropout = nn.Dropout(config.dropout)
        self.out = nn.Linear(config.fc_units, 2)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return self.out(self.dropout(F.relu(self.fc2(F.relu(self.fc1(s.flatten(1)))))))


class MESNet(nn.Module):
    """The 2+1D backbone, the CPN and the CRN.

    Args:
        config: a `MESNetConfig` (``PRESETS["paper"]`` holds the paper's values).

    ``forward(flow)`` takes one batch of windows (B, N, 2, H, W) and returns the CPN logits
    of the five scales and the spatial features F (B, N, L), which training needs for the CRN.
    """

    def __init__(self, config: MESNetConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = SpatialEncoder(config)
        self.temporal = TemporalConv(
            config.feature_size, config.temporal_channels, config.temporal_kernel, config.temporal_padding
        )
        self.cpn = CPN(config)
        self.crn = CRN(config)

    def encode(self, flow: torch.Tensor) -> torch.Tensor:
        """(..., 2, H, W) → (..., L)."""
        lead = flow.shape[:-3]
        return self.encoder(flow.reshape(-1, *flow.shape[-3:])).reshape(*lead, -1)

    def cpn_logits(self, features: torch.Tensor) -> list[torch.Tensor]:
        return self.cpn(self.temporal(features))

    def forward(self, flow: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        features = self.encode(flow)
        return self.cpn_logits(features), features

    def window_scores(self, features: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(torch.softmax(logits, dim=1)[:, 1] for logits in self.cpn_logits(features))

    def crn_outputs(self, proposals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, offsets = self.crn(proposals)
        return torch.softmax(logits, dim=1), offsets

    def subgraphs(self) -> dict[str, nn.Module]:
        """The three export subgraphs, sharing this module's weights (and its train / eval mode)."""
        subgraphs = {
            "encoder": EncoderSubgraph(self),
            "window_head": WindowHeadSubgraph(self),
            "crn": CRNSubgraph(self),
        }
        return {name: subgraph.train(self.training) for name, subgraph in subgraphs.items()}

    @torch.no_grad()
    def window_outputs(
        self, flow: np.ndarray | torch.Tensor, batch_windows: int = 8
    ) -> tuple[list[int], torch.Tensor, list[np.ndarray]]:
        """One video's flow (T, 2, H, W) → window starts, features (W, N, L), CPN scores per scale
        (W, N_s)."""
        cfg = self.config
        flow = torch.as_tensor(np.asarray(flow, dtype=np.float32))
        starts = window_starts(len(flow), cfg.window_steps, cfg.overlap_steps)
        features, scores = [], []
        for i in range(0, len(starts), batch_windows):
            windows = torch.stack([_window(flow, s, cfg.window_steps) for s in starts[i : i + batch_windows]])
            feats = self.encode(windows)
            features.append(feats)
            scores.append([s.numpy() for s in self.window_scores(feats)])
        per_scale = [np.concatenate([chunk[k] for chunk in scores]) for k in range(len(scores[0]))]
        return starts, torch.cat(features), per_scale

    @torch.no_grad()
    def spot_windows(
        self,
        starts: list[int],
        features: torch.Tensor,
        scores: list[np.ndarray],
        total: int,
        t_cpn: float,
        t_crn: float,
    ) -> Spots:
        """Post-processing + CRN over `window_outputs`: the video's spots in steps."""
        cfg = self.config
        found: list[Spots] = []
        for w, start in enumerate(starts):
            props = cpn_proposals([s[w] for s in scores], cfg, t_cpn)
            if not len(props):
                continue
            probs, offsets = self.crn_outputs(resample_features(features[w], props.intervals, cfg.crn_steps))
            spots = crn_intervals(props, probs.numpy(), offsets.numpy(), t_crn, cfg.t_nms)
            found.append(shift(spots, start, valid=total))
        return merge(found, cfg.t_nms)

    @torch.no_grad()
    def spot(
        self, flow: np.ndarray | torch.Tensor, *, t_cpn: float | None = None, t_crn: float | None = None
    ) -> Spots:
        """End to end on one video's flow (T, 2, H, W): spotted intervals in sample steps.

        The proposals' features are resampled with torch (`resample_features`); the staged
        runtime path does it in numpy; a test checks both give the same intervals.
        """
        cfg = self.config
        starts, features, scores = self.window_outputs(flow)
        return self.spot_windows(
            starts,
            features,
            scores,
            len(flow),
            cfg.t_cpn if t_cpn is None else t_cpn,
            cfg.t_crn if t_crn is None else t_crn,
        )


def resample_features(features: torch.Tensor, intervals: np.ndarray, steps: int) -> torch.Tensor:
    """f_a..f_b of each interval (K, 2) of ``features`` (N, L), linearly resampled to ``steps``
    (ends included): (K, steps, L). Differentiable, so training uses it too."""
    ivs = np.asarray(intervals, dtype=np.float64).reshape(-1, 2)
    pos = ivs[:, :1] + (ivs[:, 1:] - ivs[:, :1]) * np.linspace(0.0, 1.0, steps)[None]
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, ivs[:, 1:].astype(np.int64))
    w = torch.as_tensor(pos - lo, dtype=features.dtype)[..., None]
    return features[torch.as_tensor(lo)] * (1 - w) + features[torch.as_tensor(hi)] * w


def _window(flow: torch.Tensor, start: int, n: int) -> torch.Tensor:
    """Steps start..start+n-1, zero-padded past the end (a video shorter than a window)."""
    part = flow[start : start + n]
    if len(part) < n:
        part = torch.cat([part, part.new_zeros((n - len(part), *part.shape[1:]))])
    return part


class EncoderSubgraph(nn.Module):
    """Subgraph 1: (B, 2, H, W) flow → (B, L) f_n."""

    def __init__(self, net: MESNet) -> None:
        super().__init__()
        self.encoder = net.encoder

    def forward(self, flow: torch.Tensor) -> torch.Tensor:
        return self.encoder(flow)


class WindowHeadSubgraph(nn.Module):
    """Subgraph 2: (B, N, L) → five (B, N_s) ME probabilities, one per CPN scale."""

    def __init__(self, net: MESNet) -> None:
        super().__init__()
        self.temporal, self.cpn = net.temporal, net.cpn

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(torch.softmax(logits, dim=1)[:, 1] for logits in self.cpn(self.temporal(features)))


class CRNSubgraph(nn.Module):
    """Subgraph 3: (B, N_CR, L) → (probabilities (B, 2), offsets (B, 2))."""

    def __init__(self, net: MESNet) -> None:
        super().__init__()
        self.crn = net.crn

    def forward(self, proposals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, offsets = self.crn(proposals)
        return torch.softmax(logits, dim=1), offsets


class PretrainNet(nn.Module):
    """The backbone with the pre-training head (Eq. 8): clips (B, N_pre, 2, H, W) → logits (B, 2)."""

    def __init__(self, net: MESNet) -> None:
        super().__init__()
        self.net = net
        self.head = PretrainHead(net.config)

    def forward(self, flow: torch.Tensor) -> torch.Tensor:
        return self.head(self.net.temporal(self.net.encode(flow)))

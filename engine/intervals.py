"""MESNet's bookkeeping and post-processing in numpy only: the ONNX runtime uses it without torch.

Steps are sample indices at ``sample_hz``. A CPN output position n of a sub-network with
receptive field r on F covers F[n - P, n - P + r - 1], where P = 2·padding is the shift
added by the two padded temporal convs; positions reaching past the window are clipped.

CRN boundaries (Eq. 12): training normalises the targets by the ground-truth length b - a,
which is unknown at inference, so an output interval is ``[a' + r1·(b' - a'), b' + r2·(b' - a')]``
with the proposal's own length (at least 1 step). NMS runs on the CPN proposals before the
CRN (Table VIII reports CPN outputs after NMS), on the CRN outputs of a window, and once more
on the merged outputs of overlapping windows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Spots:
    """Intervals (K, 2) inclusive, in steps (float after regression), with scores (K,)."""

    intervals: np.ndarray
    scores: np.ndarray

    @classmethod
    def empty(cls) -> Spots:
        return cls(np.zeros((0, 2)), np.zeros(0))

    def __len__(self) -> int:
        return len(self.scores)


def window_starts(total: int, window: int, overlap: int) -> list[int]:
    """Window starts covering ``total`` steps; the last window ends on the last step (its overlap
    with the one before may be longer, as in the paper's "except the final two clips")."""
    if total <= window:
        return [0]
    stride = window - overlap
    starts = list(range(0, total - window, stride))
    return starts + [total - window]


def receptive_fields(temporal_kernel: int, cpn_layers: Sequence[Sequence[Sequence[int]]]) -> tuple[int, ...]:
    """Each CPN sub-network's receptive field on F (7/9/11/13/15 for Table II): the two backbone
    convs, then each sub-network's two (kernel, dilation) layers."""
    backbone = 2 * (temporal_kernel - 1)
    return tuple(1 + backbone + (k1 - 1) * d1 + (k2 - 1) * d2 for (k1, d1), (k2, d2) in cpn_layers)


class CPNGeometry(Protocol):
    """The CPN's layout that turns its outputs into intervals: a model config, or the live
    engine's `MESNetGeometry` (which carries the run's thresholds)."""

    @property
    def window_steps(self) -> int: ...
    @property
    def temporal_kernel(self) -> int: ...
    @property
    def temporal_padding(self) -> int: ...
    @property
    def receptive_fields(self) -> Sequence[int]: ...
    @property
    def max_proposals(self) -> int: ...
    @property
    def t_nms(self) -> float: ...


def cpn_positions(config: CPNGeometry, steps: int | None = None) -> list[np.ndarray]:
    """For each scale, the F interval (N_s, 2) of every output position, clipped to the window
    of ``steps`` (default ``config.window_steps``; the live engine also runs shorter windows)."""
    n = config.window_steps if steps is None else steps
    shift = 2 * config.temporal_padding
    length_s = n + 2 * (2 * config.temporal_padding - (config.temporal_kernel - 1))
    out = []
    for rf in config.receptive_fields:
        count = length_s - (rf - 2 * (config.temporal_kernel - 1)) + 1
        start = np.arange(count) - shift
        out.append(np.clip(np.stack([start, start + rf - 1], axis=1), 0, n - 1))
    return out


def interval_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of inclusive step intervals, every pair: (K, 2) × (M, 2) → (K, M)."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1, 2), np.asarray(b, dtype=np.float64).reshape(-1, 2)
    inter = np.minimum(a[:, None, 1], b[None, :, 1]) - np.maximum(a[:, None, 0], b[None, :, 0]) + 1
    inter = np.clip(inter, 0, None)
    union = (a[:, 1] - a[:, 0] + 1)[:, None] + (b[:, 1] - b[:, 0] + 1)[None, :] - inter
    return inter / np.maximum(union, 1e-9)


def labels(intervals: np.ndarray, truth: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 10: 1 (ME) where the IoU with the nearest true ME exceeds ``threshold``; also returns
    the index of that nearest ME (-1 when there is none)."""
    if not len(truth) or not len(intervals):
        return np.zeros(len(intervals), np.int64), np.full(len(intervals), -1)
    ious = interval_iou(intervals, truth)
    best = ious.argmax(axis=1)
    return (ious[np.arange(len(best)), best] > threshold).astype(np.int64), best


def nms(intervals: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Temporal NMS: indices kept, by descending score; a later interval is dropped when its IoU
    with a kept one exceeds ``threshold``."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    keep: list[int] = []
    for i in order:
        if not keep or interval_iou(intervals[i : i + 1], intervals[keep]).max() <= threshold:
            keep.append(int(i))
    return np.asarray(keep, dtype=np.int64)


def cpn_proposals(
    scores: Sequence[np.ndarray], config: CPNGeometry, t_cpn: float, steps: int | None = None
) -> Spots:
    """Positions of all scales with an ME probability >= T_CPN, after NMS, at most
    ``config.max_proposals`` of them (highest first). NMS looks at the ``8·max_proposals``
    best positions only, which bounds its cost when a window is full of motion."""
    positions = cpn_positions(config, steps)
    ivs = np.concatenate([p[np.asarray(s) >= t_cpn] for p, s in zip(positions, scores)])
    sc = np.concatenate([np.asarray(s)[np.asarray(s) >= t_cpn] for s in scores])
    if not len(sc):
        return Spots(np.zeros((0, 2), np.int64), np.zeros(0))
    top = np.argsort(-sc, kind="stable")[: 8 * config.max_proposals]
    keep = top[nms(ivs[top], sc[top], config.t_nms)[: config.max_proposals]]
    return Spots(ivs[keep], sc[keep])


def resample(features: np.ndarray, start: int, end: int, steps: int) -> np.ndarray:
    """f_start..f_end (rows of ``features``) linearly resampled to ``steps`` rows (ends included)."""
    pos = start + (end - start) * np.linspace(0.0, 1.0, steps)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, end)
    w = (pos - lo)[:, None].astype(features.dtype)
    return features[lo] * (1 - w) + features[hi] * w


def crn_intervals(
    proposals: Spots, probs: np.ndarray, offsets: np.ndarray, t_crn: float, t_nms: float
) -> Spots:
    """CRN outputs → intervals (module docstring), kept where P(ME) >= T_CRN, then NMS."""
    keep = np.asarray(probs)[:, 1] >= t_crn
    if not keep.any():
        return Spots.empty()
    a, b = proposals.intervals[keep, 0].astype(np.float64), proposals.intervals[keep, 1].astype(np.float64)
    length = np.maximum(b - a, 1.0)
    r = np.asarray(offsets, dtype=np.float64)[keep]
    ivs = np.stack([a + r[:, 0] * length, b + r[:, 1] * length], axis=1)
    ivs[:, 1] = np.maximum(ivs[:, 1], ivs[:, 0])
    scores = np.asarray(probs, dtype=np.float64)[keep, 1]
    k = nms(ivs, scores, t_nms)
    return Spots(ivs[k], scores[k])


def shift(spots: Spots, start: int, valid: int) -> Spots:
    """Window steps → video steps; intervals are clipped to the video's ``valid`` steps."""
    if not len(spots):
        return spots
    ivs = np.clip(spots.intervals + start, 0, valid - 1)
    return Spots(ivs, spots.scores)


def merge(parts: Sequence[Spots], t_nms: float) -> Spots:
    """One video's spots from overlapping windows: concatenated, then NMS."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return Spots.empty()
    ivs = np.concatenate([p.intervals for p in parts])
    sc = np.concatenate([p.scores for p in parts])
    k = nms(ivs, sc, t_nms)
    return Spots(ivs[k], sc[k])


def to_frames(spots: Spots, sample_frames: np.ndarray) -> list[tuple[int, int, float]]:
    """Steps → source frames: a (fractional) step maps by linear interpolation between the
    source frames its neighbouring samples stand for (each sample's centre frame)."""
    steps = np.arange(len(sample_frames))
    out = []
    for (a, b), s in zip(spots.intervals, spots.scores):
        fa = int(round(float(np.interp(a, steps, sample_frames))))
        fb = int(round(float(np.interp(b, steps, sample_frames))))
        out.append((fa, max(fa, fb), float(s)))
    return out

"""The feature-difference baseline MESNet must beat: optical-flow magnitude and a threshold.

In the spirit of the paper's FD methods (LBP-χ², MDMD): a per-step feature (here the largest
locally averaged flow magnitude on the face, from the same flow MESNet sees), the video's
threshold ``T = mean + p·(max - mean)`` (the FD methods' rule), and every run of steps above
it that lasts as long as a micro-expression can (≤ 500 ms plus the flow gap) gives its peak;
as in MEGC's peak-based baselines, the spotted interval is the peak ± ``half`` steps.
``p`` and ``half`` are chosen on training / validation subjects only.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from mestream.engine.intervals import Spots, to_frames
from mestream.engine.metrics import Interval, megc_metric
from mestream.models.mesnet.data import FlowVideo

P_GRID = tuple(float(p) for p in np.round(np.geomspace(0.0005, 0.5, 31), 5))
HALF_GRID = (2, 3, 4, 5, 6, 7, 8)


def feature(video: FlowVideo, window: int = 3) -> np.ndarray:
    """(T,) the max over the face of the box-averaged flow magnitude of each step."""
    mag = np.sqrt((video.flow.astype(np.float32) ** 2).sum(axis=1))
    return np.array([cv2.blur(m, (window, window)).max() for m in mag])


def spot(
    video: FlowVideo, p: float, gap: int, sample_hz: float, signal: np.ndarray | None = None, half: int = 5
) -> list[Interval]:
    """Peaks of the runs above the video's threshold (1 step to 500 ms + ``gap`` long) ± ``half`` steps."""
    f = feature(video) if signal is None else signal
    mean = float(f.mean())
    above = f > mean + p * (float(f.max()) - mean)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], above.astype(np.int8), [0]])))
    longest = int(round(0.5 * sample_hz)) + gap
    runs = [(a, b - 1) for a, b in zip(edges[::2], edges[1::2]) if b - a <= longest]
    if not runs:
        return []
    peaks = np.array([a + int(np.argmax(f[a : b + 1])) for a, b in runs])
    ivs = np.clip(np.stack([peaks - half, peaks + half], axis=1), 0, len(f) - 1).astype(np.float64)
    spots = Spots(ivs, f[peaks])
    return [Interval(video.name, a, b, s, "micro") for a, b, s in to_frames(spots, video.sample_frames)]


def predict(
    videos: Sequence[FlowVideo],
    p: float,
    gap: int,
    sample_hz: float,
    signals: Sequence[np.ndarray] | None = None,
    half: int = 5,
) -> list[Interval]:
    signals = signals or [feature(v) for v in videos]
    return [iv for v, s in zip(videos, signals) for iv in spot(v, p, gap, sample_hz, s, half)]


def tune(
    videos: Sequence[FlowVideo],
    truth: Sequence[Interval],
    gap: int,
    sample_hz: float,
    grid: Sequence[float] = P_GRID,
    halves: Sequence[int] = HALF_GRID,
) -> tuple[float, int, float]:
    """(p, half, micro F1) with the best MEGC micro F1 on ``videos`` (training / validation subjects)."""
    signals = [feature(v) for v in videos]
    best = (float(grid[0]), int(halves[0]), -1.0)
    for p in grid:
        for half in halves:
            f1 = megc_metric(predict(videos, float(p), gap, sample_hz, signals, half), truth)["micro"]["f1"]
            if f1 > best[2] + 1e-9:
                best = (float(p), int(half), f1)
    return best

"""AKMNet's clip preparation, shared by training (`mestream.models.akmnet.data`) and the live
recognition stage, so the network sees at run time exactly the frames it was trained on.

1. flicker: each frame's mean is scaled to the first (onset) frame's;
2. length: a clip longer than ``max_frames`` is cut into that many runs of consecutive
   frames (`numpy.array_split`), each averaged: a temporal low-pass that also cuts sensor noise;
3. magnification (the paper's phase-based magnification with α = 15, here its linear Eulerian
   stand-in): change = Gaussian-blurred (frame − first frame); ``"magnified"`` input =
   frame + α·change, ``"motion"`` input = 128 + α·change.

numpy + OpenCV only: the runtime imports it without torch.
"""

from __future__ import annotations

import cv2
import numpy as np

INPUT_MODES = ("magnified", "motion")


def bins(length: int, max_frames: int) -> list[np.ndarray]:
    """Indices 0..length-1 cut into min(length, max_frames) runs of near-equal size."""
    return np.array_split(np.arange(length), min(length, max_frames))


def prepare_clip(
    crops: np.ndarray, *, max_frames: int, magnify_alpha: float, magnify_sigma: float, input_mode: str
) -> tuple[np.ndarray, list[np.ndarray]]:
    """(L, S, S) uint8 face crops, onset first → (n, S, S) uint8 network frames (n ≤ max_frames)
    and the runs of input indices each one averages (module docstring)."""
    if crops.ndim != 3 or crops.shape[0] < 1:
        raise ValueError(f"prepare_clip: expected (frames, H, W) crops, got shape {crops.shape}")
    if input_mode not in INPUT_MODES:
        raise ValueError(
            f"prepare_clip: input_mode must be one of {', '.join(INPUT_MODES)}, got {input_mode!r}"
        )
    x = crops.astype(np.float32)
    means = x.mean(axis=(1, 2))
    x *= (means[0] / np.maximum(means, 1e-3))[:, None, None]
    runs = bins(len(x), max_frames)
    y = np.stack([x[r].mean(axis=0) for r in runs])
    change = y - y[0]
    if magnify_sigma > 0:
        change = np.stack([cv2.GaussianBlur(c, (0, 0), magnify_sigma) for c in change])
    base = y if input_mode == "magnified" else np.full_like(y, 128.0)
    out = base + magnify_alpha * change
    return np.clip(np.rint(out), 0, 255).astype(np.uint8), runs


def network_frames(frames: np.ndarray, size: int, out: np.ndarray | None = None) -> np.ndarray:
    """Prepared uint8 frames (n, S, S) → the network's (n, size, size) float32 in [0, 1]
    (INTER_AREA when S differs from ``size``); writes into ``out`` when given."""
    if out is None:
        out = np.empty((len(frames), size, size), np.float32)
    for i, frame in enumerate(frames):
        if frame.shape != (size, size):
            frame = cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)
        np.multiply(frame, np.float32(1.0 / 255.0), out=out[i])
    return out

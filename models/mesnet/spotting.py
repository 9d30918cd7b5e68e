"""Spotting whole videos with a trained MESNet, scoring it, and picking T_CPN / T_CRN.

Shared by training (validation, threshold choice on validation subjects) and ``mestream eval``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mestream.engine.intervals import Spots, to_frames
from mestream.engine.metrics import Interval, megc_metric, mesnet_metric
from mestream.models.mesnet.data import FlowVideo

T_GRID = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98)


def truth_intervals(
    videos: Sequence[FlowVideo], kinds: tuple[str, ...] = ("micro", "macro")
) -> list[Interval]:
    """Ground truth in source frames (onset/offset as the camera reports them)."""
    return [
        Interval(v.name, e.onset_frame, e.offset_frame, 1.0, e.kind)
        for v in videos
        for e in v.expressions
        if e.kind in kinds
    ]


def to_intervals(video: FlowVideo, spots: Spots) -> list[Interval]:
    return [Interval(video.name, a, b, s, "micro") for a, b, s in to_frames(spots, video.sample_frames)]


class VideoSpotter:
    """Runs the CNN once per video and the post-processing for any thresholds (for tuning)."""

    def __init__(self, net: Any, videos: Sequence[FlowVideo]) -> None:
        net.eval()
        self.net, self.videos = net, list(videos)
        self.outputs = [net.window_outputs(v.flow) for v in self.videos]

    def predict(self, t_cpn: float, t_crn: float) -> list[Interval]:
        out: list[Interval] = []
        for video, (starts, feats, scores) in zip(self.videos, self.outputs):
            spots = self.net.spot_windows(starts, feats, scores, len(video.flow), t_cpn, t_crn)
            out += to_intervals(video, spots)
        return out

    def score(self, t_cpn: float, t_crn: float) -> dict[str, Any]:
        return spotting_metrics(self.predict(t_cpn, t_crn), truth_intervals(self.videos))

    def tune(self, grid: Sequence[float] = T_GRID) -> tuple[float, float, float]:
        """(T_CPN, T_CRN, micro F1) with the best MEGC micro F1 on these videos (ties: lower thresholds)."""
        best = (grid[0], grid[0], -1.0)
        for t_cpn in grid:
            for t_crn in grid:
                f1 = self.score(t_cpn, t_crn)["megc"]["micro"]["f1"]
                if f1 > best[2] + 1e-9:
                    best = (t_cpn, t_crn, f1)
        return best


def spotting_metrics(pred: Sequence[Interval], truth: Sequence[Interval]) -> dict[str, Any]:
    """MEGC pooled (micro/macro/overall at IoU 0.5) and MESNet's Eq. 15 (T_eval 0.5, micro only)."""
    return {
        "megc": megc_metric(pred, truth, 0.5),
        "mesnet_eq15": mesnet_metric(
            [p for p in pred if p.kind == "micro"], [t for t in truth if t.kind == "micro"], 0.5
        ),
    }


def as_json(intervals: Sequence[Interval], with_score: bool) -> list[dict[str, Any]]:
    rows = []
    for iv in intervals:
        row: dict[str, Any] = {"video": iv.video, "onset_frame": iv.onset, "offset_frame": iv.offset}
        row.update({"score": round(iv.score, 4)} if with_score else {"kind": iv.kind})
        rows.append(row)
    return rows


def step_counts(videos: Sequence[FlowVideo]) -> dict[str, float]:
    """Data description for the model card."""
    steps = int(sum(len(v.flow) for v in videos))
    kinds: dict[str, int] = {}
    for v in videos:
        for e in v.expressions:
            kinds[e.kind] = kinds.get(e.kind, 0) + 1
    return {
        "videos": len(videos),
        "steps": steps,
        **{f"n_{k}": n for k, n in sorted(kinds.items())},
        "minutes": round(float(np.sum([v.sample_frames[-1] / v.fps for v in videos])) / 60.0, 2),
    }

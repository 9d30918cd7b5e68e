"""Per-frame timestamps: when each frame was captured and when each stage finished with it,
so that per-frame latency (capture → end of the spot stage) and its breakdown can be measured.

Events carry their own latency, but only for the frames that end an expression; a latency
benchmark needs every frame. A trace is opt-in (``Pipeline(config, trace_frames=N)``); the
spot stage's hooks cost a few slice assignments per block of crops, per sample and per
window, not per frame (the ingest-only tap adds one frame at a time, as it reads them). It
keeps the first ``capacity`` frames a stage reads; later ones are counted in ``overflow``.

Stages of the spot pipeline, in order: ``face`` (the crop was written), ``sample`` (the
frame's 40 Hz sample was complete), ``encode`` (that sample's flow step was encoded, after
the flow's look-ahead) and ``window`` (a window decided it: the heads ran over it outside the
settle margin, and what they found was published). With spotting off, the one stage is
``ring`` (the first reader took the frame from the ring).
"""

from __future__ import annotations

import numpy as np

SPOT_STAGES = ("face", "sample", "encode", "window")
INGEST_STAGES = ("ring",)


class FrameTrace:
    """Capture time and each stage's finishing time (host monotonic ns) of one camera's frames."""

    def __init__(self, capacity: int, stages: tuple[str, ...] = SPOT_STAGES) -> None:
        self.capacity = int(capacity)
        self.stages = tuple(stages)
        self.row = {name: i + 1 for i, name in enumerate(self.stages)}
        self.times = np.zeros((1 + len(self.stages), self.capacity), np.int64)  # row 0: capture
        self.frame_id = np.full(self.capacity, -1, np.int64)
        self.count = 0  # frames added (may exceed capacity)
        self.overflow = 0

    def add(self, frame_ids: np.ndarray, capture_ns: np.ndarray, *first_stage_ns: np.ndarray) -> int:
        """Append a block of frames (and, optionally, their first stages' times); the trace
        position of the block's first frame."""
        start, n = self.count, len(frame_ids)
        self.count += n
        keep = max(0, min(n, self.capacity - start))
        self.overflow += n - keep
        if keep:
            self.frame_id[start : start + keep] = frame_ids[:keep]
            self.times[0, start : start + keep] = capture_ns[:keep]
            for row, values in enumerate(first_stage_ns, start=1):
                self.times[row, start : start + keep] = values[:keep]
        return start

    def add_frame(self, frame_id: int, capture_ns: int, *stage_ns: int) -> None:
        """`add` for a reader that takes one frame at a time."""
        i = self.count
        self.count += 1
        if i >= self.capacity:
            self.overflow += 1
            return
        self.frame_id[i] = frame_id
        self.times[0, i] = capture_ns
        for row, value in enumerate(stage_ns, start=1):
            self.times[row, i] = value

    def mark(self, stage: str, lo: int, hi: int, now_ns: int) -> None:
        """Stage ``stage`` finished, at ``now_ns``, with the frames at positions lo..hi-1 that it
        had not finished before (a frame in several windows counts its first)."""
        row = self.times[self.row[stage], lo : min(hi, self.capacity)]
        row[row == 0] = now_ns

    def finished(self, since_frame: int = 0, until_frame: int | None = None) -> np.ndarray:
        """Which traced frames, with ids in since_frame..until_frame-1, went through every stage."""
        n = min(self.count, self.capacity)
        return np.all(self.times[:, :n] > 0, axis=0) & self._between(n, since_frame, until_frame)

    def latencies_ms(self, since_frame: int = 0, until_frame: int | None = None) -> dict[str, np.ndarray]:
        """Per-frame latency of every frame with an id in since_frame..until_frame-1 that went
        through every stage: ``total`` (capture → last stage) and each stage's share, in ms."""
        done = self.finished(since_frame, until_frame)
        t = self.times[:, : len(done)][:, done]
        out = {"total": (t[-1] - t[0]) / 1e6}
        for name, row in self.row.items():
            out[name] = (t[row] - t[row - 1]) / 1e6
        return out

    def unfinished(self, since_frame: int = 0, until_frame: int | None = None) -> int:
        """Traced frames with ids in since_frame..until_frame-1 that some stage never finished."""
        n = min(self.count, self.capacity)
        return int(
            np.sum(self._between(n, since_frame, until_frame) & np.any(self.times[:, :n] == 0, axis=0))
        )

    def _between(self, n: int, since_frame: int, until_frame: int | None) -> np.ndarray:
        ids = self.frame_id[:n]
        return (ids >= since_frame) & (ids < until_frame if until_frame is not None else True)

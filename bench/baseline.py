"""The naive baseline: what a user would run without mestream.

The public MESNet spotting code is offline: it crops the faces of a video, computes the flow
of every 40 Hz sample, and runs the torch network over overlapping windows of that flow. Put
behind a camera, the straightforward wrapper recomputes each window from its raw frames every
time one is due: detect the face on the window's first frame, crop every frame with that box,
average the crops into samples, compute the DIS flow of every step, run the encoder over every
step in torch eager mode, then the window head and the CRN. Nothing is cached between windows,
although consecutive windows share most of their frames. It runs two ways:

- live (``paced=True``): the camera releases frames in real time into a ring; whenever windows
  are due the wrapper computes the newest one and skips the older ones, the best such a loop
  can do when a window takes longer than the hop. It runs at mestream's hop (100 ms);
- offline (``paced=False``): frames are read as fast as they come and every due window is
  computed in order; at the paper's stride (window - overlap steps, ``hop_ms=None``) this is
  the offline code's own cost.

Deliberately the same as mestream, so that what differs is the caching and streaming: the
same recorded stream (the synthetic camera's seeded session, frame for frame), the same
shipped weights, the training code's samples and flow (`mestream.models.mesnet.data.flow_steps`,
fed the samples the flow reaches back and ahead to, as over a whole video, so a window is
due when the engine's would be), the network's own post-processing (`MESNet.window_outputs` /
`spot_windows`), the same thresholds, and the engine's rule for when a frame is decided and
an interval published (``settle_steps`` before a window's end, not cut by the window's start,
not a duplicate with IoU > T_nms of one already published).

What differs besides, each as the offline code does it: the face is detected on the whole
first frame of every window and every frame is cropped with the training crops' resize
(`mestream.engine.face.detect_face`, `crop`: INTER_AREA, about three times the engine's
INTER_LINEAR per crop); the first windows of a stream, shorter than ``window_steps``, are
zero-padded as the offline code pads a short video; torch runs with its default threads
(one per core, the generous choice: mestream's stages run one ONNX Runtime thread each).
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

from mestream.bench.stats import percentiles
from mestream.engine.config import SourceConfig
from mestream.engine.face import crop, detect_face, square_box
from mestream.engine.intervals import interval_iou
from mestream.models.mesnet.data import flow_steps, sample_starts
from mestream.models.mesnet.evaluate import load
from mestream.plugins import make_source

TORCH_HINT = "the baseline needs torch: pip install 'mestream[train]'"


class BaselineUnavailable(RuntimeError):
    """The baseline cannot run here (torch is missing); the message says what to install."""


@dataclass(frozen=True)
class Stream:
    """The recorded stream both systems read: the synthetic camera's seeded session."""

    seed: int = 1
    fps: float = 500.0
    resolution: str = "640x480"
    seconds: float = 20.0  # measured seconds, after warm-up
    warmup_s: float = 2.0
    cooldown_s: float = 0.0  # read, but not measured: the last window of a stream has no settle margin
    micro_per_min: float = 18.0  # the synthetic camera's scene (its default)

    @property
    def warmup_frames(self) -> int:
        return int(round(self.warmup_s * self.fps))

    @property
    def n_frames(self) -> int:
        return self.warmup_frames + int(round((self.seconds + self.cooldown_s) * self.fps))

    @property
    def measured_end(self) -> int:
        """The frame after the last measured one."""
        return self.warmup_frames + int(round(self.seconds * self.fps))


def _torch() -> Any:
    """torch, or `BaselineUnavailable` naming the extra that installs it."""
    try:
        import torch  # lazy: torch is in the train extra
    except ImportError:
        raise BaselineUnavailable(TORCH_HINT) from None
    return torch


def load_network() -> Any:
    """The shipped demo MESNet in eval mode, as ``mestream eval`` loads it (torch eager)."""
    _torch()

    return load(None)[0]


def baseline_hop_steps(config: Any, hop_ms: float | None) -> int:
    """The hop in samples: the paper's stride (window - overlap) for None, else as the engine rounds it."""
    if hop_ms is None:
        return max(1, config.window_steps - config.overlap_steps)
    return max(1, int(round(hop_ms / 1000.0 * config.sample_hz)))


def sample_bounds(n_frames: int, fps: float, sample_hz: float) -> np.ndarray:
    """(S + 1,) first frame of each complete sample of the stream, then the end of the last one."""
    step = max(fps / sample_hz, 1.0)
    grid = sample_starts(n_frames + int(math.ceil(step)) + 2, fps, sample_hz)
    count = len(sample_starts(n_frames, fps, sample_hz))
    return grid[: count + 1]


def window_ends(samples: int, hop: int) -> list[int]:
    """End step (exclusive) of every window: each hop boundary, then the stream's last sample."""
    ends = list(range(hop, samples + 1, hop))
    if samples and (not ends or ends[-1] != samples):
        ends.append(samples)
    return ends


class _Frames:
    """The raw frames of the last windows (a ring) and every frame's capture time."""

    def __init__(self, capacity: int, shape: tuple[int, ...], n_frames: int) -> None:
        self.capacity = capacity
        self.pixels = np.empty((capacity, *shape), np.uint8)
        self.ids = np.full(capacity, -1, np.int64)
        self.host_ns = np.zeros(n_frames, np.int64)
        self.received = 0  # frames 0..received-1 are in (the producer's count, read by the consumer)
        self.cpu_at: dict[int, float] = {}  # process CPU seconds when the frame arrived (warm-up end)

    def put(self, frame: Any, index: int) -> None:
        slot = index % self.capacity
        self.ids[slot] = -1  # being overwritten
        np.copyto(self.pixels[slot], frame.pixels)
        self.ids[slot] = index
        self.host_ns[index] = frame.host_ns
        if index in self.cpu_at:
            self.cpu_at[index] = time.process_time()
        self.received = index + 1

    def intact(self, lo: int, hi: int) -> bool:
        """Frames lo..hi-1 are all still in the ring."""
        idx = np.arange(lo, hi)
        return bool(np.array_equal(self.ids[idx % self.capacity], idx))


class _Baseline:
    """One baseline run over a stream (module docstring); `run` then `summary`."""

    def __init__(
        self,
        stream: Stream,
        *,
        hop_ms: float | None,
        paced: bool,
        settle_steps: int = 2,
        progress: bool = False,
    ) -> None:
        self.net = load_network()
        self.cfg = cfg = self.net.config
        self.stream, self.paced, self.settle = stream, paced, settle_steps
        self.hop = baseline_hop_steps(cfg, hop_ms)
        self.n = stream.n_frames
        self.warm = min(stream.warmup_frames, self.n - 1)
        self.bounds = sample_bounds(self.n, stream.fps, cfg.sample_hz)
        samples = len(self.bounds) - 1
        self.centre = (self.bounds[:-1] + self.bounds[1:] - 1) / 2.0
        self.ends = window_ends(samples, self.hop)
        if not self.ends or self.warm < 0:
            raise ValueError(
                f"baseline: a {stream.seconds:g} s stream (+ {stream.warmup_s:g} s warm-up) at "
                f"{stream.fps:g} fps holds no complete {cfg.sample_hz:g} Hz sample to spot in"
            )
        # the flow of a window's first and last steps reaches back and ahead of it, as over a whole video
        self.back, self.ahead = cfg.flow_gap // 2, cfg.flow_gap - cfg.flow_gap // 2
        self.samples = samples
        self._due_at = self.bounds[np.minimum(np.asarray(self.ends, np.int64) + self.ahead, samples)]
        span = max(
            (self.bounds[self._context(e)[1]] - self.bounds[self._context(e)[0]] for e in self.ends),
            default=1,
        )
        hop_frames = int(math.ceil(self.hop * stream.fps / cfg.sample_hz))
        self.capacity = int(span) * (2 if paced else 1) + hop_frames + 2
        self._crops = np.empty((int(span), cfg.flow_crop, cfg.flow_crop), np.uint8)
        self.latency_ms = np.full(self.n, np.nan)
        self.window_ms = np.full(len(self.ends), np.nan)
        self.finished_ns = np.zeros(len(self.ends), np.int64)
        self.covered_to = 0  # frames below this one have their latency
        self.box: Any = None
        self.windows = self.skipped = self.no_face = 0
        self.published: list[tuple[float, float, int, int, float]] = []  # steps a, b; frames; latency ms
        self.bar = tqdm(
            total=len(self.ends), desc="baseline windows", unit="window", leave=False, disable=not progress
        )
        self._warm_up()

    def _warm_up(self) -> None:
        """One window of zero flow through the network, before the camera starts (a live
        wrapper loads its model first, and torch's first call is slow)."""
        c = self.cfg
        self.net.window_outputs(
            np.zeros((c.window_steps, c.in_channels, c.input_size, c.input_size), np.float16)
        )

    # -- one window ------------------------------------------------------------------------------

    def _context(self, e: int) -> tuple[int, int]:
        """Samples whose frames window ``e`` needs: its own, and the flow's reach back and ahead."""
        return max(e - self.cfg.window_steps - self.back, 0), min(e + self.ahead, self.samples)

    def compute(self, frames: _Frames, j: int) -> bool:
        """Recompute window j from its raw frames; False (and skipped) when it cannot."""
        cfg, e = self.cfg, self.ends[j]
        lo = max(0, e - cfg.window_steps)
        c_lo, c_hi = self._context(e)
        f_lo, f_hi = int(self.bounds[c_lo]), int(self.bounds[c_hi])
        t0 = time.perf_counter()
        if not frames.intact(f_lo, f_lo + 1):
            return self._skip()
        found = detect_face(frames.pixels[f_lo % frames.capacity])
        if found is None:
            self.no_face += 1  # keep the previous window's box
        else:
            self.box = square_box(found)
        if self.box is None:
            return self._skip()
        crops = self._crops[: f_hi - f_lo]
        for i, f in enumerate(range(f_lo, f_hi)):
            crop(frames.pixels[f % frames.capacity], self.box, cfg.flow_crop, out=crops[i])
        if not frames.intact(f_lo, f_hi):  # the camera overwrote frames while they were cropped
            return self._skip()
        flow = flow_steps(crops, self.bounds[c_lo:c_hi] - f_lo, cfg)[lo - c_lo : e - c_lo]
        starts, features, scores = self.net.window_outputs(flow)
        spots = self.net.spot_windows(starts, features, scores, len(flow), cfg.t_cpn, cfg.t_crn)
        done = time.monotonic_ns()
        self.window_ms[j] = (time.perf_counter() - t0) * 1e3
        self.finished_ns[j] = done
        self.windows += 1
        self.bar.update(1)
        decided = (
            e if e == self.ends[-1] else max(e - self.settle, lo)
        )  # as the engine: the settle margin waits a hop
        self._cover(frames, int(self.bounds[lo]), int(self.bounds[decided]), done)
        self._publish(frames, spots, lo, e, final=e == self.ends[-1], done=done)
        return True

    def _skip(self) -> bool:
        self.skipped += 1
        self.bar.update(1)
        return False

    def _cover(self, frames: _Frames, f_lo: int, f_hi: int, done: int) -> None:
        """Frames of this window not in an earlier computed one: their latency ends now."""
        a = max(self.covered_to, f_lo)
        if f_hi > a:
            self.latency_ms[a:f_hi] = (done - frames.host_ns[a:f_hi]) / 1e6
            self.covered_to = f_hi

    def _publish(self, frames: _Frames, spots: Any, lo: int, e: int, *, final: bool, done: int) -> None:
        """The engine's rule (`mestream.engine.spot`): intervals over ``settle`` steps before
        the window's end (the last window takes all), not cut by its start, not seen before."""
        steps = e - lo
        limit = steps - 1 - (0 if final else self.settle)
        for (a, b), _score in sorted(zip(spots.intervals.tolist(), spots.scores.tolist())):
            if (a <= 0 and lo > 0) or (b > limit and not final):
                continue
            a, b = max(a, 0.0) + lo, min(b, steps - 1.0) + lo
            if b < a:
                continue
            if (
                self.published
                and interval_iou(np.array([[a, b]]), np.array([p[:2] for p in self.published])).max()
                > self.cfg.t_nms
            ):
                continue
            onset, offset = self.step_frame(a), self.step_frame(b)
            self.published.append((a, b, onset, offset, (done - frames.host_ns[offset]) / 1e6))

    def step_frame(self, step: float) -> int:
        """A (fractional) step → source frame, interpolating the samples' centre frames (as the engine)."""
        step = min(max(step, 0.0), len(self.centre) - 1.0)
        k = int(math.floor(step))
        k1 = min(k + 1, len(self.centre) - 1)
        w = step - k
        return int(round(self.centre[k] * (1 - w) + self.centre[k1] * w))

    # -- the stream ------------------------------------------------------------------------------

    def _source(self) -> Any:
        s = self.stream
        return make_source(
            SourceConfig(
                kind="synthetic",
                seed=s.seed,
                fps=s.fps,
                resolution=s.resolution,
                pace=self.paced,
                options={"micro_per_min": s.micro_per_min},
            )
        )

    def _due(self, received: int, ended: bool) -> int:
        """How many windows (from the first) are due: the frame starting their end sample arrived."""
        if ended:
            return len(self.ends)
        return int(np.searchsorted(self._due_at, received, side="left"))

    def run(self) -> _Baseline:
        src = self._source()
        frames = _Frames(self.capacity, tuple(src.shape), self.n)
        frames.cpu_at[self.warm] = 0.0
        src.open()
        try:
            (self._run_live if self.paced else self._run_offline)(src, frames)
        finally:
            src.close()
            self.bar.close()
        self.end_ns, self.end_cpu = time.monotonic_ns(), time.process_time()
        self.frames = frames
        return self

    def _run_offline(self, src: Any, frames: _Frames) -> None:
        j = 0
        for i, frame in enumerate(src):
            frames.put(frame, i)
            while j < len(self.ends) and j < self._due(i + 1, i + 1 == self.n):
                self.compute(frames, j)
                j += 1
            if i + 1 == self.n:
                break
        while j < len(self.ends):  # a source that ended early
            self.compute(frames, j)
            j += 1

    def _run_live(self, src: Any, frames: _Frames) -> None:
        ended, stop, failed = threading.Event(), threading.Event(), []

        def produce() -> None:
            try:
                for i, frame in enumerate(src):
                    frames.put(frame, i)
                    if i + 1 == self.n or stop.is_set():
                        break
            except BaseException as exc:  # noqa: BLE001  (re-raised in the caller's thread)
                failed.append(exc)
            finally:
                ended.set()

        producer = threading.Thread(target=produce, name="baseline-camera", daemon=True)
        producer.start()
        j = 0
        try:
            while j < len(self.ends):
                done = ended.is_set()
                due = self._due(frames.received, done)
                if due > j:
                    self.skipped += due - 1 - j  # only the newest due window is worth computing
                    self.bar.update(due - 1 - j)
                    self.compute(frames, due - 1)
                    j = due
                elif done:
                    break
                else:
                    time.sleep(0.0005)
        finally:  # a failing window or Ctrl-C stops the camera too, rather than leave it rendering
            stop.set()
            producer.join()
        if failed:
            raise failed[0]

    # -- figures ---------------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        frames, warm = self.frames, self.warm
        if frames.received <= warm:
            raise ValueError(f"baseline: the source ended after {frames.received} frames, inside the warm-up")
        start_ns = int(frames.host_ns[warm])
        wall = max((self.end_ns - start_ns) / 1e9, 1e-9)
        cpu = self.end_cpu - frames.cpu_at.get(warm, 0.0)
        end = min(frames.received, self.stream.measured_end)
        measured = self.latency_ms[warm:end]
        covered = np.isfinite(measured)
        count = int(
            np.isfinite(self.latency_ms[warm : frames.received]).sum()
        )  # over the same span as ``wall``
        events = [p[4] for p in self.published if warm <= p[3] < end]
        return {
            "system": "baseline",
            "mode": "paced" if self.paced else "unpaced",
            "hop_ms": self.hop * 1000.0 / self.cfg.sample_hz,
            "hop_steps": self.hop,
            "throughput_fps": round(count / wall, 3),
            "frame_latency_ms": percentiles(measured),
            "event_latency_ms": percentiles(events),
            "events": len(events),
            "windows": self.windows,
            "skipped_windows": self.skipped,
            "uncovered_frames": int((~covered).sum()),
            "no_face_windows": self.no_face,
            "wall_s": round(wall, 3),
            "cpu_percent": round(cpu / wall * 100.0, 1),
            "torch_threads": _torch().get_num_threads(),
            "window_ms": percentiles(self.window_ms[self.finished_ns >= start_ns]),
            "frame_latencies_ms": measured.copy(),
        }


def run_baseline(
    stream: Stream,
    *,
    hop_ms: float | None,
    paced: bool,
    settle_steps: int = 2,
    threads: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Run the naive baseline over ``stream`` (module docstring) and return its figures.

    ``hop_ms`` None is the paper's stride (offline); ``paced`` reads the camera in real time.
    Frame latency: capture → the first computed window that decided the frame (held its sample
    outside the settle margin) finished; event latency: capture of the interval's offset frame →
    the window publishing it finished. Both over the frames after the warm-up and before the
    cool-down, as mestream's.
    Throughput: measured frames (paced: those covered by a computed window) per wall second,
    from the first frame after warm-up to the last window. ``frame_latencies_ms`` is the raw
    per-frame array (NaN: uncovered), for the CDF; drop it before writing JSON. ``threads``:
    torch's intra-op threads for the run (default: one per core, torch's own default; set
    explicitly because the setting is process-wide, and an earlier torch-backend run in the same
    process leaves its own). Raises `BaselineUnavailable` without torch.
    """
    torch = _torch()
    before = torch.get_num_threads()
    torch.set_num_threads(threads or os.cpu_count() or 1)
    try:
        return (
            _Baseline(stream, hop_ms=hop_ms, paced=paced, settle_steps=settle_steps, progress=progress)
            .run()
            .summary()
        )
    finally:
        torch.set_num_threads(before)

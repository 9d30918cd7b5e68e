"""One camera's stream as MESNet sees it: crops → samples → flow steps → a feature ring.

With ``step = fps / sample_hz`` source frames per sample (`mestream.models.mesnet.data.sample_starts`):

1. crops → samples: sample k is the mean of the crops of source frames ``origin + ceil(k·step) ..``,
   resized to the model's ``flow_crop`` and blurred (`mestream.engine.flow.sample_image`). The
   sums are exact integers, so a sample never depends on how its crops were read in blocks;
2. samples → flow steps: step i is the flow from sample ``max(i - gap//2, 0)`` to sample
   ``i + gap - gap//2`` (`mestream.engine.flow.flow_input`), so it is ready ``gap - gap//2``
   samples after sample i; a step whose samples were cut with different face boxes (or
   straddle a box move) gets zero flow instead of the box's jump;
3. flow steps → features: the spot stage encodes each step once, into `features`.

A stream ends at a gap (frames missing for a whole sample), a skip (a live spotter too far
behind) or the source's end. The spot stage then flushes it (last samples, last window, no
settle margin) before the next stream starts, so an expression just before a gap is still
published. Step numbers restart with each stream; frame ids and crop seqs do not.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import cv2
import numpy as np

from mestream.engine.config import SpotConfig
from mestream.engine.crops import CropRing
from mestream.engine.flow import OpticalFlow, flow_input, sample_image
from mestream.engine.intervals import interval_iou, receptive_fields
from mestream.engine.manifest import MESNetModelConfig
from mestream.engine.ring import RingError, Waker
from mestream.engine.trace import FrameTrace

READ_BLOCK = 256  # crops read per camera per pass


@dataclass(frozen=True)
class MESNetGeometry:
    """What the post-processing needs of MESNet's config (from the export manifest)."""

    window_steps: int
    temporal_kernel: int
    temporal_padding: int
    receptive_fields: tuple[int, ...]
    max_proposals: int
    crn_steps: int
    t_cpn: float
    t_crn: float
    t_nms: float

    @classmethod
    def from_model(cls, config: MESNetModelConfig, spot: SpotConfig) -> MESNetGeometry:
        def pick(override: float | None, key: str) -> float:
            return float(getattr(config, key)) if override is None else override

        return cls(
            window_steps=config.window_steps,
            temporal_kernel=config.temporal_kernel,
            temporal_padding=config.temporal_padding,
            receptive_fields=receptive_fields(config.temporal_kernel, config.cpn_layers),
            max_proposals=config.max_proposals,
            crn_steps=config.crn_steps,
            t_cpn=pick(spot.t_cpn, "t_cpn"),
            t_crn=pick(spot.t_crn, "t_crn"),
            t_nms=pick(spot.t_nms, "t_nms"),
        )


def keep_frames(model: MESNetModelConfig, fps: float, hop_steps: int) -> int:
    """Crops a replay's spotter holds behind its read position: a later event's onset lies in
    a window not run yet, which starts up to a window, the flow's look-ahead, a hop and one
    read block before that position. The crop ring must be longer."""
    gap = model.flow_gap
    step = fps / model.sample_hz
    return int(math.ceil((model.window_steps + gap - gap // 2 + hop_steps + 2) * step)) + READ_BLOCK


@dataclass
class Window:
    """One window due for the heads: its stream, end step (exclusive) and length; ``final``
    when it is the stream's last (no settle margin: nothing comes after it)."""

    cam: CameraStream
    end: int
    steps: int
    final: bool = False


class CameraStream:
    """One camera's sampling, flow and feature ring (module docstring).

    It owns every array and counter of the stream: the spot stage drives it through methods
    (read, `store_features`, `due_windows` / `window_features`, `count_event`, `end_stream`,
    `hold_crops`) and reads its figures, but never writes its state."""

    def __init__(
        self,
        name: str,
        crops: CropRing,
        fps: float,
        model: MESNetModelConfig,
        geometry: MESNetGeometry,
        hop_steps: int,
        feature_size: int,
        *,
        wait: bool,
        max_lag_ms: float,
        trace: FrameTrace | None = None,
    ) -> None:
        self.name, self.crops, self.fps = name, crops, fps
        self.trace = trace  # per-frame stage times (`mestream.engine.trace`), when measured
        self.cursor = crops.register_reader("spot")
        self.wait = wait
        self.max_lag = 0 if wait else int(max_lag_ms / 1000.0 * fps)
        # a replay holds the crops a later event or clip may still need (the face stage waits for them)
        self.keep = crops.register_reader("spot-keep") if wait else None
        self.keep_frames = keep_frames(model, fps, hop_steps)
        self.flushed = False  # the source ended and its last stream was flushed
        self.step = fps / model.sample_hz
        self.flow_crop = model.flow_crop
        self.blur = model.flow_blur
        self.input_size = model.input_size
        self.gain = model.flow_scale * self.input_size / self.flow_crop
        gap = model.flow_gap
        self.back, self.ahead = gap // 2, gap - gap // 2
        self.flow = OpticalFlow(model.flow_method, model.flow_preset)
        self.hop = hop_steps
        self.window_steps = geometry.window_steps
        # the samples of one read block, the window and the look-ahead must all fit
        self.cap = cap = (
            geometry.window_steps + gap + 4 * hop_steps + int(math.ceil(READ_BLOCK / self.step)) + 32
        )
        size = crops.size
        self.features = np.zeros((cap, feature_size), np.float32)
        self.samples = np.zeros((cap, self.flow_crop, self.flow_crop), np.uint8)
        self.centre = np.zeros(cap, np.float64)  # each sample's centre source frame
        self.seq0 = np.zeros(cap, np.int64)  # crop seq and frame id of each sample's first crop
        self.frame0 = np.zeros(cap, np.int64)
        self.mixed = np.zeros(cap, bool)  # the sample's crops were cut with more than one box
        self.box = np.zeros((cap, 4), np.int32)  # the box of each sample's last crop
        self.trace_lo = np.zeros(cap, np.int64)  # each sample's frames' positions in the trace
        self.trace_hi = np.zeros(cap, np.int64)
        self._batch = np.empty((READ_BLOCK, size, size), np.uint8)
        self._sum = np.zeros((size, size), np.int32)
        self._mean = np.empty((size, size), np.float32)
        self.skipped = self.resets = self.zeroed_steps = self.events = self.untimed = 0
        self.latency_ms: list[float] = []  # since the last stats event
        self.published: list[tuple[float, float]] = []  # this stream's intervals in steps, for duplicates
        self.next_event = 0
        # "gap" or "skip": the stream ended; the spot stage flushes it, then calls `end_stream`
        self.restart: str = ""
        # crops after a gap (meta, pixels, boxes, write times), for the next stream
        self._carry: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
        self._sample_box = np.zeros(4, np.int32)  # the open sample's first crop's box
        self._sample_mixed = False  # the open sample's crops were cut with more than one box
        self._last_box = np.zeros(4, np.int32)  # the box of the last crop added
        self._reset()

    def _reset(self) -> None:
        self.origin = -1  # frame id of the stream's first frame
        self.open_sample = -1  # the sample being summed
        self.count = 0
        self.samples_done = 0  # samples complete
        self.steps_done = 0  # flow steps computed (queued for the encoder)
        self.encoded = 0  # steps with features
        self.windows_done = 0  # end step of the last window run
        self.traced = 0  # steps before this went through a window (trace)
        self.published.clear()

    # -- 1. crops → samples ---------------------------------------------------------------------

    def read(self) -> int:
        """Read the crops that arrived and complete samples; the number of crops read. Reads
        nothing while an ended stream waits for its flush."""
        if self.restart or self.flushed:
            return 0
        if self._carry is not None:  # a new stream's first block: what followed the gap
            carry, self._carry = self._carry, None
            self._accumulate(*carry)
            return len(carry[0])
        if self.max_lag and self.cursor.lag > self.max_lag:
            self.restart = "skip"
            return 0
        batch = self.cursor.poll_batch(READ_BLOCK, out=self._batch)
        if batch is None:
            return 0
        try:
            boxes, written = self.crops.slot_info(int(batch.meta["seq"][0]), len(batch))
        except RingError:  # lapped since the copy (a live ring only): boxes unknown, as if they moved
            boxes, written = np.full((len(batch), 4), -1, np.int32), np.zeros(len(batch), np.int64)
        self._accumulate(batch.meta, batch.pixels, boxes, written)
        return len(batch)

    @property
    def drained(self) -> bool:
        """The face stage finished and every crop was read (and no stream waits for a flush)."""
        return self.crops.finished and self.cursor.lag == 0 and not self.restart and self._carry is None

    def end_stream(self) -> None:
        """The spot stage flushed the stream that ended: start the next one, or, when the
        source ended, stop taking part (`flushed`)."""
        if self.restart:
            self.begin()
        else:
            self.flushed = True

    def begin(self) -> None:
        """Start the next stream, once the spot stage flushed the one that ended."""
        if self.restart == "skip":
            self.skipped += self.cursor.seek_latest()
        self.restart = ""
        self.resets += 1
        self._reset()  # a carry (crops after a gap) is the next `read`'s block: one block per pass

    def _accumulate(
        self, meta: np.ndarray, pixels: np.ndarray, boxes: np.ndarray, written: np.ndarray
    ) -> None:
        """Add a block of crops (with each crop's box and write time) to their samples, closing
        each sample as the next one starts."""
        ids = meta["frame_id"]
        trace = self.trace
        if self.origin < 0:
            self.origin = int(ids[0])
        index = np.floor((ids - self.origin + 1e-9) / self.step).astype(np.int64)
        bounds = np.flatnonzero(np.diff(index)) + 1
        for a, b in zip(np.r_[0, bounds], np.r_[bounds, len(ids)]):
            k = int(index[a])
            if k != self.open_sample:
                if self.open_sample >= 0 and k != self.open_sample + 1:
                    # frames missing for a whole sample (or ids going back): this stream ends here
                    self._carry = (meta[a:].copy(), pixels[a:].copy(), boxes[a:], written[a:])
                    self.restart = "gap"
                    return
                if self.open_sample >= 0:
                    self._close_sample()
                self._open(k, int(meta["seq"][a]), int(ids[a]), boxes[a])
            if trace is not None:  # a sample's frames are added in order, so they sit side by side
                where = trace.add(ids[a:b], meta["host_ns"][a:b], written[a:b])
                if self.count == 0:
                    self.trace_lo[k % self.cap] = where
                self.trace_hi[k % self.cap] = where + b - a
            run = pixels[a:b]
            self._sum += run.sum(axis=0, dtype=np.int32) if b - a > 1 else run[0]
            self.count += b - a
            if not self._sample_mixed and np.any(boxes[a:b] != self._sample_box):
                self._sample_mixed = True
            self._last_box = boxes[b - 1]
            self._last_frame = int(ids[b - 1])

    def _open(self, k: int, seq: int, frame: int, box: np.ndarray) -> None:
        self.open_sample, self.count = k, 0
        self._sum[...] = 0
        self._sample_box[...] = box
        self._sample_mixed = False
        slot = k % self.cap
        self.seq0[slot], self.frame0[slot] = seq, frame

    def _close_sample(self) -> None:
        k = self.open_sample
        slot = k % self.cap
        np.copyto(self._mean, self._sum)
        np.divide(self._mean, np.float32(self.count), out=self._mean)  # as numpy's float32 mean, bit for bit
        mean: np.ndarray = self._mean
        if mean.shape[0] != self.flow_crop:
            mean = cv2.resize(mean, (self.flow_crop, self.flow_crop), interpolation=cv2.INTER_AREA)
        sample_image(mean, self.blur, out=self.samples[slot])
        self.centre[slot] = (self.frame0[slot] + self._last_frame) / 2.0
        self.box[slot] = self._last_box
        self.mixed[slot] = self._sample_mixed
        self.samples_done = k + 1
        self.open_sample = -1
        if self.trace is not None:
            self.trace.mark("sample", int(self.trace_lo[slot]), int(self.trace_hi[slot]), time.monotonic_ns())

    def finish_sample(self) -> None:
        """The stream ends: the open sample is complete with what it has."""
        if self.open_sample >= 0 and self.count:
            self._close_sample()

    # -- 2. samples → flow steps ----------------------------------------------------------------

    def ready_steps(self, final: bool = False) -> range:
        """Steps whose flow can be computed now (at a stream's end, the last ones use the last sample)."""
        last = self.samples_done - 1 if final else self.samples_done - 1 - self.ahead
        return range(self.steps_done, max(last + 1, self.steps_done))

    def flow_step(self, i: int, out: np.ndarray) -> None:
        """Step i's encoder input into ``out`` (2, H, W) float32."""
        last = self.samples_done - 1
        a, b = max(i - self.back, 0) % self.cap, min(i + self.ahead, last) % self.cap
        if np.array_equal(self.box[a], self.box[b]) and not self.mixed[a] and not self.mixed[b]:
            flow_input(self.flow, self.samples[a], self.samples[b], self.input_size, self.gain, out=out)
        else:  # the face box moved between or within the two samples: its jump is not facial motion
            out[...] = 0.0
            self.zeroed_steps += 1
        self.steps_done = i + 1

    def trace_steps(self, stage: str, lo: int, hi: int) -> None:
        """Trace: ``stage`` finished now with the frames of steps lo..hi-1 (one stream's frames
        are added in order, so theirs are one run of trace positions)."""
        if self.trace is not None and hi > lo:
            self.trace.mark(
                stage,
                int(self.trace_lo[lo % self.cap]),
                int(self.trace_hi[(hi - 1) % self.cap]),
                time.monotonic_ns(),
            )

    def window_ran(self, end: int) -> None:
        """Trace: a window ran that decided every step before ``end`` (its end, less the settle
        margin unless it is the stream's last): those steps' frames are through the spot stage."""
        if end > self.traced:
            self.trace_steps("window", self.traced, end)
            self.traced = end

    # -- windows and their intervals ---------------------------------------------------------------

    def window_due(self) -> bool:
        return self.encoded >= (self.windows_done // self.hop + 1) * self.hop

    def due_windows(self, min_steps: int, final: bool = False) -> list[Window]:
        """Windows ending at each hop boundary the features reached (and, at a stream's end, its last
        step)."""
        ends = list(range((self.windows_done // self.hop + 1) * self.hop, self.encoded + 1, self.hop))
        if final and self.encoded > self.windows_done and (not ends or ends[-1] != self.encoded):
            ends.append(self.encoded)
        out = []
        for end in ends:
            steps = min(end, self.window_steps)
            if steps >= min_steps:
                out.append(Window(self, end, steps, final=final and end == self.encoded))
            self.windows_done = end
        return out

    def store_features(self, i: int, features: np.ndarray) -> None:
        """The encoder's features of step ``i`` (steps arrive in order)."""
        self.features[i % self.cap] = features
        self.encoded = i + 1
        self.trace_steps("encode", i, i + 1)

    def window_features(self, end: int, steps: int, out: np.ndarray) -> np.ndarray:
        """The features of the window of ``steps`` steps ending at step ``end`` (exclusive), into ``out``."""
        rows = np.arange(end - steps, end) % self.cap
        np.take(self.features, rows, axis=0, out=out)
        return out

    def is_duplicate(self, a: float, b: float, t_nms: float) -> bool:
        if not self.published:
            return False
        return bool(interval_iou(np.array([[a, b]]), np.array(self.published)).max() > t_nms)

    def remember(self, a: float, b: float) -> None:
        horizon = self.encoded - self.cap
        self.published = [iv for iv in self.published if iv[1] >= horizon] + [(a, b)]

    def sample_centre(self, step: int) -> float:
        """The centre source frame of sample ``step`` (fractional for an even number of frames)."""
        return float(self.centre[step % self.cap])

    def step_frame(self, step: float) -> int:
        """A (fractional) step of this stream → source frame, interpolating the samples' centre frames."""
        step = min(max(step, 0.0), self.samples_done - 1.0)
        lo = int(math.floor(step))
        hi = min(lo + 1, self.samples_done - 1)
        w = step - lo
        return int(round(self.centre[lo % self.cap] * (1 - w) + self.centre[hi % self.cap] * w))

    def crop_seq(self, frame: int, step: int) -> int:
        """The crop seq of source frame ``frame`` (inside sample ``step``): by arithmetic from the
        sample's first crop, corrected when frames went missing inside the sample (a camera
        drop shorter than a sample). A frame that is itself missing gives its nearest neighbour.
        Raises `RingError` when the crops are gone."""
        slot = step % self.cap
        seq = int(self.seq0[slot] + frame - self.frame0[slot])
        crops = self.crops
        for _ in range(int(self.step) + 2):
            got = crops.frame_id(seq)
            if got == frame:
                break
            nxt = seq - 1 if got > frame else seq + 1
            if nxt < self.seq0[slot] - self.step - 1 or nxt > crops.head:
                break
            seq = nxt
        return seq

    def apex_step(self, a: int, b: int) -> int:
        """The sample in a..b furthest from both ends: ``d(k, a) + d(k, b)`` (pixel L2).

        The distance from the onset alone peaks at the offset whenever anything drifts (light,
        head); drift moves the face along a line from onset to offset, which this sum leaves
        flat, while the expression's excursion and return do not."""
        if b - a < 2:
            return a
        rows = np.arange(a, b + 1) % self.cap
        x = self.samples[rows].reshape(len(rows), -1).astype(np.float32)
        to_onset = np.linalg.norm(x - x[0], axis=1)
        to_offset = np.linalg.norm(x - x[-1], axis=1)
        return a + int(np.argmax(to_onset + to_offset))

    # -- publishing bookkeeping, holds and figures ----------------------------------------------

    def next_event_id(self) -> int:
        """The id of the stream's next published event (unique per camera and run)."""
        event_id = self.next_event
        self.next_event += 1
        return event_id

    def count_event(self, latency_ms: float | None, crops_gone: bool) -> None:
        """An event was published: ``latency_ms`` is its capture-to-publish time when it was
        timed; ``crops_gone`` when its crops were overwritten before they could be read."""
        self.events += 1
        if latency_ms is not None:
            self.latency_ms.append(latency_ms)
        if crops_gone:
            self.untimed += 1

    def hold_crops(self, oldest_clip: int | None) -> bool:
        """Replays: release the crops no later event can need: those before the current window
        (an event's onset lies inside it) and before ``oldest_clip``, the first crop of the
        oldest clip still queued for recognition (`ClipQueue.oldest`). Live streams hold nothing.

        True when the clip holds crops the window would have released: only recognition can
        free them then, and the face stage may be waiting for that room."""
        if self.keep is None:
            return False
        position = self.cursor.position - self.keep_frames
        self.keep.hold(position if oldest_clip is None else min(position, oldest_clip))
        return oldest_clip is not None and oldest_clip < position

    def wake_on_crops(self, waker: Waker) -> None:
        """Have the crop ring's writer notify ``waker`` (one waker can serve several streams)."""
        self.crops.add_waker(waker)

    @property
    def crop_updates(self) -> int:
        """Grows with every crop written (and at finish and close): a waiter's "anything new?"."""
        return self.crops.updates

    def figures(self) -> dict[str, float]:
        """This stream's part of ``mestream.stats`` ``stages``; the latency percentiles cover
        the events since the last call."""
        recent, self.latency_ms = self.latency_ms, []
        out: dict[str, float] = {
            "spot.events": self.events,
            "spot.steps": self.encoded,
            "spot.resets": self.resets,
            "spot.zeroed_steps": self.zeroed_steps,
            "spot.untimed_events": self.untimed,
        }
        if recent:
            p50, p99 = np.percentile(recent, [50, 99])
            out["spot.latency_ms_p50"] = round(float(p50), 3)
            out["spot.latency_ms_p99"] = round(float(p99), 3)
        return out

    def drops(self) -> dict[str, int]:
        return {"spot_skip": self.skipped, "spot_overrun": self.cursor.overruns}

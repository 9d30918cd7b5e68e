"""The spot stage: MESNet over a live stream, every sampled frame's features computed once.

Offline spotting code recomputes each overlapping window from its frames. Here each camera's
crops are averaged into samples at the model's ``sample_hz``, each sample's flow step is
encoded once into a feature ring, and every hop the window head and the CRN run over the
newest window of cached features, for all cameras in one batch.

Per camera (`CameraSpotter`), with ``step = fps / sample_hz`` source frames per sample:

1. crops → samples: sample k is the mean of the crops of source frames
   ``frame0 + ceil(k·step) ..`` (`mestream.models.mesnet.data.sample_starts`), resized to the
   model's ``flow_crop`` and blurred (`mestream.engine.flow.sample_image`);
2. samples → flow steps: step i is the flow from sample ``max(i - gap//2, 0)`` to sample
   ``i + gap - gap//2``, so it is ready ``gap - gap//2`` samples after sample i
   (`mestream.engine.flow.flow_input`); a step whose two samples were cut with different face
   boxes gets zero flow instead of the box's jump;
3. flow steps → features: the encoder, batched across cameras, once per step;
4. windows: the window ending at step ``e`` for every multiple ``e`` of the hop (in steps, so
   the windows do not depend on timing), ``min(e, window_steps)`` steps long;
   window head → CPN proposals → CRN → NMS (`mestream.engine.intervals`);
5. an interval is final once its offset lies ``settle_steps`` before the window's end;
   one that overlaps an interval already published (IoU > T_nms) is the same expression;
6. steps → source frames; apex = the sample that differs most from the onset sample;
   GAMDSS refinement on the full-rate crops; DFME's micro/macro rule; publish.

Backpressure: the stage reads crops in blocks. A live camera's spotter that falls more than
``max_lag_ms`` behind skips to the newest crop and starts its stream afresh (counted as
``spot_skip``); a replay's crop ring waits for it instead.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Mapping

import cv2
import numpy as np

from mestream.engine import intervals as post
from mestream.engine.config import SpotConfig
from mestream.engine.crops import CropRing
from mestream.engine.events import TOPIC_SPOT
from mestream.engine.flow import OpticalFlow, flow_input, sample_image
from mestream.engine.keyframes import is_micro, refine
from mestream.engine.recognise import ClipJob
from mestream.engine.ring import RingError
from mestream.engine.stages import RunContext, Stage

log = logging.getLogger("mestream")

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
    def from_model(cls, config: Mapping[str, Any], spot: SpotConfig) -> "MESNetGeometry":
        def pick(override: float, key: str) -> float:
            return float(config[key]) if override < 0 else override

        return cls(window_steps=int(config["window_steps"]), temporal_kernel=int(config["temporal_kernel"]),
                   temporal_padding=int(config["temporal_padding"]),
                   receptive_fields=post.receptive_fields(config["temporal_kernel"], config["cpn_layers"]),
                   max_proposals=int(config["max_proposals"]), crn_steps=int(config["crn_steps"]),
                   t_cpn=pick(spot.t_cpn, "t_cpn"), t_crn=pick(spot.t_crn, "t_crn"), t_nms=pick(spot.t_nms, "t_nms"))


@dataclass
class Window:
    """One window due for the heads: camera, its end step (exclusive) and length."""

    cam: "CameraSpotter"
    end: int
    steps: int


class CameraSpotter:
    """One camera's sampling, flow and feature ring (module docstring, steps 1-3)."""

    def __init__(self, name: str, crops: CropRing, fps: float, model: Mapping[str, Any], geometry: MESNetGeometry,
                 hop_steps: int, feature_size: int) -> None:
        self.name, self.crops, self.fps = name, crops, fps
        self.cursor = crops.ring.register_reader("spot")
        self.keep: Any = None  # a replay's hold on the crops a later event may still need
        self.step = max(fps / float(model["sample_hz"]), 1.0)
        self.flow_crop = int(model["flow_crop"])
        self.blur = float(model["flow_blur"])
        self.input_size = int(model["input_size"])
        self.gain = float(model["flow_scale"]) * self.input_size / self.flow_crop
        gap = int(model["flow_gap"])
        self.back, self.ahead = gap // 2, gap - gap // 2
        self.flow = OpticalFlow(str(model["flow_method"]), str(model["flow_preset"]))
        self.hop = hop_steps
        self.window_steps = geometry.window_steps
        cap = geometry.window_steps + 4 * hop_steps + 32
        self.cap = cap
        size = crops.size
        self.features = np.zeros((cap, feature_size), np.float32)
        self.samples = np.zeros((cap, self.flow_crop, self.flow_crop), np.uint8)
        self.centre = np.zeros(cap, np.float64)  # each sample's centre source frame
        self.seq0 = np.zeros(cap, np.int64)  # crop seq and frame id of each sample's first crop
        self.frame0 = np.zeros(cap, np.int64)
        self.box = np.zeros((cap, 4), np.int32)  # the box of each sample's last crop
        self._batch = np.empty((READ_BLOCK, size, size), np.uint8)
        self._sum = np.zeros((size, size), np.int32)  # exact: a sample never depends on how its crops were batched
        self._mean = np.empty((size, size), np.float32)
        self.skipped = self.resets = self.zeroed_steps = self.events = 0
        self.latency_ms: list[float] = []  # since the last stats event
        self.published: list[tuple[float, float]] = []  # recent intervals in steps, for duplicates
        self.next_event = 0
        self._reset()

    def _reset(self) -> None:
        """Start a fresh stream: after a skip, a gap in the frames, or at construction."""
        self.origin = -1  # frame id of the stream's first frame
        self.open_sample = -1  # the sample being summed
        self.count = 0
        self.samples_done = 0  # samples complete
        self.steps_done = 0  # flow steps computed (queued for the encoder)
        self.encoded = 0  # steps with features
        self.windows_done = 0  # end step of the last window run
        self.published.clear()

    # -- 1. crops → samples ---------------------------------------------------------------

    def read(self, max_lag: int) -> int:
        """Read the crops that arrived; complete samples; return the number of crops read."""
        if max_lag and self.cursor.lag > max_lag:
            self.skipped += self.cursor.seek_latest()
            self.resets += 1
            self._reset()
        batch = self.cursor.poll_batch(READ_BLOCK, out=self._batch)
        if batch is None:
            return 0
        self._accumulate(batch.meta, batch.pixels)
        return len(batch)

    def _accumulate(self, meta: np.ndarray, pixels: np.ndarray) -> None:
        """Add a block of crops to their samples, closing each sample as the next one starts."""
        ids = meta["frame_id"]
        if self.origin < 0:
            self.origin = int(ids[0])
        index = np.floor((ids - self.origin + 1e-9) / self.step).astype(np.int64)
        bounds = np.flatnonzero(np.diff(index)) + 1
        for a, b in zip(np.r_[0, bounds], np.r_[bounds, len(ids)]):
            k = int(index[a])
            if k != self.open_sample:
                if self.open_sample >= 0 and k != self.open_sample + 1:
                    # frames missing for a whole sample (or ids going back): a new stream from here
                    self.resets += 1
                    self._reset()
                    return self._accumulate(meta[a:], pixels[a:])
                if self.open_sample >= 0:
                    self._close_sample()
                self._open(k, int(meta["seq"][a]), int(ids[a]))
            run = pixels[a:b]
            self._sum += run.sum(axis=0, dtype=np.int32) if b - a > 1 else run[0]
            self.count += b - a
            self._last_seq = int(meta["seq"][b - 1])
            self._last_frame = int(ids[b - 1])

    def _open(self, k: int, seq: int, frame: int) -> None:
        self.open_sample, self.count = k, 0
        self._sum[...] = 0
        slot = k % self.cap
        self.seq0[slot], self.frame0[slot] = seq, frame

    def _close_sample(self) -> None:
        k = self.open_sample
        slot = k % self.cap
        np.copyto(self._mean, self._sum)
        np.divide(self._mean, np.float32(self.count), out=self._mean)  # as numpy's float32 mean, bit for bit
        mean = self._mean
        if mean.shape[0] != self.flow_crop:
            mean = cv2.resize(mean, (self.flow_crop, self.flow_crop), interpolation=cv2.INTER_AREA)
        sample_image(mean, self.blur, out=self.samples[slot])
        self.centre[slot] = (self.frame0[slot] + self._last_frame) / 2.0
        try:
            self.box[slot] = self.crops.box(self._last_seq)
        except RingError:
            self.box[slot] = self.box[(k - 1) % self.cap] if k else 0
        self.samples_done = k + 1
        self.open_sample = -1

    def finish_sample(self) -> None:
        """At the end of the stream: the open sample is complete with what it has."""
        if self.open_sample >= 0 and self.count:
            self._close_sample()

    # -- 2. samples → flow steps ------------------------------------------------------------

    def ready_steps(self, final: bool = False) -> range:
        """Steps whose flow can be computed now (at the end, the last ones use the last sample)."""
        last = self.samples_done - 1 if final else self.samples_done - 1 - self.ahead
        return range(self.steps_done, max(last + 1, self.steps_done))

    def flow_step(self, i: int, out: np.ndarray) -> None:
        """Step i's encoder input into ``out`` (2, H, W) float32."""
        last = self.samples_done - 1
        a, b = max(i - self.back, 0) % self.cap, min(i + self.ahead, last) % self.cap
        if np.array_equal(self.box[a], self.box[b]):
            flow_input(self.flow, self.samples[a], self.samples[b], self.input_size, self.gain, out=out)
        else:  # the face box moved between the two samples: its jump is not facial motion
            out[...] = 0.0
            self.zeroed_steps += 1
        self.steps_done = i + 1

    # -- 4.-6. windows → events -----------------------------------------------------------------

    def due_windows(self, min_steps: int, final: bool = False) -> list[Window]:
        """Windows ending at each hop boundary the features reached (and, at the end, the last step)."""
        ends = list(range((self.windows_done // self.hop + 1) * self.hop, self.encoded + 1, self.hop))
        if final and self.encoded > self.windows_done and (not ends or ends[-1] != self.encoded):
            ends.append(self.encoded)
        out = []
        for end in ends:
            steps = min(end, self.window_steps)
            if steps >= min_steps:
                out.append(Window(self, end, steps))
            self.windows_done = end
        return out

    def window_features(self, end: int, steps: int, out: np.ndarray) -> np.ndarray:
        rows = np.arange(end - steps, end) % self.cap
        np.take(self.features, rows, axis=0, out=out)
        return out

    def is_duplicate(self, a: float, b: float, t_nms: float) -> bool:
        if not self.published:
            return False
        ious = post.interval_iou(np.array([[a, b]]), np.array(self.published))
        return bool(ious.max() > t_nms)

    def remember(self, a: float, b: float) -> None:
        self.published.append((a, b))
        horizon = self.encoded - self.cap
        self.published = [iv for iv in self.published if iv[1] >= horizon]

    def step_frame(self, step: float) -> int:
        """A (fractional) step → source frame, interpolating the samples' centre frames."""
        lo = int(math.floor(step))
        hi = min(lo + 1, self.samples_done - 1)
        w = step - lo
        return int(round(self.centre[lo % self.cap] * (1 - w) + self.centre[hi % self.cap] * w))

    def frame_seq(self, frame: int, step: int) -> int:
        """The crop seq of source frame ``frame`` (in sample ``step``)."""
        slot = step % self.cap
        return int(self.seq0[slot] + frame - self.frame0[slot])

    def apex_step(self, a: int, b: int) -> int:
        """The sample in a..b furthest from both ends: ``d(k, a) + d(k, b) - d(a, b)`` (pixel L2).

        The distance from the onset alone peaks at the offset whenever anything drifts (light,
        head); drift moves the face along a line from onset to offset, which this measure
        cancels, while the expression's excursion and return do not."""
        if b - a < 2:
            return a
        rows = np.arange(a, b + 1) % self.cap
        x = self.samples[rows].reshape(len(rows), -1).astype(np.float32)
        to_onset = np.linalg.norm(x - x[0], axis=1)
        to_offset = np.linalg.norm(x - x[-1], axis=1)
        return a + int(np.argmax(to_onset + to_offset))


class SpotStage(Stage):
    """MESNet for every camera of the run, on one thread (module docstring)."""

    def __init__(self, ctx: RunContext, cameras: Mapping[str, tuple[CropRing, float]], runners: Mapping[str, Any],
                 model: Any, config: SpotConfig, *, recogniser: Any = None, max_batch: int = 16,
                 wait_when_full: bool = False) -> None:
        super().__init__("spot", ctx)
        self.config, self.runners, self.recogniser = config, runners, recogniser
        self.model = model
        cfg = dict(model.config)
        if config.sample_hz:
            cfg["sample_hz"] = config.sample_hz
        self.geometry = geo = MESNetGeometry.from_model(cfg, config)
        hop = max(1, int(round(config.hop_ms / 1000.0 * float(cfg["sample_hz"]))))
        stages = {stage.name: stage for stage in model.stages}
        self.feature_size = int(stages["encoder"].outputs[0].shape[-1])
        self.cams = [CameraSpotter(name, crops, fps, cfg, geo, hop, self.feature_size)
                     for name, (crops, fps) in cameras.items()]
        self.max_batch = max_batch
        self.min_steps = int(stages["window_head"].dims["time"][0])
        self.wait = wait_when_full
        if wait_when_full:  # a replay: the face stage waits rather than overwrite crops still needed
            for cam in self.cams:
                cam.keep = cam.crops.ring.register_reader("spot-keep")
                cam.keep_frames = int(math.ceil((geo.window_steps + cam.ahead + 2) * cam.step))
        size = int(cfg["input_size"])
        self._flow = np.zeros((self.max_batch, int(cfg["in_channels"]), size, size), np.float32)
        self._pending: list[tuple[CameraSpotter, int]] = []
        self._windows = np.zeros((self.max_batch, geo.window_steps, self.feature_size), np.float32)
        self._proposals = np.zeros((self.max_batch, geo.crn_steps, self.feature_size), np.float32)
        self.calls = {"encoder": 0, "window_head": 0, "crn": 0}
        self.encoded_steps = 0
        self._timing: dict[str, float] = {}

    # -- the loop --------------------------------------------------------------------------------

    def loop(self) -> None:
        stop = self.ctx.stop
        lag = [0 if self.wait else int(self.config.max_lag_ms / 1000.0 * cam.fps) for cam in self.cams]
        while not stop.is_set():
            started = time.monotonic_ns()
            self._timing = {"flow_ms": 0.0, "encoder_ms": 0.0, "heads_ms": 0.0, "refine_ms": 0.0}
            read = sum(cam.read(max_lag) for cam, max_lag in zip(self.cams, lag))
            finished = all(cam.crops.ring.finished and cam.cursor.lag == 0 for cam in self.cams)
            if finished:
                for cam in self.cams:
                    cam.finish_sample()
            self._encode_ready(final=finished)
            self._run_windows(started, final=finished)
            self._hold()
            if finished:
                return
            if not read:
                time.sleep(1e-3)

    def _hold(self) -> None:
        """Replays: release the crops no later event can need: those before the current window
        (an event's onset lies inside it) and before every clip still waiting for recognition."""
        for cam in self.cams:
            if cam.keep is None:
                continue
            position = cam.cursor.position - cam.keep_frames
            pending = self.recogniser.oldest_pending(cam.name) if self.recogniser is not None else None
            cam.keep.hold(position if pending is None else min(position, pending))

    def _encode_ready(self, final: bool) -> None:
        for cam in self.cams:
            for i in cam.ready_steps(final):
                if len(self._pending) == self.max_batch:
                    self._encode()
                t0 = time.perf_counter()
                cam.flow_step(i, self._flow[len(self._pending)])
                self._timing["flow_ms"] += (time.perf_counter() - t0) * 1e3
                self._pending.append((cam, i))
        if self._pending:
            self._encode()

    def _encode(self) -> None:
        n = len(self._pending)
        t0 = time.perf_counter()
        out = self.runners["mesnet.encoder"].infer({"flow": self._flow[:n]})
        features = next(iter(out.values()))
        for row, (cam, i) in enumerate(self._pending):
            cam.features[i % cam.cap] = features[row]
            cam.encoded = i + 1
        self.calls["encoder"] += 1
        self.encoded_steps += n
        self._pending.clear()
        self._timing["encoder_ms"] += (time.perf_counter() - t0) * 1e3

    def _run_windows(self, started_ns: int, final: bool) -> None:
        windows = [w for cam in self.cams for w in cam.due_windows(self.min_steps, final)]
        by_length: dict[int, list[Window]] = {}
        for w in windows:
            by_length.setdefault(w.steps, []).append(w)
        for steps, group in by_length.items():
            for i in range(0, len(group), self.max_batch):
                self._heads(group[i:i + self.max_batch], steps, started_ns, final)

    def _heads(self, group: list[Window], steps: int, started_ns: int, final: bool) -> None:
        geo = self.geometry
        t0 = time.perf_counter()
        feats = self._windows[:len(group), :steps]
        for row, w in enumerate(group):
            w.cam.window_features(w.end, steps, out=feats[row])
        scores = self.runners["mesnet.window_head"].infer({"features": feats})
        self.calls["window_head"] += 1
        names = sorted(scores, key=lambda k: int(k.rsplit("_", 1)[1]))
        props = [post.cpn_proposals([scores[k][row] for k in names], geo, geo.t_cpn, steps) for row in range(len(group))]
        rows = [(row, k) for row, p in enumerate(props) for k in range(len(p))]
        probs = np.zeros((len(rows), 2), np.float32)
        offsets = np.zeros((len(rows), 2), np.float32)
        for i in range(0, len(rows), self.max_batch):
            chunk = rows[i:i + self.max_batch]
            batch = self._proposals[:len(chunk)]
            for j, (row, k) in enumerate(chunk):
                a, b = props[row].intervals[k]
                batch[j] = post.resample(feats[row], int(a), int(b), geo.crn_steps)
            out = self.runners["mesnet.crn"].infer({"proposals": batch})
            self.calls["crn"] += 1
            probs[i:i + len(chunk)], offsets[i:i + len(chunk)] = out["probabilities"], out["offsets"]
        self._timing["heads_ms"] += (time.perf_counter() - t0) * 1e3
        start = 0
        for row, w in enumerate(group):
            n = len(props[row])
            spots = post.crn_intervals(props[row], probs[start:start + n], offsets[start:start + n], geo.t_crn, geo.t_nms)
            start += n
            self._publish_final(w, spots, started_ns, final)

    def _publish_final(self, w: Window, spots: post.Spots, started_ns: int, final: bool) -> None:
        cam, geo = w.cam, self.geometry
        first = w.end - w.steps
        limit = w.end - 1 - (0 if final else self.config.settle_steps)
        for (a, b), score in sorted(zip(spots.intervals.tolist(), spots.scores.tolist())):
            if b > limit - first or (a <= 0 and first > 0):
                continue  # not over yet, or cut by the window's start (an earlier window saw it whole)
            a, b = a + first, b + first
            if cam.is_duplicate(a, b, geo.t_nms):
                continue
            cam.remember(a, b)
            self._publish(cam, a, b, score, started_ns)

    def _publish(self, cam: CameraSpotter, a: float, b: float, score: float, started_ns: int) -> None:
        onset, offset = cam.step_frame(a), cam.step_frame(b)
        offset = max(offset, onset)
        apex_step = cam.apex_step(int(round(a)), int(round(b)))
        apex = min(max(int(round(cam.centre[apex_step % cam.cap])), onset), offset)
        t0 = time.perf_counter()
        r_onset, r_apex = onset, apex
        ring = cam.crops.ring
        first_seq = cam.frame_seq(onset, int(math.floor(a)))
        last_seq = cam.frame_seq(offset, int(round(b)))
        span = int(round((apex - onset) * self.config.refine_lambda))
        try:
            meta = {}
            for name, seq in (("onset", first_seq), ("apex", cam.frame_seq(apex, apex_step)), ("offset", last_seq)):
                frame = ring.read(seq, copy=False)
                meta[name] = frame
            if span > 0:
                lo, hi = first_seq, min(meta["apex"].seq + span, last_seq)  # within the interval: never timing-dependent
                batch = ring.read_range(lo, hi + 1)
                r_onset, r_apex = refine(batch.pixels, int(batch.meta["frame_id"][0]), onset, apex, self.config.refine_lambda)
            onset_ns, apex_ns, offset_ns = meta["onset"].host_ns, meta["apex"].host_ns, meta["offset"].host_ns
            face_ms = (cam.crops.written_ns(last_seq) - offset_ns) / 1e6
        except RingError:  # the crops are gone (a lagging stage): publish what the steps say
            onset_ns = apex_ns = offset_ns = 0
            face_ms = 0.0
        self._timing["refine_ms"] += (time.perf_counter() - t0) * 1e3
        micro = is_micro(r_onset, r_apex, offset, cam.fps, self.config.micro_max_ms, self.config.micro_rise_ms)
        now = time.monotonic_ns()
        latency = {"capture_to_publish_ms": round((now - offset_ns) / 1e6, 3) if offset_ns else -1.0,
                   "face_ms": round(face_ms, 3),
                   "wait_ms": round((started_ns - offset_ns) / 1e6 - face_ms, 3) if offset_ns else -1.0,
                   **{k: round(v, 3) for k, v in self._timing.items()}}
        event_id = cam.next_event
        cam.next_event += 1
        scale = round((b - a + 1) * cam.step, 1)
        body = {"event_id": event_id, "onset_frame": onset, "apex_frame": apex, "offset_frame": offset,
                "onset_ns": onset_ns, "apex_ns": apex_ns, "offset_ns": offset_ns, "score": round(float(score), 4),
                "scale": scale, "is_micro": micro, "refined": {"onset_frame": r_onset, "apex_frame": r_apex},
                "latency": latency}
        self.ctx.bus.emit(TOPIC_SPOT, cam.name, body)
        cam.events += 1
        if latency["capture_to_publish_ms"] >= 0:
            cam.latency_ms.append(latency["capture_to_publish_ms"])
        if micro and self.recogniser is not None:
            self.recogniser.submit(ClipJob(camera=cam.name, event_id=event_id, onset_frame=r_onset, apex_frame=r_apex,
                                           offset_frame=offset, first_seq=cam.frame_seq(r_onset, int(math.floor(a)))
                                           if r_onset != onset else first_seq, last_seq=last_seq,
                                           offset_host_ns=offset_ns, spot_published_ns=now))

    # -- stats: per camera, for each camera's ``mestream.stats`` ------------------------------

    def camera_figures(self, camera: str) -> dict[str, float]:
        cam = next(c for c in self.cams if c.name == camera)
        recent, cam.latency_ms = cam.latency_ms, []
        out = {"spot.events": cam.events, "spot.steps": cam.encoded, "spot.resets": cam.resets,
               "spot.zeroed_steps": cam.zeroed_steps, "spot.encoder_calls": self.calls["encoder"],
               "spot.head_calls": self.calls["window_head"]}
        if recent:
            p50, p99 = np.percentile(recent, [50, 99])
            out.update({"spot.latency_ms_p50": round(float(p50), 3), "spot.latency_ms_p99": round(float(p99), 3)})
        return out

    def camera_drops(self, camera: str) -> dict[str, int]:
        return {"spot_skip": sum(cam.skipped for cam in self.cams if cam.name == camera)}

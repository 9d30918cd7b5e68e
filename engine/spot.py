"""The spot stage: MESNet over live streams, every sampled frame's features computed once.

Offline spotting code recomputes each overlapping window from its frames. Here each camera's
crops become samples and flow steps (`mestream.engine.sampling.CameraStream`), each step is
encoded once into that camera's feature ring, and every hop the window head and the CRN run
over the newest window of cached features, all cameras' windows in one batch:

4. windows: the window ending at step ``e`` for every multiple ``e`` of the hop (in steps, so
   which windows run never depends on timing), ``min(e, window_steps)`` steps long;
   window head → CPN proposals → CRN → NMS (`mestream.engine.intervals`);
5. an interval is final once its offset lies ``settle_steps`` before the window's end (the
   stream's last window has no margin); one that overlaps an interval already published
   (IoU > T_nms) is the same expression seen again;
6. steps → source frames; apex = the sample furthest from both ends; GAMDSS refinement on
   the full-rate crops; DFME's micro/macro rule; publish, and put micro clips on the
   pipeline's clip queue (`mestream.engine.clipqueue`), where recognition takes them.

Batching across cameras: paced cameras are not in phase, so work that is ready for one
camera waits up to ``gather_ms`` for the others before the encoder or the heads run.

Backpressure: see `CameraStream` (skips of a live spotter, holds of a replay's).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace

import numpy as np

from mestream.engine.backends.base import Backend
from mestream.engine.clipqueue import ClipJob, ClipQueue
from mestream.engine.config import ConfigError, SpotConfig
from mestream.engine.crops import CropRing
from mestream.engine.events import SpotEvent
from mestream.engine.intervals import Spots, cpn_proposals, crn_intervals, resample
from mestream.engine.keyframes import is_micro, refine
from mestream.engine.manifest import MESNetInfo, MESNetModelConfig
from mestream.engine.ring import RingError, Waker
from mestream.engine.sampling import CameraStream, MESNetGeometry, Window
from mestream.engine.stages import Context, Stage
from mestream.engine.trace import FrameTrace

SUBGRAPHS = ("mesnet.encoder", "mesnet.window_head", "mesnet.crn")


def hop_steps(config: SpotConfig, model: MESNetModelConfig) -> int:
    """The hop in samples (at least one)."""
    return max(1, int(round(config.hop_ms / 1000.0 * model.sample_hz)))


def model_config(model: MESNetInfo, config: SpotConfig) -> MESNetModelConfig:
    """MESNet's config from the manifest, with the run's spotting rate when it sets one."""
    return (
        replace(model.config, sample_hz=float(config.sample_hz))
        if config.sample_hz is not None
        else model.config
    )


class SpotStage(Stage):
    """MESNet for every camera of the run, on one thread (module docstring).

    Args:
        cameras: camera id → (its crop ring, fps, whether it is a replay that may wait).
        runners: the backends' runners, by subgraph key (`SUBGRAPHS`).
        model: the manifest's MESNet `ModelInfo`.
        clips: the pipeline's queue micro intervals are put on for recognition, or None.
        traces: camera id → its `FrameTrace`, for the cameras whose per-frame latency is measured.
    """

    def __init__(
        self,
        ctx: Context,
        cameras: Mapping[str, tuple[CropRing, float, bool]],
        runners: Mapping[str, Backend],
        model: MESNetInfo,
        config: SpotConfig,
        *,
        clips: ClipQueue | None = None,
        max_batch: int = 16,
        traces: Mapping[str, FrameTrace] | None = None,
    ) -> None:
        super().__init__("spot", ctx)
        self.config, self.runners, self.clips = config, runners, clips
        cfg = model_config(model, config)
        rate = cfg.sample_hz
        for name, (_, fps, _) in cameras.items():
            if fps < rate:
                raise ConfigError(
                    f"camera {name!r} runs at {fps:g} fps, below the spotting rate of {rate:g} Hz: "
                    f"set spot.sample_hz to at most {fps:g} (the model was trained at "
                    f"{model.config.sample_hz:g} Hz)"
                )
        self.geometry = geo = MESNetGeometry.from_model(cfg, config)
        hop = hop_steps(config, cfg)
        subgraphs = {subgraph.name: subgraph for subgraph in model.subgraphs}
        self.feature_size = int(subgraphs["encoder"].outputs[0].shape[-1])
        traces = traces or {}
        self.cams = [
            CameraStream(
                name,
                crops,
                fps,
                cfg,
                geo,
                hop,
                self.feature_size,
                wait=wait,
                max_lag_ms=config.max_lag_ms,
                trace=traces.get(name),
            )
            for name, (crops, fps, wait) in cameras.items()
        ]
        self.max_batch = max_batch
        self.min_steps = int(subgraphs["window_head"].dims["time"][0])
        self.score_names = subgraphs["window_head"].output_names  # one per CPN scale, in scale order
        self.gather_ns = int(config.gather_ms * 1e6) if len(self.cams) > 1 else 0
        size = cfg.input_size
        self._flow = np.zeros((self.max_batch, cfg.in_channels, size, size), np.float32)
        self._pending: list[tuple[CameraStream, int]] = []
        self._pending_since = 0
        self._due_since = 0
        self._windows = np.zeros((self.max_batch, geo.window_steps, self.feature_size), np.float32)
        self._proposals = np.zeros((self.max_batch, geo.crn_steps, self.feature_size), np.float32)
        self.calls = {"encoder": 0, "window_head": 0, "crn": 0}
        self._timing = dict.fromkeys(("flow_ms", "encoder_ms", "heads_ms", "refine_ms"), 0.0)  # this pass's
        self._nap = min(0.005, 0.25 * min(cam.step / cam.fps for cam in self.cams))  # a quarter of a sample
        self._waker = Waker()  # every camera's crop ring notifies it: the loop sleeps on all of them
        for cam in self.cams:
            cam.wake_on_crops(self._waker)
        self._clip_hold = False  # a queued clip holds a replay's crops back: recognition may free them

    # -- the loop --------------------------------------------------------------------------------

    def loop(self) -> None:
        stop, waker, cams = self.ctx.stop, self._waker, self.cams
        while not stop.is_set():
            # counted before the pass, so a crop written during it ends the wait below
            seen = sum(cam.crop_updates for cam in cams)
            read = self.run_pass()
            if all(cam.flushed for cam in self.cams):
                return
            if not read:
                time.sleep(self._nap)  # gathers crops: a pass per crop cost 5-9 % of a core at 500 fps
                if not (self._pending or self._due_since or self._clip_hold):  # nothing waits on the clock

                    def cropped(seen: int = seen) -> bool:
                        return sum(cam.crop_updates for cam in cams) != seen

                    waker.wait(cropped, 0.1)  # a crop

    def run_pass(self) -> int:
        """One pass over every camera: read, sample, encode, run due windows, publish; the
        number of crops read."""
        started = time.monotonic_ns()
        self._timing = dict.fromkeys(self._timing, 0.0)
        # a camera whose work waits for the others reads nothing more until it ran: the
        # rings hold one block beyond a window, not more
        read = sum(cam.read() for cam in self.cams if not self._deferred(cam))
        ending = {cam for cam in self.cams if cam.restart or (cam.drained and not cam.flushed)}  # flushed now
        for cam in ending:
            cam.finish_sample()
        self._encode_ready(ending, started)
        self._run_windows(ending)
        for cam in ending:
            cam.end_stream()  # the next stream starts, or its source ended: no more gathering for it
        self._hold()
        return read

    def _gathered(self, ready: int, since: int, now: int, ending: set[CameraStream]) -> bool:
        """Whether work ready for ``ready`` cameras (the first since ``since``) should run now:
        every camera still running has some, or it waited ``gather_ms``, or a stream ends."""
        active = sum(not cam.flushed for cam in self.cams)
        return bool(ending) or ready >= active or now - since >= self.gather_ns

    def _deferred(self, cam: CameraStream) -> bool:
        """Work of ``cam`` held back for the other cameras: steps not encoded, or a window due."""
        return any(c is cam for c, _ in self._pending) or cam.window_due()

    def _hold(self) -> None:
        """Replays: each stream keeps its crops from its current window and its oldest clip
        still queued for recognition on (`CameraStream.hold_crops`)."""
        clips = self.clips
        held = [cam.hold_crops(clips.oldest(cam.name) if clips is not None else None) for cam in self.cams]
        self._clip_hold = any(held)

    def _encode_ready(self, ending: set[CameraStream], now: int) -> None:
        for cam in self.cams:
            for i in cam.ready_steps(final=cam in ending):
                if len(self._pending) == self.max_batch:
                    self._encode()
                if not self._pending:
                    self._pending_since = now
                t0 = time.perf_counter()
                cam.flow_step(i, self._flow[len(self._pending)])
                self._timing["flow_ms"] += (time.perf_counter() - t0) * 1e3
                self._pending.append((cam, i))
        if self._pending and self._gathered(
            len({c for c, _ in self._pending}), self._pending_since, now, ending
        ):
            self._encode()

    def _encode(self) -> None:
        n = len(self._pending)
        t0 = time.perf_counter()
        out = self.runners["mesnet.encoder"].infer({"flow": self._flow[:n]})
        features = next(iter(out.values()))
        for row, (cam, i) in enumerate(self._pending):
            cam.store_features(i, features[row])
        self.calls["encoder"] += 1
        self._pending.clear()
        self._timing["encoder_ms"] += (time.perf_counter() - t0) * 1e3

    def _run_windows(self, ending: set[CameraStream]) -> None:
        started_ns = time.monotonic_ns()  # after this pass's reads: `wait_ms` never goes negative
        due = [cam for cam in self.cams if cam.window_due() or cam in ending]
        if not due:
            self._due_since = 0
            return
        self._due_since = self._due_since or started_ns
        if not self._gathered(len(due), self._due_since, started_ns, ending):
            return
        self._due_since = 0
        windows = [w for cam in due for w in cam.due_windows(self.min_steps, final=cam in ending)]
        by_length: dict[int, list[Window]] = {}
        for w in windows:
            by_length.setdefault(w.steps, []).append(w)
        for steps, group in sorted(by_length.items()):  # a camera's windows only grow: its order is kept
            for i in range(0, len(group), self.max_batch):
                self._heads(group[i : i + self.max_batch], steps, started_ns)

    def _heads(self, group: list[Window], steps: int, started_ns: int) -> None:
        geo = self.geometry
        t0 = time.perf_counter()
        feats = self._windows[: len(group), :steps]
        for row, w in enumerate(group):
            w.cam.window_features(w.end, steps, out=feats[row])
        scores = self.runners["mesnet.window_head"].infer({"features": feats})
        self.calls["window_head"] += 1
        names = self.score_names
        props = [
            cpn_proposals([scores[k][row] for k in names], geo, geo.t_cpn, steps) for row in range(len(group))
        ]
        rows = [(row, k) for row, p in enumerate(props) for k in range(len(p))]
        probs = np.zeros((len(rows), 2), np.float32)
        offsets = np.zeros((len(rows), 2), np.float32)
        for i in range(0, len(rows), self.max_batch):
            chunk = rows[i : i + self.max_batch]
            batch = self._proposals[: len(chunk)]
            for j, (row, k) in enumerate(chunk):
                a, b = props[row].intervals[k]
                batch[j] = resample(feats[row], int(a), int(b), geo.crn_steps)
            out = self.runners["mesnet.crn"].infer({"proposals": batch})
            self.calls["crn"] += 1
            probs[i : i + len(chunk)], offsets[i : i + len(chunk)] = out["probabilities"], out["offsets"]
        self._timing["heads_ms"] += (time.perf_counter() - t0) * 1e3
        start = 0
        for row, w in enumerate(group):
            n = len(props[row])
            spots = crn_intervals(
                props[row], probs[start : start + n], offsets[start : start + n], geo.t_crn, geo.t_nms
            )
            start += n
            self._publish_final(w, spots, started_ns)
            # a frame is decided once no later window can publish about it: the settle margin waits a hop
            w.cam.window_ran(w.end if w.final else w.end - self.config.settle_steps)

    def _publish_final(self, w: Window, spots: Spots, started_ns: int) -> None:
        """The window's intervals that are over, not seen before, in stream steps."""
        cam, first = w.cam, w.end - w.steps
        limit = w.steps - 1 - (0 if w.final else self.config.settle_steps)
        for (a, b), score in sorted(zip(spots.intervals.tolist(), spots.scores.tolist())):
            if a <= 0 and first > 0:
                continue  # cut by the window's start: an earlier window saw it whole
            if b > limit and not w.final:
                continue  # not over yet (the stream's last window takes what reaches its end)
            a, b = max(a, 0.0), min(b, w.steps - 1.0)  # the CRN may reach past the window's ends
            if b < a:
                continue
            a, b = a + first, b + first
            if cam.is_duplicate(a, b, self.geometry.t_nms):
                continue
            cam.remember(a, b)
            self._publish(cam, a, b, score, started_ns)

    def _publish(self, cam: CameraStream, a: float, b: float, score: float, started_ns: int) -> None:
        onset, offset = cam.step_frame(a), cam.step_frame(b)
        offset = max(offset, onset)
        apex_step = cam.apex_step(int(round(a)), int(round(b)))
        apex = min(max(int(round(cam.sample_centre(apex_step))), onset), offset)
        t0 = time.perf_counter()
        r_onset, r_apex = onset, apex
        crops = cam.crops
        try:
            first_seq = cam.crop_seq(onset, int(a))
            apex_seq = cam.crop_seq(apex, apex_step)
            last_seq = cam.crop_seq(offset, int(round(b)))
            onset_ns, apex_ns, offset_ns = (crops.captured_ns(seq) for seq in (first_seq, apex_seq, last_seq))
            span = int(round((apex - onset) * self.config.refine_lambda))
            if span > 0:
                r_onset, r_apex = self._refine(
                    cam, onset, apex, first_seq, apex_seq, min(apex_seq + span, last_seq), span
                )
            clip_first = first_seq if r_onset == onset else cam.crop_seq(r_onset, int(a))
            face_ms = (crops.written_ns(last_seq) - offset_ns) / 1e6
            gone = False
        except (
            RingError
        ):  # the crops are gone (the stage fell a crop ring behind): publish what the steps say
            onset_ns = apex_ns = offset_ns = 0
            first_seq = last_seq = clip_first = -1
            face_ms = -1.0
            gone = True
        self._timing["refine_ms"] += (time.perf_counter() - t0) * 1e3
        micro = is_micro(
            r_onset, r_apex, offset, cam.fps, self.config.micro_max_ms, self.config.micro_rise_ms
        )
        now = time.monotonic_ns()
        timed = offset_ns > 0
        latency = {
            "capture_to_publish_ms": round((now - offset_ns) / 1e6, 3) if timed else -1.0,
            "face_ms": round(face_ms, 3),
            "wait_ms": round((started_ns - offset_ns) / 1e6 - face_ms, 3) if timed else -1.0,
            **{k: round(v, 3) for k, v in self._timing.items()},
        }
        event_id = cam.next_event_id()
        self.ctx.bus.emit(
            SpotEvent(
                camera=cam.name,
                event_id=event_id,
                onset_frame=onset,
                apex_frame=apex,
                offset_frame=offset,
                onset_ns=onset_ns,
                apex_ns=apex_ns,
                offset_ns=offset_ns,
                score=round(float(score), 4),
                scale=float(offset - onset + 1),
                is_micro=micro,
                refined={"onset_frame": r_onset, "apex_frame": r_apex},
                latency=latency,
            )
        )
        cam.count_event(latency["capture_to_publish_ms"] if timed else None, crops_gone=gone)
        clips = self.clips
        if micro and not timed and clips is not None:
            clips.note_lost()
        if micro and timed and clips is not None:
            clips.put(
                ClipJob(
                    camera=cam.name,
                    event_id=event_id,
                    onset_frame=r_onset,
                    apex_frame=r_apex,
                    offset_frame=offset,
                    first_seq=clip_first,
                    last_seq=last_seq,
                    offset_host_ns=offset_ns,
                    spot_published_ns=now,
                )
            )

    def _refine(
        self, cam: CameraStream, onset: int, apex: int, first: int, apex_seq: int, last: int, span: int
    ) -> tuple[int, int]:
        """GAMDSS on the crops it compares: the onset band and the apex band, read into one
        frame-indexed buffer whose rows between the bands are never touched (a long interval
        would otherwise copy every crop of its rise). Frames missing inside (a camera drop)
        leave the spotted key frames as they are."""
        crops, size = cam.crops, cam.crops.size
        buffer = np.empty((last - first + 1, size, size), np.uint8)
        bands = [(first, min(first + span, last)), (max(apex_seq - span, first), last)]
        if bands[1][0] <= bands[0][1] + 1:
            bands = [(first, last)]
        ids = []
        for lo, hi in bands:
            clip = crops.read_clip(lo, hi, out=buffer[lo - first : hi - first + 1])
            ids.append(clip.frame_id - (np.arange(lo, hi + 1) - first))
        if any(np.any(part != onset) for part in ids):  # frame id = onset + position, or a frame is missing
            return onset, apex
        return refine(buffer, onset, onset, apex, self.config.refine_lambda)

    # -- stats: per camera, for each camera's ``mestream.stats`` ----------------------------------

    def camera_figures(self, camera: str) -> dict[str, float]:
        """``camera``'s stream figures and the stage's runner calls (shared by every camera)."""
        out = next(c for c in self.cams if c.name == camera).figures()
        out["spot.encoder_calls"] = self.calls["encoder"]
        out["spot.head_calls"] = self.calls["window_head"]
        return out

    def camera_drops(self, camera: str) -> dict[str, int]:
        return next(c for c in self.cams if c.name == camera).drops()

"""The recognition stage: AKMNet classifies each spotted micro-expression clip.

One stage serves every camera. It takes `ClipJob`s (a spotted interval and the crop-ring
seqs covering it) from the pipeline's `mestream.engine.clipqueue.ClipQueue`, which the spot
stage fills; the two stages never call each other. The loop takes what is queued (up to
``RecogConfig.batch`` clips), reads each clip from its crop ring (`CropRing.read_clip`),
prepares it exactly as training did (`mestream.engine.clips`), runs the encoder over all
their frames in as few calls as its batch limit allows and the clip head once, and
publishes one ``mestream.recog`` event per clip.

DFME crops a whole clip with its onset frame's box, while the face stage may have moved its
box (a re-detection) inside the clip; such frames are cut again from the frame ring with the
onset box while it still holds them (`CropRing.recrop`, the face stage's own crop).
"""

from __future__ import annotations

import functools
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

import cv2
import numpy as np

from mestream.engine.backends.base import Backend
from mestream.engine.clipqueue import ClipJob, ClipQueue, QueuedClip
from mestream.engine.clips import network_frames, prepare_clip
from mestream.engine.config import InferenceConfig, RecogConfig
from mestream.engine.crops import CropRing
from mestream.engine.events import RecogEvent
from mestream.engine.face import Box
from mestream.engine.manifest import AKMNetInfo
from mestream.engine.ring import FrameRing, RingError
from mestream.engine.stages import Context, Stage

__all__ = ["RecogStage", "ENCODER", "CLIP_HEAD"]

ENCODER = "akmnet.encoder"
CLIP_HEAD = "akmnet.clip_head"


@dataclass
class _Clip:
    """A prepared clip waiting for the batch's encoder and head calls."""

    job: ClipJob
    source: list[int]  # the source frame each prepared frame stands for
    start: int  # its first frame's row in the encoder input
    n: int
    queue_ns: int
    prepare_ns: int


def max_batch(runner: Backend) -> int:
    """The largest batch a stage accepts: a fixed batch axis, else the runner's configured limit."""
    dim = runner.subgraph.inputs[0].shape[0]
    if isinstance(dim, int):
        return dim
    return int(getattr(getattr(runner, "config", None), "max_batch", InferenceConfig().max_batch))


def _ms(ns: int) -> float:
    return round(ns / 1e6, 3)


class RecogStage(Stage):
    """Queued clips → AKMNet → ``mestream.recog`` events (module docstring).

    Args:
        ctx: the shared stages' context; ``ctx.stop`` abandons what is queued, while
            `ClipQueue.finish` lets the loop classify it and return.
        clips: the queue it takes clips from. A replay's queue (``wait_when_full``) also
            means the frame ring runs full, so moved crops are kept rather than re-cut.
        crops: each camera's crop ring.
        frames: each camera's frame ring, to re-cut frames whose crop box moved inside a clip.
        runners: activated runners by stage key (``akmnet.encoder``, ``akmnet.clip_head``).
        model: the manifest's ``akmnet`` entry (classes, clip preparation, crop side).
        config: clips per head call.
    """

    WINDOW = 256  # per-clip costs kept for ``recog.ms_p50``

    def __init__(
        self,
        ctx: Context,
        clips: ClipQueue,
        crops: Mapping[str, CropRing],
        frames: Mapping[str, FrameRing],
        runners: Mapping[str, Backend],
        model: AKMNetInfo,
        config: RecogConfig,
    ) -> None:
        super().__init__("recognise", ctx)
        self.queue, self.crops, self.frames = clips, crops, frames
        self.encoder, self.head = runners[ENCODER], runners[CLIP_HEAD]
        self.config = config
        cfg, prep = model.config, model.preprocessing
        self.classes = list(cfg.classes)
        self.max_frames = cfg.max_frames
        self.image_size = cfg.image_size
        self.crop_side = prep.crop_side
        self._prepare_clip = functools.partial(
            prepare_clip,
            max_frames=self.max_frames,
            magnify_alpha=cfg.magnify_alpha,
            magnify_sigma=cfg.magnify_sigma,
            input_mode=cfg.input_mode,
        )
        frames_spec = self.encoder.subgraph.inputs[0]
        feature_spec = self.head.subgraph.inputs[0]
        if tuple(frames_spec.shape[1:]) != (1, self.image_size, self.image_size):
            raise ValueError(
                f"{ENCODER} takes frames {frames_spec.shape}, the model config says image_size "
                f"{self.image_size}: the export and its manifest disagree"
            )
        if feature_spec.shape[1] != self.max_frames:
            raise ValueError(
                f"{CLIP_HEAD} takes {feature_spec.shape[1]} frames per clip, the model config says "
                f"max_frames {self.max_frames}: the export and its manifest disagree"
            )
        self.encoder_batch = max_batch(self.encoder)
        self.batch = min(config.batch, max_batch(self.head))  # clips per head call
        feature_shape = tuple(int(d) for d in feature_spec.shape[2:])
        rows = self.batch * self.max_frames
        self._frames_in = np.zeros((rows, 1, self.image_size, self.image_size), np.float32)
        self._features = np.zeros((rows, *feature_shape), np.float32)
        self._head_in = np.zeros((self.batch, self.max_frames, *feature_shape), np.float32)
        self._mask = np.zeros((self.batch, self.max_frames), bool)
        self._crop_buffers: dict[str, np.ndarray] = {}
        self._frame_buffers: dict[str, np.ndarray] = {}
        self._cost_ns = np.zeros(self.WINDOW, np.int64)
        self.lost = 0  # clips whose crops were gone when their turn came
        self.recut = 0
        self.recut_missed = 0
        self.clips = 0
        self.published = 0
        self.calls: Counter[str] = Counter()  # "encoder" / "head" runner calls

    def loop(self) -> None:
        clips, stop = self.queue, self.ctx.stop
        try:
            while not stop.is_set():
                if clips.drained:
                    return
                items = clips.take(self.batch, timeout=0.1)
                if not items:
                    continue
                try:
                    self._run(items)
                finally:
                    clips.done(items)
        finally:
            clips.close()  # a stop (Ctrl-C, an error) leaves what is queued unclassified: counted

    def _run(self, items: list[QueuedClip]) -> None:
        """Prepare, encode, classify and publish one batch of clips."""
        taken = time.monotonic_ns()
        clips: list[_Clip] = []
        rows = 0
        for item in items:
            job = item.job
            t0 = time.monotonic_ns()
            prepared = self._prepare(job)
            if prepared is None:
                continue
            frames, source = prepared
            n = len(frames)
            network_frames(frames, self.image_size, out=self._frames_in[rows : rows + n, 0])
            clips.append(_Clip(job, source, rows, n, taken - item.queued_ns, time.monotonic_ns() - t0))
            rows += n
        if not clips:
            return

        t0 = time.monotonic_ns()
        step = self.encoder_batch
        for start in range(0, rows, step):
            stop = min(start + step, rows)
            out = self.encoder.infer({"frames": self._frames_in[start:stop]})
            self._features[start:stop] = out["features"]
            self.calls["encoder"] += 1
        t1 = time.monotonic_ns()
        b = len(clips)
        mask = self._mask[:b]
        mask[:] = False
        for i, clip in enumerate(clips):
            self._head_in[i, : clip.n] = self._features[clip.start : clip.start + clip.n]
            mask[i, : clip.n] = True
        out = self.head.infer({"features": self._head_in[:b], "mask": mask})
        self.calls["head"] += 1
        probabilities = np.array(out["probabilities"], np.float64)  # copies: the runner reuses its outputs
        key_mask = np.array(out["key_mask"], bool)
        max_key = np.array(out["max_key"], np.int64)
        t2 = time.monotonic_ns()
        encoder_ns, head_ns = t1 - t0, t2 - t1

        for i, clip in enumerate(clips):
            job, n = clip.job, clip.n
            p = probabilities[i]
            keys = [clip.source[j] for j in np.flatnonzero(key_mask[i, :n])]
            now = time.monotonic_ns()
            self.ctx.bus.emit(
                RecogEvent(
                    camera=job.camera,
                    event_id=job.event_id,
                    label=self.classes[int(np.argmax(p))],
                    probabilities={c: float(v) for c, v in zip(self.classes, p)},
                    key_frames=keys,
                    max_key_frame=clip.source[min(max(int(max_key[i]), 0), n - 1)],
                    latency={
                        "capture_to_publish_ms": _ms(now - job.offset_host_ns),
                        "spot_ms": _ms(job.spot_published_ns - job.offset_host_ns),
                        "queue_ms": _ms(clip.queue_ns),
                        "prepare_ms": _ms(clip.prepare_ns),
                        "encoder_ms": _ms(encoder_ns),
                        "head_ms": _ms(head_ns),
                    },
                )
            )
            self.published += 1
            # what this clip cost the stage: its own preparation and its share of the batch's calls
            self._cost_ns[self.clips % self.WINDOW] = clip.prepare_ns + (encoder_ns + head_ns) // b
            self.clips += 1

    def _prepare(self, job: ClipJob) -> tuple[np.ndarray, list[int]] | None:
        """The clip's prepared uint8 frames and their source frame ids; None (counted) when its
        crops are gone."""
        ring = self.crops[job.camera]
        n = job.last_seq - job.first_seq + 1
        if not 1 <= n <= ring.capacity:
            self.lost += 1
            return None
        buffer = self._crop_buffers.get(job.camera)
        if buffer is None or len(buffer) < n:
            buffer = self._crop_buffers[job.camera] = np.empty((n, ring.size, ring.size), np.uint8)
        try:
            got = ring.read_clip(job.first_seq, job.last_seq, out=buffer[:n])
        except RingError:
            self.lost += 1
            return None
        ids = got.frame_id
        keep = np.flatnonzero((ids >= job.onset_frame) & (ids <= job.offset_frame))
        if not keep.size:
            self.lost += 1
            return None
        kept_ids = ids[keep]
        if keep[-1] - keep[0] + 1 == keep.size:
            clip = got.pixels[keep[0] : keep[-1] + 1]  # the usual case: a run of seqs, no copy
        else:
            clip = got.pixels[keep]
        boxes = got.boxes[keep]
        moved = np.flatnonzero(np.any(boxes != boxes[0], axis=1))
        if moved.size and self.queue.wait_when_full:
            # a replay's frame ring runs full, so whether the frames are still there depends on
            # timing: keep the crops, so a replay gives the same result every run
            self.recut_missed += int(moved.size)
        elif moved.size:
            self._recut(
                ring,
                job.camera,
                clip,
                Box(*(int(v) for v in boxes[0])),
                moved,
                got.source_seq[keep],
                kept_ids,
            )
        if ring.size != self.crop_side:
            side = self.crop_side
            clip = np.stack([cv2.resize(c, (side, side), interpolation=cv2.INTER_AREA) for c in clip])
        frames, runs = self._prepare_clip(clip)
        return frames, [int(kept_ids[r[len(r) // 2]]) for r in runs]

    def _recut(
        self,
        ring: CropRing,
        camera: str,
        clip: np.ndarray,
        box: Box,
        moved: np.ndarray,
        sources: np.ndarray,
        frame_ids: np.ndarray,
    ) -> None:
        """Cut the crops at ``moved`` again from their frames with the onset ``box``, in place;
        a frame the frame ring no longer holds keeps the crop it had (counted)."""
        frames = self.frames.get(camera)
        if frames is None:
            self.recut_missed += len(moved)
            return
        buffer = self._frame_buffers.get(camera)
        if buffer is None:
            buffer = self._frame_buffers[camera] = np.empty(frames.shape, frames.dtype)
        for i in moved:
            try:
                frame = frames.read(int(sources[i]), out=buffer)
            except RingError:
                self.recut_missed += 1
                continue
            if frame.frame_id != frame_ids[i]:  # a source seq that does not name this crop's frame
                self.recut_missed += 1
                continue
            ring.recrop(buffer, box, out=clip[i])
            self.recut += 1

    # -- reporting -------------------------------------------------------------------------------

    def figures(self) -> dict[str, float]:
        out: dict[str, float] = {
            "recog.queue": self.queue.qsize(),
            "recog.clips": self.clips,
            "recog.recut": self.recut,
            "recog.recut_missed": self.recut_missed,
        }
        count = min(self.clips, self.WINDOW)
        if count:
            out["recog.ms_p50"] = round(float(np.median(self._cost_ns[:count])) / 1e6, 3)
        return out

    def drops(self) -> dict[str, int]:
        """The input queue's counters, with the clips this stage found gone added to ``recog_lost``."""
        counts = self.queue.drops()
        counts["recog_lost"] += self.lost
        return counts

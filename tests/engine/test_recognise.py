"""The recognition stage on the shipped AKMNet export and crops of the synthetic camera."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np
import pytest

from mestream.cameras.synthetic import SyntheticCamera
from mestream.engine.backends import open_subgraphs
from mestream.engine.bus import EventBus
from mestream.engine.clipqueue import ClipJob, ClipQueue
from mestream.engine.clips import bins
from mestream.engine.config import InferenceConfig, RecogConfig
from mestream.engine.crops import CropRing
from mestream.engine.events import TOPIC_RECOG, RecogEvent
from mestream.engine.face import Box, detect_face, square_box
from mestream.engine.manifest import Manifest, shipped_export_dir
from mestream.engine.recognise import CLIP_HEAD, ENCODER, RecogStage
from mestream.engine.ring import FrameRing
from mestream.engine.sinks import RecordSink
from mestream.engine.stages import Context

FPS = 200.0
SEED = 12  # six micro-expressions (positive, negative, surprise) and a blink in 7.5 s
KEEP = (190, 240)  # full frames kept for the re-cut test: around the micro-expression at 200..225


@dataclass
class Scene:
    crops: CropRing  # crop seq == source frame id
    box: Box
    micro: list  # ground-truth micro-expression events
    frames: dict[int, np.ndarray]  # full grey frames KEEP[0] .. KEEP[1] - 1


@pytest.fixture(scope="module")
def scene():
    camera = SyntheticCamera(fps=FPS, resolution=(640, 480), seed=SEED, duration_s=7.5, pace=False)
    micro = [e for e in camera.ground_truth if e.kind == "micro"]
    ring = CropRing(camera.n_frames, 144)
    box, frames = None, {}
    with camera:
        for frame in camera:
            if box is None:
                box = square_box(detect_face(frame.pixels))
            ring.write(
                frame.pixels, box, frame.frame_id, frame.device_ns, time.monotonic_ns(), 0, frame.frame_id
            )
            if KEEP[0] <= frame.frame_id < KEEP[1]:
                frames[frame.frame_id] = frame.pixels.copy()
    assert len(micro) == 6 and ring.ring.head == camera.n_frames - 1
    yield Scene(ring, box, micro, frames)
    ring.close()


@pytest.fixture(scope="module")
def runners():
    opened, _ = open_subgraphs(InferenceConfig(), keys=[ENCODER, CLIP_HEAD])
    yield opened
    for runner in opened.values():
        runner.deactivate()


@pytest.fixture(scope="module")
def model():
    return Manifest.load(shipped_export_dir()).akmnet


class Spy:
    """A runner that keeps a copy of every encoder input, to see the frames the stage prepared."""

    def __init__(self, runner):
        self.runner, self.subgraph, self.config = runner, runner.subgraph, runner.config
        self.fed: list[np.ndarray] = []

    def infer(self, feed):
        self.fed.append(feed["frames"].copy())
        return self.runner.infer(feed)


class Harness:
    """A stage over given rings and its clip queue, with a recording bus; `run` starts it, drains
    and collects events. ``encoder_inputs`` holds what the stage fed the encoder."""

    def __init__(self, runners, model, crops, frames=None, config=None, wait=False):
        config = RecogConfig() if config is None else config
        self.spy = Spy(runners[ENCODER])
        runners = {**runners, ENCODER: self.spy}
        self.sink = RecordSink()
        self.bus = EventBus([self.sink])
        self.bus.start()
        self.ctx = Context(bus=self.bus)
        self.clips = ClipQueue(["cam0"], config.queue, wait_when_full=wait, stop=self.ctx.stop)
        self.stage = RecogStage(self.ctx, self.clips, {"cam0": crops}, frames or {}, runners, model, config)

    def run(self) -> list[dict]:
        if self.stage.ident is None:  # not started yet
            self.stage.start()
        self.clips.finish()
        self.stage.join(timeout=60)
        assert not self.stage.is_alive() and not self.ctx.errors, self.ctx.errors
        self.bus.flush()
        self.bus.stop()
        return self.sink.events[TOPIC_RECOG]

    @property
    def encoder_inputs(self) -> np.ndarray:
        return np.concatenate(self.spy.fed)


def job(
    crops: CropRing,
    event_id: int,
    onset: int,
    apex: int,
    offset: int,
    first_seq: int | None = None,
    last_seq: int | None = None,
    camera: str = "cam0",
) -> ClipJob:
    first_seq = onset if first_seq is None else first_seq
    last_seq = offset if last_seq is None else last_seq
    offset_ns = crops.ring.read(last_seq).host_ns if crops.ring.is_valid(last_seq) else time.monotonic_ns()
    return ClipJob(camera, event_id, onset, apex, offset, first_seq, last_seq, offset_ns, time.monotonic_ns())


def truth_job(scene: Scene, event_id: int) -> ClipJob:
    e = scene.micro[event_id]
    return job(scene.crops, event_id, e.onset_frame, e.apex_frame, e.offset_frame)


def test_classifies_the_synthetic_micro_expressions(scene, runners, model):
    h = Harness(runners, model, scene.crops, config=RecogConfig(queue=16, batch=4))
    for i in range(len(scene.micro)):
        assert h.clips.put(truth_job(scene, i))
    events = h.run()
    assert sorted(e["event_id"] for e in events) == list(range(6))
    right = 0
    classes = list(model.config.classes)
    for payload in events:
        event = RecogEvent.from_dict(payload)  # the schema holds
        truth = scene.micro[event.event_id]
        assert event.camera == "cam0"
        assert list(event.probabilities) == classes
        assert sum(event.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
        assert event.label == max(event.probabilities, key=event.probabilities.get)
        right += event.label == truth.four_class
        # each prepared frame stands for the middle source frame of its run, as in training
        middles = {
            truth.onset_frame + int(r[len(r) // 2])
            for r in bins(truth.offset_frame - truth.onset_frame + 1, model.config.max_frames)
        }
        assert event.key_frames and set(event.key_frames) <= middles
        assert event.key_frames == sorted(event.key_frames)
        assert event.max_key_frame in middles
        latency = event.latency
        assert set(latency) == {
            "capture_to_publish_ms",
            "spot_ms",
            "queue_ms",
            "prepare_ms",
            "encoder_ms",
            "head_ms",
        }
        assert latency["capture_to_publish_ms"] >= latency["spot_ms"] and latency["encoder_ms"] > 0
    assert right >= 5, [(e["label"], scene.micro[e["event_id"]].four_class) for e in events]
    # 4 clips × 12 frames in 3 encoder calls of ≤ 16, then 2 × 12 in 2; one head call per batch
    assert h.stage.calls["encoder"] == 5 and h.stage.calls["head"] == 2
    assert h.stage.published == 6
    figures = h.stage.figures()
    assert figures["recog.clips"] == 6 and figures["recog.queue"] == 0 and figures["recog.ms_p50"] > 0
    assert figures["recog.recut"] == 0
    assert h.stage.drops() == {"recog_backlog": 0, "recog_lost": 0, "recog_abandoned": 0}


def test_a_batch_of_three_clips_is_one_clip_head_call(scene, runners, model):
    h = Harness(runners, model, scene.crops, config=RecogConfig(queue=8, batch=4))
    for i in range(3):
        assert h.clips.put(truth_job(scene, i))
    events = h.run()
    assert len(events) == 3
    assert h.stage.calls["head"] == 1 and h.stage.calls["encoder"] == 3  # 36 frames, ≤ 16 a call


def test_live_queue_full_drops_and_counts(scene, runners, model):
    h = Harness(runners, model, scene.crops, config=RecogConfig(queue=2, batch=4))
    assert h.clips.put(truth_job(scene, 0)) and h.clips.put(truth_job(scene, 1))
    t0 = time.monotonic()
    assert not h.clips.put(truth_job(scene, 2))
    assert time.monotonic() - t0 < 0.05  # never blocks on a live run
    assert h.stage.drops()["recog_backlog"] == 1
    events = h.run()
    assert sorted(e["event_id"] for e in events) == [0, 1]


def test_replay_submit_waits_for_room_then_proceeds(scene, runners, model):
    h = Harness(runners, model, scene.crops, config=RecogConfig(queue=1, batch=1), wait=True)
    assert h.clips.put(truth_job(scene, 0))
    result = []
    waiter = threading.Thread(target=lambda: result.append(h.clips.put(truth_job(scene, 1))))
    waiter.start()
    waiter.join(timeout=0.3)
    assert waiter.is_alive() and not result  # blocked: the queue is full and nothing takes from it
    h.stage.start()
    waiter.join(timeout=30)
    assert result == [True]
    events = h.run()
    assert sorted(e["event_id"] for e in events) == [0, 1]
    assert h.stage.drops()["recog_backlog"] == 0


def test_replay_submit_gives_up_promptly_on_stop(scene, runners, model):
    h = Harness(runners, model, scene.crops, config=RecogConfig(queue=1, batch=1), wait=True)
    assert h.clips.put(truth_job(scene, 0))
    threading.Timer(0.1, h.ctx.stop.set).start()
    t0 = time.monotonic()
    assert not h.clips.put(truth_job(scene, 1))
    assert time.monotonic() - t0 < 1.0
    assert h.run() == []  # stop abandons what is queued
    assert (
        h.stage.drops()["recog_abandoned"] == 2
    )  # the one queued and the one given up on: counted, not silent


def test_overwritten_crops_are_counted_lost_without_an_event(scene, runners, model):
    small = CropRing(64, 144)
    source = scene.crops.ring
    whole = Box(0, 0, 144, 144)  # writes the fixture's crops through unchanged
    for fid in range(0, 300):
        small.write(source.read(fid).pixels, whole, fid, 0, time.monotonic_ns(), 0, fid)
    h = Harness(runners, model, small, config=RecogConfig(queue=8, batch=4))
    gone = ClipJob("cam0", 7, 200, 208, 225, 200, 225, 0, 0)  # seq == frame id: 236..299 are held
    held = ClipJob("cam0", 8, 250, 270, 299, 250, 299, time.monotonic_ns(), time.monotonic_ns())
    assert h.clips.put(gone) and h.clips.put(held)
    events = h.run()
    assert [e["event_id"] for e in events] == [8]
    assert h.stage.drops() == {"recog_backlog": 0, "recog_lost": 1, "recog_abandoned": 0}
    small.close()


def recut_rings(scene: Scene, shift: tuple[int, int]) -> tuple[CropRing, FrameRing]:
    """Frames KEEP into a frame ring and their crops into a crop ring, frames 210..215 cut with a
    box moved by ``shift`` (a re-detection inside the clip 200..225)."""
    frames = FrameRing(64, (480, 640))
    crops = CropRing(64, 144)
    dx, dy = shift
    moved = Box(scene.box.x0 + dx, scene.box.y0 + dy, scene.box.x1 + dx, scene.box.y1 + dy)
    for fid in range(*KEEP):
        seq = frames.write(scene.frames[fid], fid, 0, time.monotonic_ns())
        crops.write(
            scene.frames[fid], moved if 210 <= fid <= 215 else scene.box, fid, 0, time.monotonic_ns(), 0, seq
        )
    return crops, frames


def recut_job(crops: CropRing, event_id: int) -> ClipJob:
    onset, apex, offset = 200, 208, 225
    return job(crops, event_id, onset, apex, offset, first_seq=onset - KEEP[0], last_seq=offset - KEEP[0])


def test_a_box_change_inside_a_clip_is_recut_from_the_frame_ring(scene, runners, model):
    e = scene.micro[1]
    assert (e.onset_frame, e.offset_frame) == (200, 225)
    config = RecogConfig(queue=4, batch=1)
    clean = Harness(runners, model, scene.crops, config=config)
    clean.clips.put(truth_job(scene, 1))
    want = clean.run()[0]
    assert clean.stage.recut == 0

    crops, frames = recut_rings(scene, (14, 9))
    recut = Harness(runners, model, crops, frames={"cam0": frames}, config=config)
    recut.clips.put(recut_job(crops, 1))
    got = recut.run()[0]
    assert recut.stage.recut == 6 and recut.stage.figures()["recog.recut"] == 6
    assert recut.stage.recut_missed == 0
    # re-cut with the onset box: exactly the clean clip's network frames, so its answer
    np.testing.assert_array_equal(recut.encoder_inputs, clean.encoder_inputs)
    assert got["key_frames"] == want["key_frames"]
    for c in want["probabilities"]:
        assert got["probabilities"][c] == pytest.approx(want["probabilities"][c], abs=1e-6)

    # Without the frames the moved crops stay as they are (counted): other network frames.
    stale = Harness(runners, model, crops, frames={}, config=config)
    stale.clips.put(recut_job(crops, 1))
    assert len(stale.run()) == 1
    assert stale.stage.recut == 0 and stale.stage.recut_missed == 6
    assert np.abs(stale.encoder_inputs - clean.encoder_inputs).max() > 0.1
    crops.close()
    frames.close()


def test_crops_of_another_size_are_resized_to_the_models_crop_side(scene, runners, model):
    crops = CropRing(80, 160)
    e = scene.micro[1]
    for fid in range(e.onset_frame - 5, e.offset_frame + 5):
        crops.write(scene.frames[fid], scene.box, fid, 0, time.monotonic_ns(), 0, fid)
    h = Harness(runners, model, crops, config=RecogConfig(queue=4, batch=1))
    h.clips.put(
        job(
            crops,
            1,
            e.onset_frame,
            e.apex_frame,
            e.offset_frame,
            first_seq=5,
            last_seq=5 + e.offset_frame - e.onset_frame,
        )
    )
    events = h.run()
    assert len(events) == 1 and events[0]["label"] == e.four_class
    crops.close()


def test_an_unknown_camera_is_refused_at_the_queue(scene, runners, model):
    h = Harness(runners, model, scene.crops)
    with pytest.raises(KeyError, match="cam9"):
        h.clips.put(job(scene.crops, 0, 51, 79, 106, camera="cam9"))
    assert h.run() == []

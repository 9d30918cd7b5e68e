"""Tests for the face stage: detectors, the box tracker, and the stage between the two rings.

Scripted-detector tests write frame k with every pixel equal to k (k < 256), so the detector
can tell which frame it was called on; frame ids are k + ID0, so an id never equals an index.
"""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest

from mestream.cameras.synthetic import SyntheticCamera
from mestream.engine import events
from mestream.engine.config import FaceConfig
from mestream.engine.crops import CropRing
from mestream.engine.face import (
    FaceError,
    FixedDetector,
    HaarDetector,
    YuNetDetector,
    detect_face,
    make_detector,
    square_box,
)
from mestream.engine.face_stage import BoxTracker, FaceStage
from mestream.engine.ring import FrameRing
from mestream.engine.stages import RunContext

ID0 = 1000
FACE = (20, 10, 24, 24)  # what the scripted detectors "find" in the small frames


class RecordingBus:
    """Keeps each event's topic, camera and body, as the bus would publish them."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict]] = []

    def emit(self, event: events.Event) -> bool:
        body = {k: v for k, v in event.as_dict().items() if k not in events.HEADER_FIELDS}
        self.events.append((event.topic, event.camera, body))
        return True

    def health(self, state: str | None = None) -> list[dict]:
        return [b for t, _, b in self.events if t == events.TOPIC_HEALTH and state in (None, b["state"])]

    def states(self) -> list[str]:
        return [b["state"] for b in self.health()]


class Scripted:
    """Finds ``FACE`` on the frames ``present(k)`` says, and records which frames it was asked about."""

    def __init__(self, present=lambda k: True) -> None:
        self.present = present
        self.calls: list[int] = []

    def __call__(self, gray: np.ndarray):
        k = int(gray[0, 0])
        self.calls.append(k)
        return FACE if self.present(k) else None


def _numbered(n: int, shape=(48, 64)) -> list[np.ndarray]:
    return [np.full(shape, k, np.uint8) for k in range(n)]


@pytest.fixture(scope="module")
def faces() -> list[np.ndarray]:
    """30 consecutive 640×480 synthetic frames with a face in each."""
    with SyntheticCamera(fps=200, resolution=(640, 480), seed=0, duration_s=0.15, pace=False) as cam:
        return [frame.pixels.copy() for frame in cam]


def _stage(
    n_frames: int,
    shape,
    config: FaceConfig,
    *,
    fps: float = 100.0,
    detector=None,
    crop_capacity: int = 0,
    crop_size: int = 32,
    wait_when_full: bool = False,
):
    ring = FrameRing(n_frames, shape)
    ctx = RunContext(camera="cam0", fps=fps, ring=ring, bus=RecordingBus())
    crops = CropRing(crop_capacity or n_frames, crop_size)
    return FaceStage(ctx, crops, config, wait_when_full, detector=detector)


def _feed(stage: FaceStage, frames: list[np.ndarray]) -> None:
    ring = stage.ctx.ring
    for k, pixels in enumerate(frames):
        ring.write(pixels, ID0 + k, 10 * k, 20 * k)
    ring.finish()


def _run(frames: list[np.ndarray], config: FaceConfig, **kwargs) -> FaceStage:
    stage = _stage(len(frames), frames[0].shape, config, **kwargs)
    _feed(stage, frames)
    stage.start()
    stage.join(30)
    assert not stage.is_alive() and stage.ctx.errors == []
    assert stage.crops.ring.finished  # readers of the crop ring see the end
    return stage


def _crop_ids(crops: CropRing) -> list[int]:
    return [int(v) for v in crops.ring.read_range(0, crops.ring.frames_written).meta["frame_id"]]


# BoxTracker


def test_first_detection_sets_the_box_at_once():
    tracker = BoxTracker(scale=1.2, smoothing=0.3, deadband=0.05)
    assert tracker.update(None) is None
    assert tracker.update((100, 80, 90, 100)) == square_box((100, 80, 90, 100), 1.2)
    assert tracker.moves == 0


def test_jitter_within_the_deadband_keeps_the_box():
    tracker = BoxTracker(scale=1.2, smoothing=1.0, deadband=0.05)  # side 120: deadband 6 px
    first = tracker.update((100, 100, 100, 100))
    for dx, dy, dw in [(2, -3, 0), (-4, 1, 4), (3, 3, -5), (0, 0, 0)]:
        assert tracker.update((100 + dx, 100 + dy, 100 + dw, 100)) == first
    assert tracker.update(None) == first
    assert tracker.moves == 0


def test_a_real_move_moves_the_box():
    tracker = BoxTracker(scale=1.2, smoothing=0.5, deadband=0.05)
    first = tracker.update((100, 100, 100, 100))
    moved = tracker.update((140, 100, 100, 100))  # smoothed centre moves 20 px > 6
    assert moved != first and moved.x0 == first.x0 + 20 and moved.y0 == first.y0
    assert tracker.moves == 1


def test_a_growing_face_moves_the_box():
    tracker = BoxTracker(scale=1.0, smoothing=1.0, deadband=0.05)
    tracker.update((100, 100, 100, 100))
    assert tracker.update((95, 95, 110, 110)).size == 110
    assert tracker.moves == 1


def test_smoothing_converges_on_a_still_face():
    tracker = BoxTracker(scale=1.2, smoothing=0.5, deadband=0.0)
    tracker.update((0, 0, 100, 100))
    target = square_box((200, 100, 100, 100), 1.2)
    xs = [tracker.update((200, 100, 100, 100)).x0 for _ in range(12)]
    assert xs[0] == 90  # halfway from -10 to 190: smoothing 0.5
    assert all(a < b for a, b in zip(xs[:6], xs[1:7]))  # approaches monotonically
    assert abs(xs[-1] - target.x0) <= 1 and tracker.box.size == target.size


def test_reset_drops_the_history_but_keeps_the_box():
    tracker = BoxTracker(scale=1.0, smoothing=0.1, deadband=0.05)
    first = tracker.update((0, 0, 100, 100))
    tracker.reset()
    assert tracker.box == first
    assert tracker.update((300, 0, 100, 100)) == square_box(
        (300, 0, 100, 100), 1.0
    )  # no averaging with the old place


# Detectors


def test_haar_at_320_wide_finds_the_face_where_the_full_frame_does(faces):
    haar = HaarDetector(detect_width=320)
    for frame in faces[::10]:
        full, small = detect_face(frame), haar(frame)
        assert full is not None and small is not None
        side = max(full[2:])
        assert all(abs(a - b) <= 0.05 * side for a, b in zip(full, small)), (full, small)
    assert HaarDetector(detect_width=0)(faces[0]) == detect_face(faces[0])
    assert haar(np.zeros((480, 640), np.uint8)) is None


def test_yunet_without_its_model_names_the_path_and_where_to_get_it(tmp_path):
    missing = tmp_path / "nowhere" / "yunet.onnx"
    with pytest.raises(FaceError, match="nowhere/yunet.onnx.*not found.*face_detection_yunet_2023mar.onnx"):
        YuNetDetector(missing, 320)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(FaceError, match="cannot load the YuNet model.*junk.onnx.*opencv_zoo"):
        YuNetDetector(junk, 320)


def test_fixed_detector_returns_its_roi():
    fixed = FixedDetector((10, 20, 30, 40))
    assert fixed(np.zeros((8, 8), np.uint8)) == (10, 20, 30, 40)
    with pytest.raises(FaceError, match="roi"):
        FixedDetector((10, 20, 0, 40))


def test_make_detector_follows_the_config(tmp_path):
    assert isinstance(make_detector(FaceConfig(detector="fixed", roi=(1, 2, 3, 4))), FixedDetector)
    haar = make_detector(FaceConfig(detector="haar", detect_width=256))
    assert isinstance(haar, HaarDetector) and haar.detect_width == 256
    with pytest.raises(FaceError, match="absent.onnx"):
        make_detector(FaceConfig(detector="yunet", model=str(tmp_path / "absent.onnx")))


# FaceStage


def test_every_frame_of_a_face_stream_is_cropped(faces):
    config = FaceConfig(detector="haar", redetect_s=0.05)  # every 10 frames at 200 fps
    stage = _run(faces, config, fps=200.0, crop_size=64)
    crops, bus, n = stage.crops, stage.ctx.bus, len(faces)
    assert stage.frames == n and stage.drops() == {"no_face": 0}
    assert _crop_ids(crops) == [ID0 + k for k in range(n)]
    clip = crops.read_clip(0, n - 1)
    assert list(clip.source_seq) == list(range(n))
    box = stage.tracker.box
    assert all(tuple(row) == tuple(box) for row in clip.boxes)  # the still face never moved the box
    assert np.all(clip.written_ns >= clip.host_ns)  # written after the frame was captured
    with SyntheticCamera(fps=200, resolution=(640, 480), seed=0, duration_s=0.15, pace=False) as cam:
        nx, ny = cam.face.landmarks["nose_tip"]
    assert box.x0 < nx < box.x1 and box.y0 < ny < box.y1
    np.testing.assert_array_equal(
        crops.ring.read(n - 1).pixels,
        cv2.resize(faces[-1][box.y0 : box.y1, box.x0 : box.x1], (64, 64), interpolation=cv2.INTER_LINEAR),
    )  # the face stage cuts with INTER_LINEAR
    [found] = bus.health()
    assert (
        found["state"] == "face_found"
        and found["detail"]["frame_id"] == ID0
        and found["detail"]["box"] == list(box)
    )
    assert stage.found and stage.detections == 3
    figures = stage.figures()
    assert figures["face.detections"] == 3 and figures["face.box_moves"] == 0
    assert figures["face.detect_ms_p50"] > 0 and figures["face.crop_us_p50"] > 0
    assert "face.detect_ms_p50" not in stage.figures()  # only what is new since the last report


def test_a_face_that_comes_goes_and_comes_back(faces):
    """Haar on blank frames, then the synthetic face: retries every 4 frames, re-detections
    every 10, lost after 3 misses."""
    blank = np.zeros_like(faces[0])
    frames = [blank] * 10 + faces[:20] + [blank] * 40 + faces[20:30]
    config = FaceConfig(detector="haar", redetect_s=0.05, retry_s=0.02, lost_after=3)
    stage = _run(frames, config, fps=200.0)
    bus = stage.ctx.bus
    # retries at 0, 4, 8 miss; 12 finds the face; 22 sees it; 32, 36, 40 miss; 44 ... 68 miss; 72 finds it
    assert stage.drops() == {"no_face": 12}
    assert stage.crops.ring.frames_written == len(frames) - 12
    assert _crop_ids(stage.crops)[0] == ID0 + 12
    assert bus.states() == ["face_lost", "face_found", "face_lost", "face_found"]
    never, found, lost, again = bus.health()
    assert (
        never["detail"]["frame_id"] == ID0 + 8 and "no face found in the first 9 frames" in never["message"]
    )
    assert found["detail"]["frame_id"] == ID0 + 12
    assert lost["detail"] == {"frame_id": ID0 + 40, "frames_since_found": 40 - 22}
    assert again["detail"]["frame_id"] == ID0 + 72
    assert stage.found


def test_a_blank_stream_crops_nothing():
    stage = _run([np.zeros((240, 320), np.uint8)] * 30, FaceConfig(detector="haar"), fps=100.0)
    assert stage.drops() == {"no_face": 30}
    assert stage.crops.ring.frames_written == 0
    assert stage.ctx.bus.states() == ["face_lost"]  # said once, after lost_after (3) detections found nothing
    assert not stage.found and stage.detections == 3  # frames 0, 10, 20
    assert "face.crop_us_p50" not in stage.figures()


def test_detections_follow_the_frame_schedule():
    detector = Scripted(present=lambda k: k < 30 or k >= 60)
    config = FaceConfig(
        detector="haar", redetect_s=0.1, retry_s=0.03, lost_after=2
    )  # every 10 / 3 frames at 100 fps
    stage = _run(_numbered(100), config, fps=100.0, detector=detector)
    assert detector.calls == [0, 10, 20, 30, 33, *range(36, 60, 3), 60, 70, 80, 90]
    assert stage.detections == len(detector.calls)
    assert stage.ctx.bus.states() == ["face_found", "face_lost", "face_found"]
    assert stage.ctx.bus.health("face_lost")[0]["detail"] == {
        "frame_id": ID0 + 33,
        "frames_since_found": 33 - 20,
    }
    assert stage.crops.ring.frames_written == 100  # a lost face keeps the last box


def test_a_face_found_again_elsewhere_gets_its_box_at_once():
    far = (4, 4, 16, 16)

    def detector(gray):  # FACE on frames 0-9, nothing on 10-19, then a face far from it
        k = int(gray[0, 0])
        return FACE if k < 10 else None if k < 20 else far

    config = FaceConfig(detector="haar", redetect_s=0.05, retry_s=0.01, smoothing=0.1, lost_after=2)
    stage = _run(_numbered(30), config, fps=100.0, detector=detector)
    assert stage.ctx.bus.states() == ["face_found", "face_lost", "face_found"]
    assert stage.tracker.box == square_box(far, config.scale)  # not 10% of the way from the old face
    assert stage.ctx.bus.health()[-1]["detail"]["box"] == list(square_box(far, config.scale))


def test_no_face_at_all_retries_on_schedule():
    detector = Scripted(present=lambda k: False)
    stage = _run(_numbered(50), FaceConfig(detector="haar", retry_s=0.03), fps=100.0, detector=detector)
    assert detector.calls == list(range(0, 50, 3))
    assert stage.drops() == {"no_face": 50} and stage.ctx.bus.states() == ["face_lost"]


def test_bgr_frames_are_cropped_in_grey(faces):
    colour = [np.dstack([g, 255 - g, g // 2]) for g in faces[:5]]  # channels differ: any one alone is wrong
    config = FaceConfig(detector="fixed", roi=(200, 120, 200, 200))
    mono = _run([cv2.cvtColor(c, cv2.COLOR_BGR2GRAY) for c in colour], config, crop_size=48)
    bgr = _run(colour, config, crop_size=48)
    np.testing.assert_array_equal(
        bgr.crops.ring.read_range(0, 5).pixels, mono.crops.ring.read_range(0, 5).pixels
    )
    assert mono.crops.ring.read(4).pixels.any()


def test_unsupported_frame_shapes_are_refused():
    with pytest.raises(ValueError, match="mono8 .* or bgr8"):
        _stage(2, (48, 64, 1), FaceConfig(detector="fixed", roi=(0, 0, 8, 8)))


def _slow_reader(crops: CropRing, seen: list[int], started: threading.Event) -> threading.Thread:
    cursor = crops.ring.register_reader("spot")

    def read() -> None:
        started.wait()
        for frame in cursor:
            seen.append(frame.frame_id)
            threading.Event().wait(0.002)

    return threading.Thread(target=read, daemon=True)


@pytest.mark.parametrize("wait_when_full", [True, False])
def test_waiting_for_a_slow_crop_reader_loses_nothing(wait_when_full):
    n = 60
    config = FaceConfig(detector="fixed", roi=FACE)
    stage = _stage(n, (48, 64), config, crop_capacity=4, crop_size=32, wait_when_full=wait_when_full)
    _feed(stage, _numbered(n))
    seen: list[int] = []
    go = threading.Event()
    reader = _slow_reader(stage.crops, seen, go)
    reader.start()
    if wait_when_full:
        go.set()  # reads while the stage writes, 2 ms a crop
    stage.start()
    stage.join(30)
    go.set()  # overwriting: the reader starts only once the stage is done
    reader.join(30)
    assert not stage.is_alive() and not reader.is_alive() and stage.ctx.errors == []
    if wait_when_full:
        assert seen == [ID0 + k for k in range(n)]
    else:
        assert seen == [
            ID0 + k for k in range(n - 4, n)
        ]  # the control: without waiting, a 4-slot ring loses the rest


def test_stop_ends_the_stage_and_finishes_the_crop_ring():
    stage = _stage(8, (48, 64), FaceConfig(detector="fixed", roi=FACE))
    stage.ctx.ring.write(np.zeros((48, 64), np.uint8), ID0, 0)  # not finished: more could come
    stage.start()
    stage.ctx.stop.set()
    stage.join(5)
    assert not stage.is_alive() and stage.crops.ring.finished


def test_a_failing_detector_stops_the_run_and_finishes_the_crop_ring():
    def broken(gray):
        raise RuntimeError("detector exploded")

    stage = _stage(4, (48, 64), FaceConfig(detector="haar"), detector=broken)
    _feed(stage, _numbered(4))
    stage.start()
    stage.join(5)
    assert stage.crops.ring.finished and stage.ctx.stop.is_set()
    assert "detector exploded" in stage.ctx.errors[0]
    assert stage.ctx.bus.states() == ["stage_error"]

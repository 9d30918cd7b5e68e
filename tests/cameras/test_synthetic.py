"""The synthetic camera: frames, determinism, ground truth against pixels, timing rules,
face detection, argument checks and ground-truth files."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import time
import types

import cv2
import numpy as np
import pytest

from mestream.cameras.base import Source, SourceError, check_frame
from mestream.cameras.synthetic import (
    EMOTIONS,
    LABELS,
    SceneConfig,
    Subject,
    SyntheticCamera,
    dfme_is_micro,
    four_class,
    read_ground_truth,
)
from mestream.cameras.synthetic import camera as camera_module
from mestream.cameras.synthetic.aus import (
    AU_COMBINATIONS,
    SHARED_NEGATIVE,
    SHARING_EMOTIONS,
    au_field,
    blink_travel,
    combinations,
)
from mestream.cameras.synthetic.subject import render_face

# Nothing but the scheduled events moves: no noise, flicker, drift or head turns.
CLEAN = SceneConfig(noise_sigma=0, flicker=0, drift_px=0, turn_per_min=0, micro_per_min=40, macro_per_min=8)


def _frames(cam: SyntheticCamera, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """All frames of a finite camera (copied: the camera reuses its buffer), optionally cropped."""
    x0, y0, x1, y1 = box if box else (0, 0, cam.resolution[0], cam.resolution[1])
    with cam:
        return np.stack([f.pixels[y0:y1, x0:x1].copy() for f in cam])


def _video_hash(cam: SyntheticCamera) -> str:
    h = hashlib.sha256()
    with cam:
        for f in cam:
            h.update(f.pixels.tobytes())
    return h.hexdigest()


def _planned(cam: SyntheticCamera, event):
    """The planner's record of ``event`` (its amplitude and profile)."""
    block = cam.planner.block(event.onset_frame // cam.planner.block_frames)
    return next(p for p in block.items if p.event == event)


def _visible_mask(cam: SyntheticCamera, aus: tuple[str, ...]) -> np.ndarray:
    """Pixels of an event's patch where its motion shows: strongest predicted change |grad I . d|."""
    field = au_field(aus, cam.face)
    w, h = field.size
    img = cam.face.image[field.y0 : field.y0 + h, field.x0 : field.x0 + w].astype(np.float32)
    gx, gy = cv2.Sobel(img, cv2.CV_32F, 1, 0) / 8, cv2.Sobel(img, cv2.CV_32F, 0, 1) / 8
    change = np.abs(gx * field.delta[..., 0] + gy * field.delta[..., 1])
    return change >= np.percentile(change, 90)


# -- the Source contract ---------------------------------------------------------------------


def test_frames_follow_the_source_contract():
    cam = SyntheticCamera(fps=500, resolution=(320, 240), duration_s=0.1, pace=False, name="camX")
    assert isinstance(cam, Source)
    assert (cam.name, cam.fps, cam.pixel_format, cam.shape) == ("camX", 500.0, "mono8", (240, 320))
    last_host = 0
    with cam:
        frames = list(cam)
    assert [f.frame_id for f in frames] == list(range(50))
    for f in frames:
        check_frame(cam.name, f, cam.shape, np.uint8)
        assert f.device_ns == round(f.frame_id * 1e9 / 500)
        assert f.host_ns >= last_host
        last_host = f.host_ns
    bgr = SyntheticCamera(resolution="320x240", duration_s=0.01, pace=False, pixel_format="bgr8")
    with bgr:
        px = next(iter(bgr)).pixels
    assert px.shape == bgr.shape == (240, 320, 3)
    assert np.array_equal(px[..., 0], px[..., 1]) and np.array_equal(px[..., 0], px[..., 2])


def test_paced_stream_runs_in_real_time():
    cam = SyntheticCamera(fps=200, resolution=(160, 120), duration_s=0.25, pace=True)
    t0 = time.monotonic()
    with cam:
        n = sum(1 for _ in cam)
    assert n == 50
    assert time.monotonic() - t0 >= 0.24  # frame 49 is due 245 ms after frame 0


def test_iterating_before_open_is_an_error():
    with pytest.raises(SourceError, match="open"):
        iter(SyntheticCamera(resolution=(160, 120)))


# -- ground truth agrees with the pixels -------------------------------------------------------


def test_clean_motion_happens_exactly_inside_events_and_peaks_at_apex():
    cam = SyntheticCamera(fps=500, resolution=(320, 240), duration_s=10.0, seed=0, pace=False, scene=CLEAN)
    box = cam.face.head_box
    frames = _frames(cam, box).astype(np.int16)
    truth = cam.frame_truth(0, cam.n_frames)
    events = cam.ground_truth
    assert {e.kind for e in events} == {"micro", "macro", "blink"}
    step = np.abs(np.diff(frames, axis=0))  # step[t - 1]: frame t against frame t - 1
    energy = step.reshape(len(step), -1).mean(axis=1)
    quiet = (truth.label[1:] == 0) & (truth.label[:-1] == 0)
    assert quiet.sum() > 0.3 * len(quiet)
    assert energy[quiet].max() == 0.0  # event-free stretches are still, to the bit
    for e in events:
        x0, y0, x1, y1 = cam.event_region(e)
        inside = np.zeros(frames.shape[1:], bool)
        inside[max(y0 - box[1], 0) : y1 - box[1], max(x0 - box[0], 0) : x1 - box[0]] = True
        moving = step[e.onset_frame : e.offset_frame]  # steps into frames onset+1 .. offset
        assert moving[:, inside].sum() > 0, e
        assert moving[:, ~inside].max() == 0, f"motion outside the AU region of {e}"
        disp = np.abs(frames[e.onset_frame : e.offset_frame + 1] - frames[e.onset_frame])[:, inside].mean(
            axis=1
        )
        apex = e.apex_frame - e.onset_frame
        assert disp[apex] >= 0.9 * disp.max(), e
        assert disp[0] == 0 and disp[-1] <= 0.1 * disp.max(), e
        assert disp[apex // 3] < disp[apex], e  # still rising a third of the way to apex


def test_clean_frames_are_the_planned_deformation_frame_by_frame():
    # The convention (see Event): onset and offset are the last still frames, so frame
    # onset - 1 == onset and offset == offset + 1 == the neutral face; every frame between
    # is the neutral patch remapped by amplitude * intensity[t], to the bit. Rendering one
    # frame early or late changes some of those frames.
    cam = SyntheticCamera(fps=500, resolution=(320, 240), duration_s=6.0, seed=4, pace=False, scene=CLEAN)
    frames = _frames(cam)
    truth = cam.frame_truth(0, cam.n_frames)
    neutral = cam.face.image
    events = cam.ground_truth
    assert len(events) >= 5 and {e.kind for e in events} >= {"micro", "blink"}
    for e in events:
        assert truth.intensity[e.onset_frame] == 0 == truth.intensity[e.offset_frame], e
        assert (truth.intensity[e.onset_frame + 1 : e.offset_frame] > 0).all(), e
        for t in (e.onset_frame - 1, e.onset_frame, e.offset_frame, e.offset_frame + 1):
            assert np.array_equal(frames[t], neutral), (e, t)
        field = au_field(e.aus, cam.face)
        x0, y0, x1, y1 = cam.event_region(e)
        px = _planned(cam, e).amplitude * (blink_travel(cam.face) if e.kind == "blink" else 1.0)
        outside = np.ones(neutral.shape, bool)
        outside[y0:y1, x0:x1] = False
        changed = 0
        for t in range(e.onset_frame + 1, e.offset_frame):
            grid = cv2.scaleAdd(field.delta, px * float(truth.intensity[t]), field.grid)
            expected = cv2.remap(
                neutral[y0:y1, x0:x1], grid, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
            )
            assert np.array_equal(frames[t, y0:y1, x0:x1], expected), (e, t)
            assert np.array_equal(frames[t][outside], neutral[outside]), (e, t)
            changed += not np.array_equal(frames[t], frames[t - 1])
        assert changed > 0.5 * (e.offset_frame - e.onset_frame), e


def test_expression_stays_on_the_skin_while_the_head_drifts():
    # Two cameras with the same seed share their head drift; one has expressions. Their
    # difference is the expression alone, and its frame-to-frame change must follow the
    # planned intensity: no frame may change much more than the steepest planned step
    # (the patch crossing a whole pixel of head motion used to make the field jump).
    kw = dict(
        noise_sigma=0,
        flicker=0,
        turn_per_min=0,
        blink_per_min=0,
        micro_per_min=0,
        drift_px=6.0,
        pose_step_px=0.002,
        macro_amplitude_px=(5.0, 6.0),
    )
    cams = [
        SyntheticCamera(
            fps=200,
            resolution=(640, 480),
            duration_s=10.0,
            seed=4,
            pace=False,
            scene=SceneConfig(macro_per_min=rate, **kw),
        )
        for rate in (20, 0)
    ]
    events = cams[0].ground_truth
    truth = cams[0].frame_truth(0, cams[0].n_frames)
    intensity = truth.intensity
    # The test can fail only if the head crosses whole pixels during the events.
    crossings = sum(
        np.count_nonzero(np.diff(np.floor(truth.pose[e.onset_frame : e.offset_frame + 1, :2]), axis=0))
        for e in events
    )
    assert len(events) >= 3 and crossings >= 3
    regions = [tuple(v + d for v, d in zip(cams[0].event_region(e), (-8, -8, 8, 8))) for e in events]
    steps: list[list[float]] = [[] for _ in events]
    previous: list[np.ndarray | None] = [None] * len(events)
    with cams[0], cams[1]:
        for moving, still in zip(*cams):
            t = moving.frame_id
            for i, (e, (x0, y0, x1, y1)) in enumerate(zip(events, regions)):
                if e.onset_frame <= t <= e.offset_frame:
                    diff = moving.pixels[y0:y1, x0:x1].astype(np.int16) - still.pixels[y0:y1, x0:x1]
                    if previous[i] is not None:
                        steps[i].append(float(np.abs(diff - previous[i]).mean()))
                    previous[i] = diff
    for e, step in zip(events, steps):
        step = np.array(step)
        planned = np.abs(np.diff(intensity[e.onset_frame : e.offset_frame + 1]))
        scale = (step * planned).sum() / (planned**2).sum()  # step per unit of intensity change
        assert step.max() < 3.0 * scale * planned.max(), (e, step.max() / (scale * planned.max()))


@pytest.mark.parametrize("seed", [1, 2])
def test_noisy_events_stand_out_from_event_free_stretches(seed):
    # Everything on (noise, flicker, drift, head turns). Flicker is undone with the frame
    # truth's gain; noise is averaged over 5 frames. An event's displacement from onset to
    # apex must beat the largest change over the same lag in any event-free stretch.
    scene = SceneConfig(micro_per_min=40, macro_per_min=6, turn_per_min=6)
    cam = SyntheticCamera(fps=200, resolution=(640, 480), duration_s=10.0, seed=seed, pace=False, scene=scene)
    bx0, by0, bx1, by1 = box = cam.face.head_box
    frames = _frames(cam, box)
    truth = cam.frame_truth(0, cam.n_frames)
    assert truth.gain.std() > 0 and np.abs(truth.pose).max() > 0
    quiet = truth.label == 0
    checked = 0
    for e in cam.ground_truth:
        x0, y0, x1, y1 = cam.event_region(e)
        mask = _visible_mask(cam, e.aus)
        patch = (
            frames[:, y0 - by0 : y1 - by0, x0 - bx0 : x1 - bx0][:, mask].astype(np.float32)
            / truth.gain[:, None]
        )

        def change(t, ref, patch=patch):
            return np.abs(patch[t - 2 : t + 3].mean(0) - patch[ref - 2 : ref + 3].mean(0)).mean()

        lag = min(e.apex_frame - e.onset_frame, 60)
        starts = [t for t in range(3, cam.n_frames - lag - 3, 7) if quiet[t - 3 : t + lag + 3].all()]
        assert len(starts) > 10
        baseline = max(change(t + lag, t) for t in starts)
        assert change(e.apex_frame, e.onset_frame) > 1.25 * baseline, e
        checked += 1
    assert checked >= 5


def test_sensor_noise_is_new_every_frame():
    # Nothing but noise: frame - neutral is the noise. Exact repeats and consecutive frames
    # that are one texture shifted (optical flow reads that as motion) must not occur.
    scene = SceneConfig(
        flicker=0,
        drift_px=0,
        micro_per_min=0,
        macro_per_min=0,
        blink_per_min=0,
        turn_per_min=0,
        noise_sigma=4.0,
    )
    cam = SyntheticCamera(fps=500, resolution=(160, 120), duration_s=4.0, seed=3, pace=False, scene=scene)
    noise = _frames(cam).astype(np.int16) - cam.face.image
    assert abs(noise.std() - 4.0) < 0.3 and abs(noise.mean()) < 0.1
    assert len({n.tobytes() for n in noise}) == len(noise)  # 2,000 frames, no repeat
    # Each of 300 consecutive pairs, correlated at every shift up to 4 px either way.
    crop = noise[:301, 20:100, 30:130].astype(np.float32)
    crop = (crop - crop.mean(axis=(1, 2), keepdims=True)) / crop.std(axis=(1, 2), keepdims=True)
    later = crop[1:, 4:76, 4:96]
    worst = max(
        float(np.abs((crop[:-1, 4 + dy : 76 + dy, 4 + dx : 96 + dx] * later).mean(axis=(1, 2))).max())
        for dy in range(-4, 5)
        for dx in range(-4, 5)
    )
    assert worst < 0.1  # independent noise: |correlation| ~ 1 / sqrt(6624 pixels) per shift


def test_frame_truth_matches_events():
    cam = SyntheticCamera(fps=300, resolution=(160, 120), seed=7, duration_s=30.0, pace=False)
    truth = cam.frame_truth(0, cam.n_frames)
    assert truth.label.shape == truth.intensity.shape == truth.gain.shape == (cam.n_frames,)
    assert truth.pose.shape == (cam.n_frames, 4)
    expected = np.zeros(cam.n_frames, np.int8)
    for e in cam.events_between(0, cam.n_frames, kinds=("micro", "macro", "blink", "head_turn")):
        expected[e.onset_frame : e.offset_frame + 1] = LABELS[e.kind]
        seg = truth.intensity[e.onset_frame : e.offset_frame + 1]
        assert seg[0] == 0 and seg[-1] == 0 and int(np.argmax(seg)) == e.apex_frame - e.onset_frame
    assert np.array_equal(truth.label, expected)
    part = cam.frame_truth(2990, 3010)  # across a block edge
    assert np.array_equal(part.label, truth.label[2990:3010]) and np.array_equal(
        part.pose, truth.pose[2990:3010]
    )


@pytest.mark.parametrize("subject", [0, 3])
def test_au_fields_sit_on_their_anatomy(subject):
    # Each field's magnitude-weighted centre against the subject's landmarks, and the mean
    # direction the skin moves (image y grows downward). "L" is the subject's left, which
    # is the image's right.
    fm = render_face(Subject.from_seed(subject), 320, 240)
    lm, a, b = fm.landmarks, fm.a, fm.b
    brow_y, eye_y, mouth_y = lm["L_brow_inner"][1], lm["L_eye"][1], lm["L_mouth"][1]
    eh = lm["eye_half"][1]

    def centre_and_motion(aus):
        f = au_field(aus, fm)
        mag = np.hypot(f.delta[..., 0], f.delta[..., 1])
        ys, xs = np.mgrid[0 : mag.shape[0], 0 : mag.shape[1]]
        w = mag / mag.sum()
        # delta is the backward map: the skin moves by -delta
        return (
            f.x0 + (w * xs).sum(),
            f.y0 + (w * ys).sum(),
            -(w * f.delta[..., 0]).sum(),
            -(w * f.delta[..., 1]).sum(),
        )

    for side, sign in (("L", 1), ("R", -1)):
        x, y, dx, dy = centre_and_motion((f"{side}-AU12",))
        assert math.dist((x, y), lm[f"{side}_mouth"]) < 0.15 * a and sign * dx > 0 and dy < 0, (
            side
        )  # corner up and out
        x, *_ = centre_and_motion(("AU6", f"{side}-AU12"))
        assert sign * (x - fm.cx) > 0.05 * a, side
    for aus, (lo, hi), up in [
        (("AU4",), (brow_y - 0.1 * b, brow_y + 0.1 * b), False),  # brows lowered
        (("AU1", "AU2"), (brow_y - 0.1 * b, brow_y + 0.1 * b), True),  # brows raised
        (("AU5",), (brow_y, eye_y), True),  # upper lids raised
        (("AU45",), (eye_y - 1.5 * eh, eye_y + 0.5 * eh), False),  # lids closing
        (("AU15",), (mouth_y - 0.1 * b, mouth_y + 0.1 * b), False),  # corners pulled down
        (("AU17",), (mouth_y, lm["chin"][1]), True),  # chin pushed up
    ]:
        x, y, dx, dy = centre_and_motion(aus)
        assert abs(x - fm.cx) < 0.03 * a and lo < y < hi, (aus, (x - fm.cx) / a, (y - fm.cy) / b)
        assert (dy < -0.2) if up else (dy > 0.2), (aus, dy)


def test_every_field_is_built_at_open(monkeypatch):
    scene = SceneConfig(micro_per_min=120, blink_per_min=30, macro_per_min=10)
    cam = SyntheticCamera(fps=500, resolution=(160, 120), duration_s=6.0, seed=0, pace=False, scene=scene)
    cam.open()
    assert set(combinations()) <= set(cam._fields)

    def no_build(*args, **kwargs):
        raise AssertionError("an AU field was built after open()")

    monkeypatch.setattr(camera_module, "au_field", no_build)
    with cam:
        assert sum(1 for _ in cam) == cam.n_frames
    events = cam.ground_truth
    assert len({e.aus for e in events}) >= 5
    assert all(cam.event_region(e) for e in events)


# -- determinism -------------------------------------------------------------------------------


def test_same_seed_same_video_and_truth_different_seed_differs():
    kw = dict(
        fps=500,
        resolution=(320, 240),
        duration_s=2.0,
        pace=False,
        scene=SceneConfig(micro_per_min=60, blink_per_min=30),
    )
    a, b, c = SyntheticCamera(seed=5, **kw), SyntheticCamera(seed=5, **kw), SyntheticCamera(seed=6, **kw)
    ha, hb, hc = _video_hash(a), _video_hash(b), _video_hash(c)
    assert a.ground_truth and a.ground_truth == b.ground_truth and ha == hb
    assert ha == _video_hash(a)  # a second pass replays the same video
    assert hc != ha and c.ground_truth != a.ground_truth
    # The subject is chosen by number, independently of the schedule seed.
    same_face = SyntheticCamera(seed=9, subject=5, **kw)
    assert np.array_equal(same_face.face.image, a.face.image)
    assert same_face.ground_truth != a.ground_truth


def test_blocks_are_planned_the_same_in_any_order():
    forward = SyntheticCamera(fps=500, resolution=(160, 120), seed=3)
    backward = SyntheticCamera(fps=500, resolution=(160, 120), seed=3)
    n = forward.planner.block_frames
    late = backward.events_between(5 * n, 6 * n)
    early = backward.events_between(0, n)
    assert forward.events_between(0, n) == early and forward.events_between(5 * n, 6 * n) == late


def test_subjects_differ_and_are_reproducible():
    subjects = [Subject.from_seed(k) for k in range(50)]
    assert Subject.from_seed(3) == subjects[3]
    assert len(set(subjects)) == 50
    assert all(0.35 <= s.face_height <= 0.5 for s in subjects)
    assert max(s.skin for s in subjects) - min(s.skin for s in subjects) > 0.25


# -- timing rules -------------------------------------------------------------------------------


@pytest.mark.parametrize("fps", [200, 300, 500])
def test_events_obey_dfme_and_duration_rules(fps):
    cam = SyntheticCamera(fps=fps, resolution=(160, 120), seed=fps)
    n = int(300 * fps)  # five minutes, planned without rendering
    every = cam.events_between(0, n, kinds=("micro", "macro", "blink", "head_turn"))
    gap = round(cam.scene.min_gap_s * fps)
    for prev, nxt in zip(every, every[1:]):  # block edges included
        assert nxt.onset_frame - prev.offset_frame - 1 >= gap, (prev, nxt)
    kinds = {k: [e for e in every if e.kind == k] for k in ("micro", "macro", "blink", "head_turn")}
    assert all(len(v) > 3 for v in kinds.values())
    for e in every:
        assert e.onset_frame < e.apex_frame < e.offset_frame
        assert e.onset_frame // cam.planner.block_frames == e.offset_frame // cam.planner.block_frames
    for e in kinds["micro"]:
        assert dfme_is_micro(e.onset_frame, e.apex_frame, e.offset_frame, fps)
        assert e.duration_frames <= 0.5 * fps and 0.04 <= (e.offset_frame - e.onset_frame) / fps < 0.5
    for e in kinds["macro"]:
        assert not dfme_is_micro(e.onset_frame, e.apex_frame, e.offset_frame, fps)
        assert 0.5 <= (e.offset_frame - e.onset_frame) / fps <= 4.0
    for e in kinds["blink"]:
        assert 0.1 <= (e.offset_frame - e.onset_frame) / fps <= 0.4
        assert (e.emotion, e.aus) == ("none", ("AU45",))
    for e in kinds["micro"] + kinds["macro"]:
        allowed = {
            tuple(au.replace("L/R", side) for au in combo)
            for combo in AU_COMBINATIONS[e.emotion]
            + (SHARED_NEGATIVE if e.emotion in SHARING_EMOTIONS else ())
            for side in "LR"
        }
        assert e.aus in allowed, e
    assert {e.emotion for e in kinds["micro"]} == set(EMOTIONS)


def test_items_too_long_for_a_block_do_not_crowd_out_others():
    # In 2 s blocks with 0.8 s gaps, about 60% of the macro-expressions (0.6-3.9 s) can
    # never fit. They are left out before a block is filled; if they took part, each would
    # make the block drop events at random until it went too, and cost far more micros
    # (measured: 0.72 of the macro-free count kept with the filter, 0.46 without).
    def micros(macro_per_min):
        scene = SceneConfig(
            block_s=2.0, min_gap_s=0.8, macro_per_min=macro_per_min, blink_per_min=0, turn_per_min=0
        )
        cam = SyntheticCamera(fps=200, resolution=(160, 120), seed=1, scene=scene)
        return sum(e.kind == "micro" for e in cam.events_between(0, 200 * 3600))  # an hour, planned only

    assert micros(60) > 0.6 * micros(0)


def test_four_class_mapping():
    assert [four_class(e) for e in EMOTIONS] == [
        "positive",
        "negative",
        "negative",
        "negative",
        "negative",
        "negative",
        "surprise",
    ]
    assert four_class("none") == "others"


# -- infinite streams and ground-truth availability ---------------------------------------------


def test_infinite_stream_crosses_blocks_and_reports_rendered_onsets():
    scene = SceneConfig(block_s=2.0, micro_per_min=60, blink_per_min=30)
    cam = SyntheticCamera(fps=200, resolution=(160, 120), seed=2, pace=False, scene=scene)
    assert cam.n_frames is None and cam.ground_truth == []
    with cam:
        for f in cam:
            if f.frame_id == 999:
                break
    assert cam.frames_rendered == 1000
    gt = cam.ground_truth
    assert gt and all(e.onset_frame < 1000 for e in gt)
    assert gt == [e for e in cam.events_between(0, 1000) if e.onset_frame < 1000]
    assert cam.events_between(1000, 2000)  # the schedule is known ahead of rendering


def test_finite_stream_reports_whole_schedule_and_drops_cut_events():
    kw = dict(fps=500, resolution=(160, 120), seed=11, pace=False, scene=CLEAN)
    cut = SyntheticCamera(**kw).events_between(0, 5000)[1]
    end = (cut.onset_frame + cut.offset_frame) // 2  # the stream ends inside this event
    cam = SyntheticCamera(duration_s=end / 500, **kw)
    gt = cam.ground_truth
    assert cam.frames_rendered == 0 and cam.n_frames == end
    assert gt and all(e.offset_frame < end for e in gt) and cut not in gt
    frames = _frames(cam)
    assert np.array_equal(frames[cut.onset_frame - 1], frames[-1])  # and it is not rendered


def test_head_turn_cut_by_the_end_is_neither_rendered_nor_reported():
    scene = SceneConfig(
        noise_sigma=0,
        flicker=0,
        drift_px=0,
        micro_per_min=0,
        macro_per_min=0,
        blink_per_min=0,
        turn_per_min=20,
    )
    kw = dict(fps=200, resolution=(160, 120), seed=5, pace=False, scene=scene)
    turn = SyntheticCamera(**kw).events_between(0, 4000, kinds=("head_turn",))[0]
    end = (turn.onset_frame + turn.offset_frame) // 2
    cam = SyntheticCamera(duration_s=end / 200, **kw)
    assert cam.n_frames == end and cam.events_between(0, end, kinds=("head_turn",)) == []
    truth = cam.frame_truth(0, end)
    assert not truth.label.any() and not truth.pose.any()
    frames = _frames(cam)
    assert all(np.array_equal(f, cam.face.image) for f in frames)


# -- face detection ------------------------------------------------------------------------------


def test_haar_cascade_finds_every_subject_through_head_motion():
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    scene = SceneConfig(turn_per_min=30, drift_px=4.0, turn_px=(4.0, 6.0))
    turns_seen = 0
    for seed in range(8):
        cam = SyntheticCamera(
            fps=200, resolution=(640, 480), seed=seed, duration_s=6.0, pace=False, scene=scene
        )
        turns = cam.events_between(0, cam.n_frames, kinds=("head_turn",))
        others = cam.ground_truth
        wanted = {0, cam.n_frames - 1} | {e.apex_frame for e in turns[:1] + others[:2]}
        turns_seen += bool(turns)
        cx, cy = cam.face.landmarks["nose_tip"]
        with cam:
            for f in cam:
                if f.frame_id not in wanted:
                    continue
                faces = cascade.detectMultiScale(f.pixels, scaleFactor=1.1, minNeighbors=5)
                hits = [(x, y, w, h) for x, y, w, h in faces if x < cx < x + w and y < cy < y + h]
                assert hits, f"subject {seed}, frame {f.frame_id}: no face found ({faces})"
                assert 0.25 * 480 < max(h for *_, h in hits) < 0.6 * 480
    assert turns_seen >= 4


# -- arguments -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(fps=10), "fps"),
        (dict(fps=5000), "fps"),
        (dict(fps="500"), "fps"),
        (dict(fps=math.nan), "fps"),
        (dict(resolution="640-480"), "640x480"),
        (dict(resolution=(0, 480)), "positive"),
        (dict(resolution=(100, 80)), "resolution"),
        (dict(resolution=(480, 1000)), "resolution"),
        (dict(seed=-1), "seed"),
        (dict(seed=1.5), "seed"),
        (dict(subject=-2), "subject"),
        (dict(subject="bob"), "subject"),
        (dict(duration_s=0), "duration_s"),
        (dict(duration_s=-1.0), "duration_s"),
        (dict(duration_s=math.inf), "duration_s"),
        (dict(pixel_format="rgb24"), "pixel_format"),
        (dict(name=""), "name"),
        (dict(scene={"noise_sigma": 1}), "SceneConfig"),
    ],
)
def test_wrong_arguments_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SyntheticCamera(**kwargs)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(noise_sigma=-1), "noise_sigma"),
        (dict(emotions=("joy",)), "emotions"),
        (dict(block_s=1.0), "block_s"),
        (dict(micro_amplitude_px=(2.0, 1.0)), "micro_amplitude_px"),
        (dict(pose_step_px=0), "pose_step_px"),
        (dict(min_gap_s=20), "min_gap_s"),
        (dict(min_gap_s=1.0, block_s=2.0), "min_gap_s"),
        (dict(micro_amplitude_px=(1.0,)), "micro_amplitude_px"),
        (dict(macro_amplitude_px=3.0), "macro_amplitude_px"),
        (dict(turn_px=(1, "2")), "turn_px"),
        (dict(block_s="10"), "block_s"),
        (dict(emotions="happiness"), "emotions"),
    ],
)
def test_wrong_scene_raises_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SceneConfig(**kwargs)


def test_events_between_rejects_reversed_range():
    with pytest.raises(ValueError, match="start_frame"):
        SyntheticCamera(resolution=(160, 120)).events_between(10, 5)


def test_from_config_uses_defaults_and_options():
    config = types.SimpleNamespace(
        kind="synthetic",
        name="cam0",
        fps=0.0,
        resolution="",
        pixel_format="mono8",
        seed=3,
        pace=False,
        options={"duration_s": 0.5, "noise_sigma": 0, "subject": 4},
    )
    cam = SyntheticCamera.from_config(config)
    assert (cam.fps, cam.shape, cam.name, cam.n_frames, cam.scene.noise_sigma) == (
        500.0,
        (480, 640),
        "cam0",
        250,
        0,
    )
    assert cam.subject == Subject.from_seed(4)
    with pytest.raises(ValueError, match="noise_sigmaa"):
        SyntheticCamera.from_config(types.SimpleNamespace(**{**vars(config), "options": {"noise_sigmaa": 1}}))


# -- ground-truth files -------------------------------------------------------------------------------


def test_ground_truth_json_and_csv_round_trip(tmp_path):
    cam = SyntheticCamera(fps=500, resolution=(160, 120), seed=8, duration_s=20.0, name="cam7")
    events = cam.ground_truth
    assert len(events) > 3
    cam.write_ground_truth_json(tmp_path / "gt.json")
    cam.write_ground_truth_csv(tmp_path / "gt.csv")
    rows = json.loads((tmp_path / "gt.json").read_text())
    assert isinstance(rows, list) and len(rows) == len(events)
    for row, e in zip(rows, events):
        assert list(row) == ["camera", "kind", "onset_frame", "apex_frame", "offset_frame", "class", "aus"]
        assert row["camera"] == "cam7" and row["class"] == e.emotion and row["aus"] == list(e.aus)
        assert all(isinstance(row[k], int) for k in ("onset_frame", "apex_frame", "offset_frame"))
    with open(tmp_path / "gt.csv", newline="") as f:
        assert next(csv.reader(f)) == [
            "camera",
            "kind",
            "onset_frame",
            "apex_frame",
            "offset_frame",
            "class",
            "aus",
        ]
    assert read_ground_truth(tmp_path / "gt.json") == events
    assert read_ground_truth(tmp_path / "gt.csv") == events
    (tmp_path / "bad.json").write_text('[{"camera": "c"}]')
    with pytest.raises(ValueError, match="lacks"):
        read_ground_truth(tmp_path / "bad.json")


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("gt.json", "[1]", r"gt.json: event 0: expected an object"),
        ("gt.json", '{"events": []}', r"gt.json: expected a list of events"),
        ("gt.json", '[{"camera": "c"', r"gt.json: not valid JSON"),
        (
            "gt.json",
            '[{"camera": "c", "kind": "micro", "onset_frame": 1, "apex_frame": 2, "offset_frame": 3,'
            ' "class": "fear", "aus": ["AU4"]}, {"camera": "c", "kind": "micro", "onset_frame": "x",'
            ' "apex_frame": 2, "offset_frame": 3, "class": "fear", "aus": []}]',
            r"gt.json: event 1, field 'onset_frame': expected a whole frame number",
        ),
        (
            "gt.json",
            '[{"camera": "c", "kind": "micro", "onset_frame": 1, "apex_frame": 2.5, "offset_frame": 3,'
            ' "class": "fear", "aus": []}]',
            r"gt.json: event 0, field 'apex_frame'",
        ),
        (
            "gt.json",
            '[{"camera": "c", "kind": "micro", "onset_frame": 1, "apex_frame": 2, "offset_frame": 3,'
            ' "class": "fear", "aus": [4]}]',
            r"gt.json: event 0, field 'aus'",
        ),
        (
            "gt.csv",
            "camera,kind,onset_frame,apex_frame,offset_frame,class,aus\nc,micro,1,2,3,fear,AU4\nc,micro,1,two,3,fear,AU4\n",
            r"gt.csv: event 1, field 'apex_frame'",
        ),
        (
            "gt.csv",
            "camera,kind,onset_frame,apex_frame,offset_frame,class,aus\nc,micro,1,2\n",
            r"gt.csv: event 0, field 'offset_frame'",
        ),
    ],
)
def test_bad_ground_truth_files_name_file_event_and_field(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(ValueError, match=message):
        read_ground_truth(tmp_path / name)

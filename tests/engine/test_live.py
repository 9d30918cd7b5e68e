"""Live spotting and recognition end to end on the synthetic camera: what `mestream run` does
by default, checked against the camera's ground truth."""

import json
import math
import threading
import time
from dataclasses import replace

import cv2
import numpy as np
import pytest

from mestream.engine.backends import load_manifest, open_subgraphs
from mestream.engine.config import (
    ConfigError,
    InferenceConfig,
    PublishConfig,
    RunConfig,
    SourceConfig,
    SpotConfig,
)
from mestream.engine.crops import CropRing
from mestream.engine.events import schema_for
from mestream.engine.face import Box
from mestream.engine.flow import flow_input
from mestream.engine.intervals import Spots
from mestream.engine.keyframes import refine
from mestream.engine.pipeline import Pipeline
from mestream.engine.sampling import READ_BLOCK, CameraStream, MESNetGeometry, Window
from mestream.engine.sinks import read_jsonl
from mestream.engine.spot import SUBGRAPHS, SpotStage
from mestream.engine.stages import Context
from tests.cameras.test_replay import write_folder

CLOCKS = ("seq", "host_ns", "wall_ns", "latency")
SEED = 0  # 3 micro-expressions, a macro-expression and blinks in the first 12 s


def run(tmp_path, name="run", **changes):
    log = tmp_path / f"{name}.jsonl"
    config = RunConfig(
        source=SourceConfig(pace=False, seed=SEED),
        duration=12.0,
        stats_interval=0.5,
        progress=False,
        publish=PublishConfig(endpoint="", log=str(log), console=False),
    )
    config = replace(config, **changes)
    pipeline = Pipeline(config)
    summary = pipeline.run()
    return pipeline, summary, list(read_jsonl(log))


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    return run(tmp_path_factory.mktemp("live"))


def test_micro_expressions_are_spotted_and_recognised(default_run):
    pipeline, summary, _ = default_run
    assert not summary.error and summary.frames_in == 6000
    scores = summary.scores
    truth = scores["cameras"]["cam0"]
    assert truth["truth_micro"] >= 3
    micro = scores["spot"]["micro"]
    assert micro["recall"] >= 0.75 and micro["precision"] >= 0.75, micro
    assert scores["macro_published_as_micro"] == 0 and scores["blinks_published_as_micro"] == 0
    recog = scores["recognition"]
    assert recog["scored"] >= 3 and recog["acc"] >= 0.75, recog
    assert summary.drops.get("ring_overrun") == 0 and summary.drops.get("recog_lost") == 0


def test_latency_is_reported_for_cameras_without_ground_truth(default_run, monkeypatch):
    """A real camera has no ground truth: no F1, but its events' latency still counts."""
    pipeline, summary, _ = default_run
    spots, recogs = pipeline.record.events["mestream.spot"], pipeline.record.events["mestream.recog"]
    monkeypatch.setattr(pipeline, "_truth", lambda: {})
    scores = pipeline._scores(spots, recogs)
    assert "spot" not in scores and scores["spot_latency_ms"]["n"] == len(spots) > 0
    assert scores["spot_latency_ms"] == summary.scores["spot_latency_ms"]


def test_every_event_matches_its_schema_and_recognitions_follow_their_spots(default_run):
    _, summary, events = default_run
    spots = {p["event_id"]: p for topic, p in events if topic == "mestream.spot"}
    recogs = [p for topic, p in events if topic == "mestream.recog"]
    for topic, payload in events:
        schema_for(topic).from_dict(payload)  # raises on a missing or unknown field
    assert spots and recogs and len(spots) == summary.spots
    for r in recogs:
        spot = spots[r["event_id"]]
        assert spot["is_micro"]
        assert spot["refined"]["onset_frame"] <= r["max_key_frame"] <= spot["offset_frame"]
        assert abs(sum(r["probabilities"].values()) - 1.0) < 1e-3
        assert r["latency"]["capture_to_publish_ms"] >= r["latency"]["spot_ms"] > 0
    for s in spots.values():
        assert s["onset_frame"] <= s["apex_frame"] <= s["offset_frame"]
        assert s["onset_ns"] <= s["apex_ns"] <= s["offset_ns"]
        assert (
            s["onset_frame"] <= s["refined"]["onset_frame"] <= s["refined"]["apex_frame"] <= s["offset_frame"]
        )
        assert set(s["latency"]) >= {
            "capture_to_publish_ms",
            "face_ms",
            "wait_ms",
            "flow_ms",
            "encoder_ms",
            "heads_ms",
        }


class CountingRunner:
    """Wraps a runner and counts the items it is given."""

    def __init__(self, runner, delay=0.0):  # delay: seconds per item
        self.runner, self.delay, self.items, self.calls = runner, delay, 0, 0
        self.name = runner.name

    def infer(self, feed):
        self.calls += 1
        n = len(next(iter(feed.values())))
        self.items += n
        if self.delay:
            time.sleep(self.delay * n)
        return self.runner.infer(feed)

    def deactivate(self):
        self.runner.deactivate()


def counted_run(tmp_path, hop_ms, delay=0.0, **changes):
    log = tmp_path / f"hop{hop_ms}.jsonl"
    config = RunConfig(
        source=SourceConfig(pace=False, seed=SEED),
        duration=4.0,
        progress=False,
        spot=SpotConfig(hop_ms=hop_ms),
        publish=PublishConfig(endpoint="", log=str(log), console=False),
    )
    pipeline = Pipeline(replace(config, **changes))
    counter = CountingRunner(pipeline.models["mesnet.encoder"], delay)
    pipeline.models["mesnet.encoder"] = counter  # the spot stage looks its runners up per call
    summary = pipeline.run()
    return pipeline, summary, counter


def test_the_encoder_runs_once_per_sample_whatever_the_hop(tmp_path):
    samples = 4.0 * 40  # 4 s at the model's 40 Hz
    counts = {}
    for hop_ms in (25.0, 200.0):
        pipeline, summary, counter = counted_run(tmp_path, hop_ms)
        assert not summary.error
        cam = pipeline.spot.cams[0]
        assert counter.items == cam.samples_done == samples, (hop_ms, counter.items, cam.samples_done)
        counts[hop_ms] = pipeline.spot.calls["window_head"]
    assert counts[25.0] > 4 * counts[200.0]  # the short hop ran many more windows on the same features


def test_one_camera_and_two_batched_cameras_give_the_same_events(tmp_path, default_run):
    pipeline, summary, events = run(tmp_path, "two", cameras=2)
    assert not summary.error and summary.frames_in == 12000
    assert pipeline.spot.calls["encoder"] < 2 * default_run[0].spot.calls["encoder"]  # batched across cameras

    def events_of(payloads, camera):
        spots = {p["event_id"]: p for t, p in payloads if t == "mestream.spot" and p["camera"] == camera}
        recogs = {p["event_id"]: p for t, p in payloads if t == "mestream.recog" and p["camera"] == camera}
        return spots, recogs

    def results(payloads):  # what a camera's events say, without the clocks
        return {
            k: v
            for k, v in payloads.items()
            if k not in ("seq", "host_ns", "wall_ns", "latency") and not k.endswith("_ns")
        }

    alone_spots, alone_recogs = events_of(default_run[2], "cam0")
    spots, recogs = events_of(events, "cam0")
    assert alone_spots and alone_recogs
    assert {i: results(p) for i, p in spots.items()} == {i: results(p) for i, p in alone_spots.items()}
    assert {i: results(p) for i, p in recogs.items()} == {i: results(p) for i, p in alone_recogs.items()}
    other, _ = events_of(events, "cam1")
    assert [s["onset_frame"] for s in other.values()] != [
        s["onset_frame"] for s in spots.values()
    ]  # another subject


def test_a_faceless_short_second_camera_changes_nothing_for_the_first(tmp_path):
    """A second camera that never shows a face and ends early changes nothing of the first's events."""
    main = SourceConfig(pace=False, seed=SEED, fps=200.0)
    folder = write_folder(tmp_path / "blank", n=300)
    side = SourceConfig(kind="folder", name="side", path=str(folder), fps=200.0, pace=False)
    _, alone, alone_events = run(tmp_path, "alone", source=main)
    _, summary, events = run(tmp_path, "faceless", source=main, sources=(side,))
    assert not summary.error and summary.drops["no_face"] == 300

    def results(payloads):
        return sorted(
            (
                t,
                p["event_id"],
                json.dumps(
                    {k: v for k, v in p.items() if k not in CLOCKS and not k.endswith("_ns")}, sort_keys=True
                ),
            )
            for t, p in payloads
            if t in ("mestream.spot", "mestream.recog") and p["camera"] == "cam0"
        )

    assert results(alone_events) and results(events) == results(alone_events)


def test_a_lagging_spot_stage_skips_and_counts_instead_of_stalling_ingest(tmp_path):
    # paced (a live camera): the encoder takes 50 ms a sample, twice as long as the 40 Hz samples leave it
    pipeline, summary, counter = counted_run(
        tmp_path,
        100.0,
        delay=0.05,
        source=SourceConfig(pace=True, seed=SEED),
        duration=3.0,
        spot=SpotConfig(max_lag_ms=200.0),
    )
    assert not summary.error
    assert (
        summary.frames_in == 1500 and summary.drops["ring_overrun"] == 0
    )  # ingest and the face stage kept up
    assert summary.drops["spot_skip"] > 0
    assert summary.seconds < 6.0


def test_streaming_samples_and_flow_equal_the_training_recipe():
    """The live stage computes, block by block, exactly the flow steps training computed offline,
    over a stream several times longer than its sample ring (200 fps: CASME II / SAMM's rate)."""
    from mestream.models.mesnet.config import DEMO
    from mestream.models.mesnet.data import flow_steps, sample_starts
    from mestream.models.synthetic import make_camera, render_crops

    fps = 200.0
    camera = make_camera(7, fps=fps, duration_s=12.0)
    crops = render_crops(camera, np.arange(camera.n_frames), DEMO.flow_crop)
    model = load_manifest(InferenceConfig()).models["mesnet"]
    ring = CropRing(len(crops) + 8, DEMO.flow_crop)
    geometry = MESNetGeometry.from_model(model.config, SpotConfig())
    cam = CameraStream(
        "cam0", ring, fps, model.config, geometry, hop_steps=4, feature_size=576, wait=True, max_lag_ms=1000.0
    )
    starts = sample_starts(len(crops), fps, DEMO.sample_hz)
    assert len(starts) > 2 * cam.cap
    live = np.zeros((len(starts), 2, DEMO.input_size, DEMO.input_size), np.float32)
    centres = np.zeros(len(starts))
    for i, c in enumerate(crops):
        whole = Box(0, 0, DEMO.flow_crop, DEMO.flow_crop)
        ring.write_crop(c, whole, 1000 + i, 0, 0, 0, i)  # frame ids need not start at 0
    ring.finish()

    def compute(final=False):
        for i in cam.ready_steps(final):
            cam.flow_step(i, live[i])
            centres[i] = cam.sample_centre(i)

    while cam.read():  # as the spot stage does: a block of crops, then the steps it made ready
        compute()
    cam.finish_sample()
    compute(final=True)
    offline = flow_steps(crops, starts, DEMO).astype(np.float32)
    np.testing.assert_allclose(live, offline, rtol=1e-3, atol=1e-3)  # offline is stored as float16
    ends = np.append(starts[1:], len(crops)) - 1
    np.testing.assert_allclose(centres, 1000 + (starts + ends) / 2.0)


def spotter(capacity=400, size=128, fps=500.0, wait=True):
    model = load_manifest(InferenceConfig()).models["mesnet"]
    crops = CropRing(capacity, size)
    geometry = MESNetGeometry.from_model(model.config, SpotConfig())
    return crops, CameraStream(
        "cam0", crops, fps, model.config, geometry, hop_steps=4, feature_size=576, wait=wait, max_lag_ms=200.0
    )


def feed(crops, frame_ids, box=(0, 0, 128, 128), image=None):
    image = np.full((crops.size, crops.size), 100, np.uint8) if image is None else image
    for fid in frame_ids:
        crops.write_crop(image, Box(*box), fid, 0, 1_000_000 * (fid + 1), 0, fid)  # captured 1 ms apart


def test_a_gap_of_a_whole_sample_restarts_the_stream_and_is_counted():
    crops, cam = spotter()
    feed(crops, range(0, 100))  # 8 samples of 12.5 frames
    feed(crops, range(140, 200))  # 40 frames missing: more than a sample
    while cam.read():
        pass
    assert (
        cam.restart == "gap" and cam.samples_done == 7
    )  # the first stream ends; its last sample is still open
    cam.finish_sample()
    assert cam.samples_done == 8  # flushed: the spot stage publishes what it holds before the next stream
    cam.begin()
    assert cam.resets == 1 and not cam.restart
    assert cam.read() == 60  # the crops after the gap are the new stream's first block
    assert cam.origin == 140 and cam.samples_done == 4  # the new stream's samples, counted from frame 140


def test_a_moved_face_box_gives_zero_flow_instead_of_its_jump():
    crops, cam = spotter()
    texture = cv2.GaussianBlur(
        np.random.default_rng(0).integers(0, 255, (128, 128)).astype(np.uint8), (0, 0), 2
    )
    feed(crops, range(0, 75), image=texture)  # samples 0-5
    zoomed = cv2.resize(
        texture[4:124, 4:124], (128, 128), interpolation=cv2.INTER_LINEAR
    )  # a box 6 % smaller
    feed(crops, range(75, 150), box=(4, 4, 124, 124), image=zoomed)  # samples 6-11
    crops.finish()
    while cam.read():
        pass
    cam.finish_sample()
    flows = np.zeros((12, 2, 32, 32), np.float32)
    for i in cam.ready_steps(final=True):
        cam.flow_step(i, flows[i])
    straddling = [4, 5, 6]  # steps whose flow runs from a sample before the move to one after it
    assert cam.zeroed_steps == 3 and not flows[straddling].any()
    assert np.abs(flows[[1, 9]]).max() < 0.5  # steady stretches stay still
    jump = flow_input(cam.flow, cam.samples[3], cam.samples[6], 32, cam.gain)
    assert np.abs(jump).max() > 2.0  # what step 4 would have carried: the zoom, not a face moving


def test_a_live_spotter_far_behind_skips_to_the_newest_crop():
    crops, cam = spotter(wait=False)  # a live camera; 200 ms behind at 500 fps is 100 crops
    feed(crops, range(0, 300))
    assert cam.read() == 0 and cam.restart == "skip"  # the spot stage flushes the stream first
    cam.begin()
    assert cam.skipped == 299 and cam.resets == 1  # all but the newest crop passed over, and counted
    assert cam.read() == 1 and cam.origin == 299


def test_a_slow_spotting_rate_still_fits_the_crop_ring_a_replay_holds(tmp_path):
    """At 20 Hz a window spans 5 s of crops, more than the default crop ring: the ring grows
    instead of leaving the face stage waiting for room forever."""
    pipeline, summary, _ = run(tmp_path, "slow", duration=6.0, spot=SpotConfig(sample_hz=20.0))
    assert not summary.error and summary.frames_in == 3000
    assert pipeline.cameras[0].crops.capacity > 5 * 500


def test_a_camera_slower_than_the_spotting_rate_is_refused(tmp_path):
    with pytest.raises(
        ConfigError,
        match=r"camera 'cam0' runs at 25 fps, below the spotting rate of 40 Hz: set spot.sample_hz",
    ):
        Pipeline(
            RunConfig(
                source=SourceConfig(pace=False, fps=25.0),
                progress=False,
                publish=PublishConfig(endpoint="", console=False),
            )
        )


class FakeBus:
    def __init__(self):
        self.events = []

    def emit(self, event):
        self.events.append((event.topic, event.camera, event.as_dict()))
        return True


def stage_with_stream(frames=1000, fps=500.0):
    """A spot stage over one replayed camera whose first ``frames`` crops were read."""
    manifest = load_manifest(InferenceConfig())
    crops = CropRing(frames + 500, 128)
    ctx = Context(bus=FakeBus(), stop=threading.Event())
    stage = SpotStage(ctx, {"cam0": (crops, fps, True)}, {}, manifest.models["mesnet"], SpotConfig())
    feed(crops, range(frames))
    cam = stage.cams[0]
    while cam.read():
        pass
    return stage, cam


def test_intervals_are_final_only_past_the_settle_margin_or_in_the_stream_s_last_window():
    stage, cam = stage_with_stream()
    cam.encoded = 40
    late = Spots(
        np.array([[30.0, 38.0]]), np.array([0.9])
    )  # ends 1 step before the window's end: settle is 2
    stage._publish_final(Window(cam, 40, 40), late, 0)
    assert stage.ctx.bus.events == []
    stage._publish_final(Window(cam, 40, 40, final=True), late, 0)  # nothing comes after the last window
    [(topic, camera, body)] = stage.ctx.bus.events
    assert topic == "mestream.spot" and camera == "cam0" and body["event_id"] == 0
    stage._publish_final(Window(cam, 40, 40, final=True), late, 0)
    assert len(stage.ctx.bus.events) == 1  # the same interval again is a duplicate


def test_a_crn_onset_before_the_stream_s_start_maps_to_its_first_frame():
    stage, cam = stage_with_stream()
    cam.encoded = 40
    stage._publish_final(Window(cam, 40, 40), Spots(np.array([[-0.6, 10.0]]), np.array([0.9])), 0)
    [(_, _, body)] = stage.ctx.bus.events
    assert body["onset_frame"] == int(round(cam.sample_centre(0)))  # not the centre of ring slot -1
    assert body["onset_ns"] == 1_000_000 * (body["onset_frame"] + 1)  # the onset crop's own capture time


def test_work_waiting_for_an_idle_camera_never_outruns_the_rings():
    """With a second camera that has nothing to do, the first's windows wait up to gather_ms
    for it; meanwhile the first reads no further, so the features of a window not run yet are
    never overwritten (the rings hold one read block beyond a window, not more)."""
    manifest = load_manifest(InferenceConfig())
    runners, _ = open_subgraphs(InferenceConfig(), list(SUBGRAPHS), warmup=False)
    busy, idle = CropRing(4000, 128), CropRing(100, 128)
    ctx = Context(bus=FakeBus(), stop=threading.Event())
    stage = SpotStage(
        ctx,
        {"a": (busy, 200.0, True), "b": (idle, 200.0, True)},
        runners,
        manifest.models["mesnet"],
        SpotConfig(gather_ms=50.0),
    )
    feed(busy, range(3000))
    a = stage.cams[0]
    block = math.ceil(READ_BLOCK / a.step) + a.ahead + 1
    worst, deadline = 0, time.monotonic() + 20
    while a.cursor.lag and time.monotonic() < deadline:
        stage.run_pass()
        worst = max(worst, a.samples_done - a.windows_done)  # samples past the last window run
    for runner in runners.values():
        runner.deactivate()
    assert a.cursor.lag == 0 and a.encoded > 500  # the work got done, 50 ms at a time
    assert worst <= block + a.hop < a.cap - a.window_steps


def test_refinement_reads_only_its_two_bands_and_finds_what_the_whole_rise_gives():
    stage, cam = stage_with_stream(frames=10)
    rng = np.random.default_rng(1)
    crops = cam.crops
    base = crops.head + 1
    for i in range(400):  # a drifting texture: every pair differs, so the argmax is not a tie
        texture = rng.integers(0, 255, (128, 128), dtype=np.uint8)
        crops.write_crop(texture, Box(0, 0, 128, 128), 10 + i, 0, 1, 0, i)
    ring = crops.ring
    onset, apex = 50, 250  # frames; R = 20 at λ = 0.1
    first, apex_seq, last = base + onset - 10, base + apex - 10, base + apex - 10 + 20
    whole = refine(ring.read_range(first, last + 1).pixels, onset, onset, apex, 0.1)
    assert stage._refine(cam, onset, apex, first, apex_seq, last, 20) == whole != (onset, apex)

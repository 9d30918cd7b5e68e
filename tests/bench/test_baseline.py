"""The naive baseline (mestream.bench.baseline): its windows, coverage, events and failure mode.

Short streams, one run each shared through module fixtures; no timing assertions."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("torch")

from mestream.bench import baseline as bl  # noqa: E402
from mestream.bench.stats import KEYS  # noqa: E402
from mestream.cameras.synthetic.camera import SyntheticCamera  # noqa: E402
from mestream.engine.intervals import Spots  # noqa: E402
from mestream.models.mesnet.data import sample_starts  # noqa: E402

SHORT = bl.Stream(seed=1, fps=200.0, resolution="320x240", seconds=2.5, warmup_s=0.5)
EVENTS = bl.Stream(seed=1, fps=200.0, resolution="640x480", seconds=9.5, warmup_s=0.5)


@pytest.fixture(scope="module")
def unpaced() -> dict:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(
        1
    )  # as a torch-backend run leaves it: the baseline sets its own, then restores this
    try:
        out = bl.run_baseline(SHORT, hop_ms=100.0, paced=False, threads=2)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    return out


@pytest.fixture(scope="module")
def offline() -> bl._Baseline:
    return bl._Baseline(EVENTS, hop_ms=None, paced=False).run()


def ordered(p: dict) -> bool:
    values = [p[k] for k in KEYS[:-1]]
    return all(v is not None for v in values) and values == sorted(values)


def test_grid_matches_training_samples() -> None:
    bounds = bl.sample_bounds(1003, 500.0, 40.0)
    starts = sample_starts(1003, 500.0, 40.0)
    assert np.array_equal(bounds[:-1], starts)
    assert bounds[-1] == 1000  # sample 79 (frames 988..999) is the last complete one
    assert bl.window_ends(10, 4) == [4, 8, 10]
    assert bl.window_ends(8, 4) == [4, 8]


def test_unpaced_computes_every_window(unpaced: dict) -> None:
    samples = int(SHORT.n_frames / (SHORT.fps / 40.0))
    assert unpaced["hop_steps"] == 4 and unpaced["hop_ms"] == 100.0
    assert unpaced["windows"] == len(range(4, samples + 1, 4)) == 30
    assert unpaced["skipped_windows"] == 0 and unpaced["no_face_windows"] == 0
    measured = SHORT.n_frames - SHORT.warmup_frames
    lat = unpaced["frame_latencies_ms"]
    assert len(lat) == measured
    assert unpaced["frame_latency_ms"]["n"] + unpaced["uncovered_frames"] == measured
    assert unpaced["uncovered_frames"] == 0  # 600 frames are exactly 120 samples
    assert np.all(lat[np.isfinite(lat)] > 0)
    assert ordered(unpaced["frame_latency_ms"]) and ordered(unpaced["window_ms"])
    assert unpaced["throughput_fps"] > 0 and unpaced["wall_s"] > 0
    assert unpaced["mode"] == "unpaced" and unpaced["system"] == "baseline" and unpaced["torch_threads"] == 2


def test_summary_is_json_but_the_raw_array(unpaced: dict) -> None:
    import json

    rest = {k: v for k, v in unpaced.items() if k != "frame_latencies_ms"}
    assert json.loads(json.dumps(rest))["windows"] == unpaced["windows"]


def test_no_hop_is_the_papers_stride(offline: bl._Baseline) -> None:
    out = offline.summary()
    assert out["hop_steps"] == offline.cfg.window_steps - offline.cfg.overlap_steps == 80
    assert out["hop_ms"] == 2000.0
    assert out["windows"] == len(bl.window_ends(400, 80)) == 5 and out["skipped_windows"] == 0


def test_events_are_the_streams_micro_expressions(offline: bl._Baseline) -> None:
    cam = SyntheticCamera(fps=EVENTS.fps, resolution=EVENTS.resolution, seed=EVENTS.seed, pace=False)
    truth = [
        (e.onset_frame, e.offset_frame) for e in cam.events_between(0, EVENTS.n_frames, kinds=("micro",))
    ]
    assert offline.published, "the demo model spots the first micro-expression of seed 1"
    for _a, _b, onset, offset, latency in offline.published:
        assert any(onset <= off and on <= offset for on, off in truth), (onset, offset, truth)
        assert latency > 0
    assert offline.summary()["events"] == sum(p[3] >= offline.warm for p in offline.published)


def test_publish_waits_for_settle_and_drops_duplicates() -> None:
    b = bl._Baseline.__new__(bl._Baseline)
    b.cfg, b.settle, b.published = SimpleNamespace(t_nms=0.5), 2, []
    b.centre = np.arange(200) * 5 + 2.0
    frames = SimpleNamespace(host_ns=np.zeros(1000, np.int64))

    def spots(*ivs: tuple[float, float]) -> Spots:
        return Spots(np.array(ivs, np.float64).reshape(-1, 2), np.ones(len(ivs)))

    b._publish(frames, spots((10, 18), (90, 98)), 20, 120, final=False, done=10**9)
    assert [p[:2] for p in b.published] == [(30.0, 38.0)]  # 98 > 100 - 1 - 2: not over yet
    b._publish(frames, spots((0, 8), (6, 14), (70, 78)), 24, 124, final=False, done=10**9)
    # (0, 8) is cut by the window's start; (6, 14) is (30, 38) again; (70, 78) is new
    assert [p[:2] for p in b.published] == [(30.0, 38.0), (94.0, 102.0)]
    b._publish(frames, spots((90, 99)), 24, 124, final=True, done=10**9)  # the last window takes all
    assert b.published[-1][:2] == (114.0, 123.0)
    assert b.published[-1][2:4] == (b.step_frame(114.0), b.step_frame(123.0)) == (572, 617)


def test_ring_notices_overwritten_frames() -> None:
    frames = bl._Frames(4, (2, 3), 10)
    for i in range(6):
        frames.put(SimpleNamespace(pixels=np.full((2, 3), i, np.uint8), host_ns=i), i)
    assert frames.received == 6
    assert frames.intact(2, 6) and not frames.intact(1, 3)
    assert frames.pixels[5 % 4, 0, 0] == 5


def test_paced_run_is_live() -> None:
    stream = bl.Stream(seed=1, fps=200.0, resolution="320x240", seconds=2.0, warmup_s=0.5)
    out = bl.run_baseline(stream, hop_ms=100.0, paced=True)
    assert out["mode"] == "paced"
    assert np.isfinite(out["frame_latency_ms"]["p50"]) and out["frame_latency_ms"]["p50"] > 0
    samples = int(stream.n_frames / 5)
    assert out["windows"] + out["skipped_windows"] == len(bl.window_ends(samples, 4))
    assert out["frame_latency_ms"]["n"] + out["uncovered_frames"] == stream.n_frames - stream.warmup_frames
    assert out["wall_s"] >= stream.seconds * 0.9  # a paced camera cannot deliver faster than real time


def test_without_torch_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(bl.BaselineUnavailable, match=r"mestream\[train\]"):
        bl.run_baseline(SHORT, hop_ms=100.0, paced=False)

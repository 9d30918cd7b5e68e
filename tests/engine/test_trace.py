"""The frame trace: per-frame stage times, what `mestream bench` measures per-frame latency with."""

import numpy as np
import pytest

from mestream.engine.config import PublishConfig, RecogConfig, RunConfig, SourceConfig, SpotConfig
from mestream.engine.pipeline import Pipeline
from mestream.engine.trace import FrameTrace


def test_add_mark_and_latencies():
    trace = FrameTrace(5, ("a", "b"))
    pos = trace.add(np.arange(3), np.array([10, 20, 30]) * 1_000_000, np.array([11, 21, 31]) * 1_000_000)
    assert pos == 0
    trace.mark("b", 0, 2, 40_000_000)
    trace.mark("b", 1, 3, 50_000_000)  # frame 1 keeps its first mark; frame 2 gets this one
    lat = trace.latencies_ms()
    assert lat["total"].tolist() == [30.0, 20.0, 20.0]
    assert lat["a"].tolist() == [1.0, 1.0, 1.0] and lat["b"].tolist() == [29.0, 19.0, 19.0]
    assert trace.latencies_ms(since_frame=2)["total"].tolist() == [20.0]


def test_unfinished_and_overflow_are_counted():
    trace = FrameTrace(4, ("a",))
    trace.add(np.arange(3), np.ones(3, np.int64))
    trace.mark("a", 0, 1, 5)
    assert trace.unfinished() == 2 and len(trace.latencies_ms()["total"]) == 1
    trace.add_frame(3, 1, 2)
    trace.add_frame(4, 1, 2)  # beyond the capacity
    trace.mark("a", 3, 9, 7)  # clipped to the capacity
    assert trace.count == 5 and trace.overflow == 1 and trace.unfinished() == 2


def run(spot: bool, seconds: float = 3.0):
    config = RunConfig(
        source=SourceConfig(pace=False, seed=0, fps=200.0),
        duration=seconds,
        progress=False,
        publish=PublishConfig(endpoint="", console=False),
        spot=SpotConfig(enabled=spot),
        recognise=RecogConfig(enabled=False),
    )
    pipeline = Pipeline(config, trace_frames=2000)
    summary = pipeline.run()
    assert not summary.error
    return pipeline, summary


@pytest.mark.parametrize("spot", [True, False])
def test_every_frame_of_a_replay_is_traced_through_every_stage_in_order(spot):
    pipeline, summary = run(spot)
    trace = pipeline.traces["cam0"]
    assert trace.count == summary.frames_in == 600 and trace.overflow == 0
    assert trace.unfinished() == 0  # a replay loses nothing: every frame reached the last stage
    assert trace.frame_id[:600].tolist() == list(range(600))
    t = trace.times[:, :600]
    assert np.all(np.diff(t, axis=0) >= 0)  # capture ≤ face ≤ sample ≤ encode ≤ window
    assert trace.stages == (("face", "sample", "encode", "window") if spot else ("ring",))
    # a sample's frames close together, and the window mark comes in hops: far fewer distinct times
    # than frames
    if spot:
        assert len(np.unique(t[2])) == pytest.approx(600 / 5, abs=2)  # 200 fps / 40 Hz: 5 frames a sample
        assert len(np.unique(t[4])) < len(np.unique(t[3])) <= len(np.unique(t[2]))
